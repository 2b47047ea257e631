import KafkaMessages
import Logging
import NIOCore
import StorageHost
import Synchronization

/// The answer a parked JoinGroup or SyncGroup gets.
enum GroupReply: Sendable, Equatable {
    case join(JoinGroupOutcome)
    case sync(SyncGroupOutcome)
}

/// A JoinGroup or SyncGroup waiting for its answer; completed exactly once, from any thread.
final class GroupReplyWaiter: Sendable {
    private struct State {
        var reply: GroupReply?
        var continuation: CheckedContinuation<GroupReply, Never>?
    }
    private let state = Mutex(State())

    func complete(_ reply: GroupReply) {
        let continuation = state.withLock { state -> CheckedContinuation<GroupReply, Never>? in
            guard state.reply == nil else { return nil }
            state.reply = reply
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume(returning: reply)
    }

    func wait() async -> GroupReply {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> GroupReply? in
                if let reply = state.reply { return reply }
                state.continuation = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    /// The reply if it is already there (tests, and answers that never waited).
    var reply: GroupReply? { state.withLock { $0.reply } }
}

/// Appends (and a sync) to the offsets log, done when every completion has arrived.
final class PendingOffsetsWrite: Sendable {
    private struct State {
        var remaining: Int
        var failure: StorageError?
        var result: Result<Void, StorageError>?
        var continuation: CheckedContinuation<Result<Void, StorageError>, Never>?
    }
    private let state: Mutex<State>
    /// The writer epoch the appends were submitted in (see `GroupCoordinator.offsetsWriteFailed`).
    let epoch: UInt64

    init(completions: Int, epoch: UInt64) {
        self.state = Mutex(State(remaining: completions))
        self.epoch = epoch
    }

    func completed(_ result: Result<Void, StorageError>) {
        let (continuation, final) = state.withLock {
            state -> (CheckedContinuation<Result<Void, StorageError>, Never>?, Result<Void, StorageError>?) in
            if case .failure(let error) = result, state.failure == nil { state.failure = error }
            state.remaining -= 1
            guard state.remaining == 0 else { return (nil, nil) }
            let final: Result<Void, StorageError> = state.failure.map { .failure($0) } ?? .success(())
            state.result = final
            defer { state.continuation = nil }
            return (state.continuation, final)
        }
        if let continuation, let final { continuation.resume(returning: final) }
    }

    func wait() async -> Result<Void, StorageError> {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Result<Void, StorageError>? in
                if let result = state.result { return result }
                state.continuation = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}

/// Settings of the committed-offsets store.
struct OffsetsStoreSettings: Sendable, Equatable {
    /// `offset.metadata.max.bytes`: longer metadata is refused with OFFSET_METADATA_TOO_LARGE.
    var metadataMaxBytes: Int = 4096
    /// The offsets log is compacted (snapshot of the live offsets, then delete-before) once it holds
    /// at least this many offset records and twice as many as there are live offsets.
    var compactionThresholdRecords: Int = 10_000
    /// Segment size of the offsets log (Kafka's `offsets.topic.segment.bytes` is 100 MiB): storage
    /// is reclaimed only in whole segments below the log start, and compaction keeps the live part
    /// of this log small, so small segments give the space back soon.
    var logSegmentBytes: Int = 16 << 20
}

/// Milliseconds from a monotonic clock; tests inject a manual one.
struct GroupClock: Sendable {
    var nowMs: @Sendable () -> Int64

    static var continuous: GroupClock {
        let start = ContinuousClock.now
        return GroupClock {
            let elapsed = start.duration(to: .now).components
            return elapsed.seconds * 1000 + elapsed.attoseconds / 1_000_000_000_000_000
        }
    }
}

/// The group coordinator's I/O shell around `GroupCoordinatorState`: one lock over the state, the
/// parked JoinGroup/SyncGroup requests, a timer at the state's next deadline, and the internal
/// offsets log (`__fjord_group_offsets`) that committed offsets are written to and replayed from.
///
/// Offsets log writes are submitted under the state lock, so the log's order is the order in
/// which changes were applied in memory; that is what lets a snapshot, taken and submitted under
/// the same lock, stand for everything before it. A commit is applied in memory when submitted and
/// answered once the append and a following sync complete (durable on a DURABLE backend).
final class GroupCoordinator: Sendable {
    static let logName = "__fjord_group_offsets"

    struct Writer {
        /// The offset the next append must start at.
        var nextOffset: Int64
        /// Bumped when a write fails and `nextOffset` is re-read from the log.
        var epoch: UInt64 = 0
        /// Offset records in the log (compaction weighs this against the live count).
        var recordsInLog: Int
        var compaction: Task<Void, Never>?
        /// Memory may hold changes the log lost (a failed write): the next snapshot restores agreement.
        var needsSnapshot = false
    }

    struct Locked {
        var machine: GroupCoordinatorState
        var writer: Writer
        var waiters: [UInt64: GroupReplyWaiter] = [:]
        var nextToken: UInt64 = 1
        /// False once shutdown began: JoinGroup and SyncGroup are no longer parked.
        var acceptingRebalances = true
        var isClosed = false
        var timer: (deadline: Int64, task: Task<Void, Never>)?
    }

    let settings: GroupSettings
    let offsetsSettings: OffsetsStoreSettings
    private let log: StorageLog
    private let clock: GroupClock
    var clockNowMs: Int64 { clock.nowMs() }
    private let logger: Logger
    // Internal (not private) for GroupCoordinator+Transactions.swift.
    let locked: Mutex<Locked>

    /// Opens the offsets log, replays it and starts the coordinator.
    static func open(
        storage: StorageEngine,
        settings: GroupSettings,
        offsetsSettings: OffsetsStoreSettings,
        logger: Logger,
        clock: GroupClock = .continuous
    ) async throws -> GroupCoordinator {
        let log = try await storage.openLog(
            named: logName,
            create: true,
            options: [("segment.bytes", String(offsetsSettings.logSegmentBytes))]
        )
        let replay: OffsetsReplay
        let end: Int64
        do {
            let state = try log.state()
            end = state.endOffset
            var replaying = OffsetsReplay()
            var offset = state.startOffset
            while offset < state.endOffset {
                let chunk = try await log.read(
                    from: offset,
                    limit: state.endOffset,
                    maxBytes: 1 << 20,
                    minimumOneEntry: true
                )
                guard chunk.entryCount > 0 else { break }
                for record in try OffsetsLogRecord.decodeAll(chunk.bytes) { replaying.apply(record) }
                offset = chunk.nextOffset
            }
            replay = replaying
            logger.info(
                "group offsets replayed",
                metadata: [
                    "groups": "\(replay.offsets.byGroup.count)", "offsets": "\(replay.offsets.count)",
                    "log-entries": "\(state.endOffset - state.startOffset)",
                ]
            )
        } catch {
            await log.close()
            throw error
        }
        let coordinator = GroupCoordinator(
            settings: settings,
            offsetsSettings: offsetsSettings,
            log: log,
            clock: clock,
            logger: logger,
            machine: GroupCoordinatorState(settings: settings, offsets: replay.offsets),
            writer: Writer(nextOffset: end, recordsInLog: replay.recordCount)
        )
        coordinator.maybeCompact()
        return coordinator
    }

    private init(
        settings: GroupSettings,
        offsetsSettings: OffsetsStoreSettings,
        log: StorageLog,
        clock: GroupClock,
        logger: Logger,
        machine: GroupCoordinatorState,
        writer: Writer
    ) {
        self.settings = settings
        self.offsetsSettings = offsetsSettings
        self.log = log
        self.clock = clock
        self.logger = logger
        self.locked = Mutex(Locked(machine: machine, writer: writer))
    }

    // MARK: Membership

    /// JoinGroup: returns at once; the reply may come later (after the rebalance), so release the
    /// connection's turn before waiting on it.
    func join(groupId: String, _ parameters: JoinGroupParameters) -> GroupReplyWaiter {
        park(groupId) { state, token, now in
            guard state.acceptingRebalances else {
                return [.completeJoin(token: token, .error(.notCoordinator, memberId: parameters.memberId))]
            }
            return state.machine.join(groupId: groupId, parameters, token: token, now: now)
        }
    }

    /// SyncGroup: as `join`, the reply comes when the leader's assignment arrives.
    func sync(groupId: String, _ parameters: ClassicGroup.SyncParameters) -> GroupReplyWaiter {
        park(groupId) { state, token, now in
            guard state.acceptingRebalances else { return [.completeSync(token: token, .error(.notCoordinator))] }
            return state.machine.sync(groupId: groupId, parameters, token: token, now: now)
        }
    }

    func heartbeat(groupId: String, memberId: String, groupInstanceId: String?, generationId: Int32) -> ErrorCode {
        locked.withLock { state in
            state.machine.heartbeat(
                groupId: groupId,
                memberId: memberId,
                groupInstanceId: groupInstanceId,
                generationId: generationId,
                now: clock.nowMs()
            )
        }
    }

    func leave(groupId: String, members: [(memberId: String, groupInstanceId: String?)]) -> [ErrorCode] {
        let (errors, completions) = locked.withLock { state in
            let before = Self.phases(of: [groupId], in: state.machine)
            let (errors, actions) = state.machine.leave(groupId: groupId, members: members, now: clock.nowMs())
            logTransitions(from: before, to: state.machine)
            let completions = Self.resolve(actions, in: &state)
            armTimer(&state)
            return (errors, completions)
        }
        Self.deliver(completions)
        for (member, error) in zip(members, errors) where error == .none {
            logger.info("member left group", metadata: ["group": "\(groupId)", "member": "\(member.memberId)"])
        }
        return errors
    }

    /// Registers a waiter under a fresh token, runs `operation` under the lock, answers whatever
    /// the operation completed (possibly this waiter), and re-arms the timer.
    private func park(
        _ groupId: String,
        _ operation: (inout Locked, UInt64, Int64) -> [GroupAction]
    ) -> GroupReplyWaiter {
        let waiter = GroupReplyWaiter()
        let completions = locked.withLock { state in
            let token = state.nextToken
            state.nextToken += 1
            state.waiters[token] = waiter
            let before = Self.phases(of: [groupId], in: state.machine)
            let actions = operation(&state, token, clock.nowMs())
            logTransitions(from: before, to: state.machine)
            logRemovals(actions)
            let completions = Self.resolve(actions, in: &state)
            armTimer(&state)
            return completions
        }
        Self.deliver(completions)
        return waiter
    }

    private static func resolve(_ actions: [GroupAction], in state: inout Locked) -> [(GroupReplyWaiter, GroupReply)] {
        actions.compactMap { action in
            switch action {
            case .completeJoin(let token, let outcome):
                state.waiters.removeValue(forKey: token).map { ($0, .join(outcome)) }
            case .completeSync(let token, let outcome):
                state.waiters.removeValue(forKey: token).map { ($0, .sync(outcome)) }
            case .removedMember:
                nil
            }
        }
    }

    private static func deliver(_ completions: [(GroupReplyWaiter, GroupReply)]) {
        for (waiter, reply) in completions { waiter.complete(reply) }
    }

    private func logRemovals(_ actions: [GroupAction]) {
        for case .removedMember(let memberId, let reason) in actions {
            logger.info("removed group member: \(reason.rawValue)", metadata: ["member": "\(memberId)"])
        }
    }

    /// State and generation of some groups (Empty, generation 0 for a group not held in memory).
    private static func phases(
        of groupIds: some Sequence<String>,
        in machine: GroupCoordinatorState
    )
        -> [String: (state: ClassicGroup.State, generationId: Int32)]
    {
        var phases: [String: (state: ClassicGroup.State, generationId: Int32)] = [:]
        for groupId in groupIds {
            let group = machine.groups[groupId]
            phases[groupId] = (group?.state ?? .empty, group?.generationId ?? 0)
        }
        return phases
    }

    /// Logs the groups whose state or generation changed: rebalances are what operators look for.
    private func logTransitions(
        from before: [String: (state: ClassicGroup.State, generationId: Int32)],
        to machine: GroupCoordinatorState
    ) {
        guard logger.logLevel <= .info else { return }
        for (groupId, previous) in before {
            let group = machine.groups[groupId]
            let state = group?.state ?? .empty
            guard state != previous.state || (group?.generationId ?? previous.generationId) != previous.generationId
            else {
                continue
            }
            logger.info(
                "group \(state.rawValue)",
                metadata: [
                    "group": "\(groupId)", "generation": "\(group?.generationId ?? previous.generationId)",
                    "members": "\(group?.members.count ?? 0)", "protocol": "\(group?.protocolName ?? "-")",
                ]
            )
        }
    }

    // MARK: Timers

    /// Makes sure a timer task fires at the machine's next deadline (only ever moved earlier; a
    /// timer that fires early finds nothing due and re-arms).
    private func armTimer(_ state: inout Locked) {
        guard !state.isClosed, let deadline = state.machine.nextDeadline else { return }
        if let armed = state.timer, armed.deadline <= deadline { return }
        state.timer?.task.cancel()
        let delayMs = max(0, deadline - clock.nowMs())
        let task = Task { [weak self] in
            do {
                try await Task.sleep(for: .milliseconds(delayMs))
            } catch {
                return
            }
            self?.tick(firedFor: deadline)
        }
        state.timer = (deadline, task)
    }

    /// Runs every due timer of every group. Tests with a manual clock call this directly.
    func tick(firedFor deadline: Int64? = nil) {
        let completions = locked.withLock { state in
            if let deadline, state.timer?.deadline == deadline { state.timer = nil }
            let now = clock.nowMs()
            let due = state.machine.groups.compactMap { id, group in (group.nextDeadline ?? .max) <= now ? id : nil }
            let before = Self.phases(of: due, in: state.machine)
            let actions = state.machine.expire(now: now)
            logTransitions(from: before, to: state.machine)
            logRemovals(actions)
            let completions = Self.resolve(actions, in: &state)
            armTimer(&state)
            return completions
        }
        Self.deliver(completions)
    }

    // MARK: Offsets

    /// An OffsetCommit after its synchronous part: answered, or written and awaiting durability.
    enum CommitTicket: Sendable {
        case done(ErrorCode)
        case pending(PendingOffsetsWrite)
    }

    /// OffsetCommit for the partitions that passed the request checks: validates the member and
    /// generation, applies the offsets and submits their log entry. Returns without waiting, so
    /// the connection's next request may go ahead (commits of one connection stay in order).
    func submitCommit(
        groupId: String,
        memberId: String,
        groupInstanceId: String?,
        generationId: Int32,
        unknownGroupError: ErrorCode = .illegalGeneration,
        offsets: [TopicPartition: CommittedOffset]
    ) -> CommitTicket {
        locked.withLock { state in
            guard !state.isClosed else { return .done(.coordinatorNotAvailable) }
            if let error = state.machine.validateOffsetCommit(
                groupId: groupId,
                memberId: memberId,
                groupInstanceId: groupInstanceId,
                generationId: generationId,
                unknownGroupError: unknownGroupError,
                now: clock.nowMs()
            ) {
                return .done(error)
            }
            guard !offsets.isEmpty else { return .done(.none) }
            state.machine.storeOffsets(groupId: groupId, offsets)
            let entries = offsets.keys.sorted().map {
                OffsetsLogRecord.Entry(topicPartition: $0, committed: offsets[$0]!)
            }  // Safe: own keys.
            return .pending(submit([.commit(.init(group: groupId, entries: entries))], &state))
        }
    }

    /// Waits until a submitted commit is durable (on a DURABLE backend) and readable.
    func finishCommit(_ ticket: CommitTicket) async -> ErrorCode {
        switch ticket {
        case .done(let error):
            return error
        case .pending(let pending):
            if case .failure(let error) = await pending.wait() {
                offsetsWriteFailed(pending, error)
                return .coordinatorNotAvailable
            }
            maybeCompact()
            return .none
        }
    }

    /// OffsetFetch: the committed offsets of `partitions` (every partition the group has committed
    /// when nil); partitions without a commit are absent.
    func fetchOffsets(groupId: String, partitions: [TopicPartition]?) -> [TopicPartition: CommittedOffset] {
        locked.withLock { state in
            let all = state.machine.offsets.offsets(of: groupId) ?? [:]
            guard let partitions else { return all }
            var found: [TopicPartition: CommittedOffset] = [:]
            for partition in partitions { found[partition] = all[partition] }
            return found
        }
    }

    /// OffsetDelete: the group error and one error per partition; removed offsets are durable
    /// before this returns.
    func deleteOffsets(
        groupId: String,
        partitions: [TopicPartition]
    ) async
        -> (error: ErrorCode, partitions: [TopicPartition: ErrorCode])
    {
        let (outcome, pending) = locked.withLock {
            state -> ((error: ErrorCode, partitions: [TopicPartition: ErrorCode]), PendingOffsetsWrite?) in
            guard !state.isClosed else { return ((.coordinatorNotAvailable, [:]), nil) }
            let result = state.machine.deleteOffsets(groupId: groupId, partitions: partitions)
            let pending =
                result.removed.isEmpty
                ? nil : submit([.offsetsDeleted(group: groupId, partitions: result.removed)], &state)
            return ((result.error, result.partitions), pending)
        }
        guard let pending else { return outcome }
        if case .failure(let error) = await pending.wait() {
            offsetsWriteFailed(pending, error)
            return (.coordinatorNotAvailable, [:])
        }
        logger.info("deleted committed offsets", metadata: ["group": "\(groupId)", "partitions": "\(partitions)"])
        maybeCompact()
        return outcome
    }

    /// DeleteGroups: one error per group; deleted groups' offsets are removed durably before this returns.
    func deleteGroups(_ groupIds: [String]) async -> [ErrorCode] {
        let (errors, pending) = locked.withLock { state -> ([ErrorCode], PendingOffsetsWrite?) in
            guard !state.isClosed else { return (groupIds.map { _ in .coordinatorNotAvailable }, nil) }
            var records: [OffsetsLogRecord] = []
            let errors = groupIds.map { groupId -> ErrorCode in
                let hadOffsets = state.machine.offsets.hasOffsets(groupId)
                let error = state.machine.deleteGroup(groupId)
                if error == .none && hadOffsets { records.append(.groupDeleted(group: groupId)) }
                return error
            }
            return (errors, records.isEmpty ? nil : submit(records, &state))
        }
        guard let pending else { return errors }
        if case .failure(let error) = await pending.wait() {
            offsetsWriteFailed(pending, error)
            return errors.map { $0 == .none ? .coordinatorNotAvailable : $0 }
        }
        for (groupId, error) in zip(groupIds, errors) where error == .none {
            logger.info("deleted group", metadata: ["group": "\(groupId)"])
        }
        maybeCompact()
        return errors
    }

    /// Forgets every group's committed offsets of topics that were deleted, durably, so a topic
    /// recreated under the same name does not inherit positions from the old one.
    func deleteOffsets(ofTopics topics: [String]) async {
        let pending = locked.withLock { state -> PendingOffsetsWrite? in
            guard !state.isClosed else { return nil }
            let records: [OffsetsLogRecord] = topics.compactMap { topic in
                state.machine.removeOffsets(ofTopic: topic) > 0 ? .topicDeleted(topic: topic) : nil
            }
            return records.isEmpty ? nil : submit(records, &state)
        }
        guard let pending else { return }
        if case .failure(let error) = await pending.wait() {
            offsetsWriteFailed(pending, error)
            return
        }
        logger.info("deleted committed offsets of deleted topics", metadata: ["topics": "\(topics)"])
        maybeCompact()
    }

    /// Topics that have committed offsets in some group.
    var topicsWithOffsets: Set<String> { locked.withLock { $0.machine.offsets.topics } }

    /// Submits records as consecutive log entries, then a sync. Called under the lock, so entries
    /// reach the log in the order their changes were applied.
    func submit(_ records: [OffsetsLogRecord], _ state: inout Locked) -> PendingOffsetsWrite {
        let pending = PendingOffsetsWrite(completions: records.count + 1, epoch: state.writer.epoch)
        for record in records {
            let offset = state.writer.nextOffset
            state.writer.nextOffset += 1
            state.writer.recordsInLog += record.offsetRecordCount
            log.submitAppend(firstOffset: offset, lastOffset: offset, maxTimestamp: -1, parts: [record.encode()]) {
                pending.completed($0)
            }
        }
        log.submitSync { pending.completed($0) }
        return pending
    }

    /// A write failed: memory may now hold a change the log does not. Re-read where the log ends
    /// (once per failure epoch) and have the next snapshot make log and memory agree again.
    func offsetsWriteFailed(_ pending: PendingOffsetsWrite, _ error: StorageError) {
        locked.withLock { state in
            guard state.writer.epoch == pending.epoch else { return }
            state.writer.epoch += 1
            if let end = try? log.state().endOffset { state.writer.nextOffset = end }
            state.writer.needsSnapshot = true
        }
        logger.error("writing the group offsets log failed", metadata: ["error": "\(error)"])
    }

    // MARK: Compaction

    /// Starts a compaction in the background when the log has grown well past the live offsets.
    func maybeCompact() {
        locked.withLock { state in
            guard !state.isClosed, state.writer.compaction == nil else { return }
            let records = state.writer.recordsInLog
            let due =
                state.writer.needsSnapshot
                || (records >= offsetsSettings.compactionThresholdRecords && records >= 2 * state.machine.offsets.count)
            guard due else { return }
            state.writer.compaction = Task { await self.compact() }
        }
    }

    /// Writes a snapshot of the live offsets and deletes the log before it. Commits wait only while
    /// the snapshot is encoded and submitted; the sync and the deletion run without the lock.
    private func compact() async {
        let (pending, snapshotOffset, liveCount) = locked.withLock { state in
            let snapshotOffset = state.writer.nextOffset
            let records = OffsetsLogRecord.snapshot(id: snapshotOffset, of: state.machine.offsets)
            let pending = submit(records, &state)
            state.writer.recordsInLog = state.machine.offsets.count
            state.writer.needsSnapshot = false
            return (pending, snapshotOffset, state.machine.offsets.count)
        }
        switch await pending.wait() {
        case .success:
            do {
                try await log.deleteBefore(snapshotOffset)
                logger.debug(
                    "compacted the group offsets log",
                    metadata: ["offsets": "\(liveCount)", "start": "\(snapshotOffset)"]
                )
            } catch {
                // The snapshot is durable; replay of the longer log gives the same state.
                logger.warning("could not delete compacted group offsets", metadata: ["error": "\(error)"])
            }
        case .failure(let error):
            offsetsWriteFailed(pending, error)
        }
        locked.withLock { $0.writer.compaction = nil }
    }

    /// The offsets log's state (tests).
    func offsetsLogState() throws -> StorageLogState { try log.state() }

    /// Waits for a running compaction (tests and shutdown).
    func waitForCompaction() async {
        let task = locked.withLock { $0.writer.compaction }
        await task?.value
    }

    // MARK: Describing

    func describe(groupId: String) -> GroupSummary { locked.withLock { $0.machine.describe(groupId) } }

    func list(statesFilter: [String]) -> [GroupOverview] {
        locked.withLock { $0.machine.list(statesFilter: statesFilter) }
    }

    // MARK: Shutdown

    /// Answers every parked JoinGroup/SyncGroup with NOT_COORDINATOR (as Kafka does when it
    /// unloads a group) and parks no more, so the transport's graceful shutdown need not wait a
    /// rebalance timeout. Heartbeats, commits and LeaveGroup keep working until `close`.
    func beginShutdown() {
        let completions = locked.withLock { state in
            state.acceptingRebalances = false
            let actions = state.machine.unloadAll(error: .notCoordinator)
            return Self.resolve(actions, in: &state)
        }
        Self.deliver(completions)
    }

    /// Stops the timer, waits for a running compaction and closes the offsets log.
    func close() async {
        beginShutdown()
        let compaction = locked.withLock { state in
            state.isClosed = true
            state.timer?.task.cancel()
            state.timer = nil
            // Any waiter left is from a request that raced with shutdown; answer it.
            let leftovers = state.waiters.values
            state.waiters.removeAll()
            for waiter in leftovers { waiter.complete(.join(.error(.notCoordinator))) }
            return state.writer.compaction
        }
        await compaction?.value
        await log.close()
    }
}
