internal import CKStore
import Logging
import NIOCore
import Synchronization

/// What a log holds (kstore.h `kstore_log_state`).
public struct StorageLogState: Sendable, Equatable {
    /// The first readable offset.
    public var startOffset: Int64
    /// The offset the next append must start at.
    public var endOffset: Int64
    /// Every entry below it is on stable storage (equals `endOffset` without DURABLE).
    public var durableEndOffset: Int64
    /// The largest max timestamp of the entries in [start, end); -1 if none.
    public var maxTimestamp: Int64
    /// Bytes of the log's entries (entry bytes only).
    public var byteCount: UInt64
    /// Entries in [start, end), counting one that lies partly below start.
    public var entryCount: UInt64

    public init(
        startOffset: Int64,
        endOffset: Int64,
        durableEndOffset: Int64,
        maxTimestamp: Int64,
        byteCount: UInt64,
        entryCount: UInt64
    ) {
        self.startOffset = startOffset
        self.endOffset = endOffset
        self.durableEndOffset = durableEndOffset
        self.maxTimestamp = maxTimestamp
        self.byteCount = byteCount
        self.entryCount = entryCount
    }
}

/// Whole entries returned by `StorageLog.read`.
public struct StorageReadResult: Sendable {
    /// The entries' bytes, concatenated, exactly as appended.
    public var bytes: ByteBuffer
    /// The offset after the last entry returned; the requested offset when none was.
    public var nextOffset: Int64
    public var entryCount: Int

    public init(bytes: ByteBuffer, nextOffset: Int64, entryCount: Int) {
        self.bytes = bytes
        self.nextOffset = nextOffset
        self.entryCount = entryCount
    }
}

/// One open log (kstore.h `kstore_log`), for example one Kafka partition.
///
/// Threading: for a non-blocking backend every call runs on the caller's thread. Otherwise each
/// call is queued on this log's serial lane on the blocking pool: one log's calls run one at a time
/// in submission order, different logs in parallel, and the async methods suspend without blocking
/// a thread. Completions of `submitAppend`/`submitSync` are delivered one at a time, in the order
/// the calls were made.
public final class StorageLog: Sendable {
    /// The first capacity `read` gives its buffer; it grows only when entries need more.
    static let readInitialBytes = 16 * 1024

    private enum Phase: Equatable {
        case open, closing, closed
    }

    private struct State {
        var phase = Phase.open
        /// Calls in progress plus accepted appends/syncs whose completion is not yet delivered.
        var activeCount = 0
        var drainWaiter: CheckedContinuation<Void, Never>?
        var closeWaiters: [CheckedContinuation<Void, Never>] = []
        /// The start offset the host keeps itself when the backend has no delete_before
        /// (kstore.h host fallback); `Int64.min` otherwise.
        var hostStartOffset = Int64.min
    }

    public let name: String
    let handle: LogHandle
    let context: InstanceContext
    private let operationLane: SerialLane
    private let completionLane: SerialLane
    private let lifecycle = LockedState(State())
    /// kstore.h "Threading": the host never runs two mutating calls (append, truncate_to,
    /// delete_before, enforce_retention) on one log at once. The caller serializes appends, but
    /// retention or truncation may come from another task, so every mutating call holds this lock
    /// (uncontended on the blocking path, where the lane already serializes them). It is never
    /// held while a completion is delivered, so a completion may submit the next append.
    private let mutationLock = LockedState(())
    /// Appends and syncs in submission order while the backend answers BUSY (see `submitInOrder`).
    private let backlog = LockedState(Backlog())
    /// `backlog.owned`, readable without the lock: while false, appends and syncs call the
    /// backend directly. Written only with the backlog's lock held.
    private let backlogOwned = Atomic<Bool>(false)
    /// Deliveries queued on or running through the completion lane. While it is not zero, a
    /// backend callback's success is queued behind them instead of being delivered at once.
    private let laneDeliveries = Atomic<Int>(0)

    /// How long the host keeps retrying an append or sync that the backend refuses with
    /// KSTORE_ERR_BUSY (kstore.h: temporarily unable, retryable — the uring backend's staging is
    /// full, or it is rolling back a failed write) before it reports the refusal.
    static let busyRetryLimit: Duration = .seconds(30)
    /// The pause before the first retry; it doubles up to `busyRetryPauseMax`.
    static let busyRetryPauseMin: Duration = .microseconds(200)
    static let busyRetryPauseMax: Duration = .milliseconds(20)

    /// Submissions the backend has not taken yet, because it answered BUSY or because an earlier
    /// one is still waiting for it. Invariant: `operations` is non-empty only while `owned`.
    private struct Backlog {
        /// A submission was refused and waits (a retry is scheduled), or its owner is taking the
        /// queued ones in order: every other submission queues behind it. While false,
        /// submissions call the backend directly.
        var owned = false
        var operations = CircularBuffer<Submission>()
        /// When the backend first refused the operation at the head.
        var busySince: ContinuousClock.Instant?
        var pause = StorageLog.busyRetryPauseMin
        /// Appends and syncs that waited at least once (for tests and statistics).
        var waited: UInt64 = 0
    }

    /// One append or sync: `attempt` calls the backend and returns false, having delivered
    /// nothing, when the backend answered BUSY; `deliver` completes it with a status.
    private struct Submission: Sendable {
        let attempt: @Sendable () -> Bool
        let deliver: @Sendable (Int32) -> Void
    }

    init(name: String, handle: LogHandle, context: InstanceContext) {
        self.name = name
        self.handle = handle
        self.context = context
        self.operationLane = SerialLane(executor: context.executor)
        self.completionLane = SerialLane(executor: context.executor)
    }

    public var capabilities: StorageCapabilities { self.context.backend.capabilities }

    /// Whether the backend can remove entries from the end (kstore.h truncate_to). Without it the
    /// host cannot roll back a failed append and must treat the failure as fatal for the log.
    public var supportsTruncation: Bool { self.handle.member(\.truncate_to) != nil }

    // MARK: Appends and syncs

    /// Submits one append in order. The CALLER serializes appends per log (the broker calls this
    /// under its partition lock, in offset order). The bytes are `parts` concatenated (the broker
    /// passes a rewritten 16-byte header + the rest of the producer's batch). Non-blocking backends
    /// are called right here (inside withUnsafeReadableBytes, no copy); others are enqueued on the
    /// log's serial lane on the blocking thread pool, preserving order. `completion` runs exactly
    /// once, on any thread.
    ///
    /// Where `completion` runs: a backend that completes before its append returns (memory)
    /// called directly has its completion run on the caller's thread *before submitAppend
    /// returns* — so the caller must not hold a non-reentrant lock that the completion takes.
    /// Otherwise it runs on a pool thread. Completions of one log never run concurrently and
    /// arrive in submission order. A rejected append (a contract violation such as a first offset
    /// that does not continue the log, or a closed log) completes with the error and changes
    /// nothing.
    public func submitAppend(
        firstOffset: Int64,
        lastOffset: Int64,
        maxTimestamp: Int64,
        parts: [ByteBuffer],
        completion: @escaping @Sendable (Result<Void, StorageError>) -> Void
    ) {
        do {
            try self.enter("append")
        } catch {
            completion(.failure(error))
            return
        }
        let deliver: @Sendable (Int32) -> Void = { status in
            if status == KSTORE_OK {
                completion(.success(()))
            } else {
                let operation = "append [\(firstOffset), \(lastOffset)] to log '\(self.name)'"
                completion(.failure(self.context.error(status, operation)))
            }
            self.leave()
        }
        let handle = self.handle
        let attempt: @Sendable () -> Bool = {
            let outcome = withIovecs(parts) { iovecs, iovecCount in
                self.callWithCompletion { callback, context in
                    // REQUIRED member, checked non-NULL in LogHandle.init.
                    self.mutationLock.withLock { _ in
                        handle.methods.append!(
                            handle.pointer,
                            firstOffset,
                            lastOffset,
                            maxTimestamp,
                            iovecs,
                            iovecCount,
                            callback,
                            context
                        )
                    }
                } deliverLater: {
                    deliver($0)
                }
            }
            return self.deliverUnlessBusy(outcome, deliver)
        }
        self.submitInOrder(Submission(attempt: attempt, deliver: deliver))
    }

    /// Appends one entry and waits until it is readable (see `submitAppend`).
    public func append(firstOffset: Int64, lastOffset: Int64, maxTimestamp: Int64, parts: [ByteBuffer]) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            self.submitAppend(
                firstOffset: firstOffset,
                lastOffset: lastOffset,
                maxTimestamp: maxTimestamp,
                parts: parts
            ) {
                continuation.resume(with: $0)
            }
        }
    }

    /// Submits a sync: `completion` runs once every append submitted before it is readable and,
    /// on a DURABLE backend, on stable storage. Same threading and ordering as `submitAppend`.
    public func submitSync(completion: @escaping @Sendable (Result<Void, StorageError>) -> Void) {
        do {
            try self.enter("sync")
        } catch {
            completion(.failure(error))
            return
        }
        let deliver: @Sendable (Int32) -> Void = { status in
            if status == KSTORE_OK {
                completion(.success(()))
            } else {
                completion(.failure(self.context.error(status, "sync of log '\(self.name)'")))
            }
            self.leave()
        }
        let handle = self.handle
        let attempt: @Sendable () -> Bool = {
            let outcome = self.callWithCompletion { callback, context in
                // REQUIRED member, checked non-NULL in LogHandle.init.
                handle.methods.sync!(handle.pointer, callback, context)
            } deliverLater: {
                deliver($0)
            }
            return self.deliverUnlessBusy(outcome, deliver)
        }
        self.submitInOrder(Submission(attempt: attempt, deliver: deliver))
    }

    /// `submitSync` for a caller inside a completion (of this or another log of the instance): the
    /// backend's call is made from this log's lane on the blocking pool, never from the calling
    /// thread, which may be the backend's own (kstore.h: a callback must not call the instance).
    public func submitSyncOffCompletionThread(completion: @escaping @Sendable (Result<Void, StorageError>) -> Void) {
        self.operationLane.enqueue { self.submitSync(completion: completion) }
    }

    /// Syncs and waits (see `submitSync`).
    public func sync() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            self.submitSync { continuation.resume(with: $0) }
        }
    }

    // MARK: Reads and queries

    /// Whole entries from the one containing `offset`, none starting at or after `limit`, at most
    /// `maxBytes` in total — except that when `minimumOneEntry` is true and the first entry alone
    /// exceeds maxBytes, that one entry is returned (Kafka's KIP-74 rule). Allocates only what it
    /// returns (do not allocate maxBytes up front: start small, grow, read on from nextOffset).
    ///
    /// Throws `.outOfRange` when `offset` lies outside [start, end]. Reading at the end or at/after
    /// `limit` returns no entries.
    public func read(
        from offset: Int64,
        limit: Int64,
        maxBytes: Int,
        minimumOneEntry: Bool
    ) async throws
        -> StorageReadResult
    {
        try await self.perform("read") {
            try self.performRead(from: offset, limit: limit, maxBytes: maxBytes, minimumOneEntry: minimumOneEntry)
        }
    }

    /// The log's `control` member (backend-specific operations, kstore.h): returns its status,
    /// KSTORE_ERR_UNSUPPORTED when the backend has none. Runs on the calling thread.
    public func control(_ op: Int32, _ argument: UnsafeMutableRawPointer?) -> Int32 {
        guard let control = self.handle.member(\.control) else { return KSTORE_ERR_UNSUPPORTED }
        return control(self.handle.pointer, op, argument)
    }

    /// The log's current state, straight from the backend's memory (kstore.h: state never blocks),
    /// on the caller's thread whatever the backend.
    public func state() throws -> StorageLogState {
        try self.enter("state")
        defer { self.leave() }
        return try self.fetchState()
    }

    /// The first offset (from start) of the first entry whose max timestamp is >= `timestamp`, or
    /// nil if there is none. Uses the backend's time index; without find_offset_by_time the host
    /// scans the entries with read and `StorageHostConfiguration.entryMaxTimestamp`.
    public func findOffset(atOrAfterTimestamp timestamp: Int64) async throws -> Int64? {
        try await self.perform("find offset by time") { try self.performFindOffset(atOrAfterTimestamp: timestamp) }
    }

    // MARK: Mutations

    /// Removes every entry whose first offset is >= `offset`, an entry boundary in [start, end]
    /// (else `.outOfRange`). Throws `.unsupported` when the backend cannot truncate.
    public func truncate(to offset: Int64) async throws {
        try await self.perform("truncate") {
            guard let truncate = self.handle.member(\.truncate_to) else {
                throw StorageError(
                    code: .unsupported,
                    message: "truncate log '\(self.name)' to \(offset): backend '\(self.context.backend.name)' has no "
                        + "truncate_to, so a failed append is fatal for the log"
                )
            }
            let status = self.mutationLock.withLock { _ in truncate(self.handle.pointer, offset) }
            guard status == KSTORE_OK else {
                throw self.context.error(status, "truncate log '\(self.name)' to \(offset)")
            }
        }
    }

    /// Advances the start offset to `offset` (no-op below start, `.outOfRange` beyond end); reads
    /// below it then throw `.outOfRange`.
    public func deleteBefore(_ offset: Int64) async throws {
        try await self.perform("delete before") {
            if let deleteBefore = self.handle.member(\.delete_before) {
                let status = self.mutationLock.withLock { _ in deleteBefore(self.handle.pointer, offset) }
                guard status == KSTORE_OK else {
                    throw self.context.error(status, "delete before \(offset) in log '\(self.name)'")
                }
                return
            }
            // kstore.h fallback: the host keeps the start offset; no storage is reclaimed.
            let state = try self.fetchState()
            guard offset <= state.endOffset else {
                throw StorageError(
                    code: .outOfRange,
                    message: "delete before \(offset) in log '\(self.name)': beyond the end \(state.endOffset)"
                )
            }
            self.lifecycle.withLock { $0.hostStartOffset = max($0.hostStartOffset, offset) }
        }
    }

    /// Retention (kstore.h enforce_retention): deletes whole storage units from the start while
    /// the log holds more than `retainBytes` bytes (ignored when negative) or the oldest unit is
    /// wholly older than `retainAfterTimestamp` (ignored when negative). Returns the new start
    /// offset. Without the member, retention is not enforced and a warning is logged.
    public func enforceRetention(retainBytes: Int64, retainAfterTimestamp: Int64) async throws -> Int64 {
        try await self.perform("enforce retention") {
            guard let enforce = self.handle.member(\.enforce_retention) else {
                self.context.logger.warning(
                    "backend has no enforce_retention: retention is not enforced",
                    metadata: ["storage.log": "\(self.name)"]
                )
                return try self.fetchState().startOffset
            }
            var newStartOffset: Int64 = 0
            let status = self.mutationLock.withLock { _ in
                enforce(self.handle.pointer, retainBytes, retainAfterTimestamp, &newStartOffset)
            }
            guard status == KSTORE_OK else {
                throw self.context.error(status, "enforce retention on log '\(self.name)'")
            }
            return max(newStartOffset, self.lifecycle.withLock { $0.hostStartOffset })
        }
    }

    // MARK: Closing

    /// Waits until every call in progress has finished and every completion has been delivered,
    /// then releases the log (the backend's close, exactly once). Concurrent and later calls wait
    /// for the first to finish; every other call on the log afterwards throws or completes with an
    /// error.
    public func close() async {
        let first = self.lifecycle.withLock { state in
            guard state.phase == .open else { return false }
            state.phase = .closing
            return true
        }
        guard first else {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let closed = self.lifecycle.withLock { state in
                    if state.phase == .closed { return true }
                    state.closeWaiters.append(continuation)
                    return false
                }
                if closed { continuation.resume() }
            }
            return
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let drained = self.lifecycle.withLock { state in
                if state.activeCount == 0 { return true }
                state.drainWaiter = continuation
                return false
            }
            if drained { continuation.resume() }
        }
        let handle = self.handle
        // REQUIRED member, checked non-NULL in LogHandle.init.
        let closeLog = { @Sendable in handle.methods.close!(handle.pointer) }
        if self.context.usesBlockingPool {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                self.operationLane.enqueue {
                    closeLog()
                    continuation.resume()
                }
            }
        } else {
            closeLog()
        }
        self.context.unregister(self)
        self.context.logger.debug("log closed", metadata: ["storage.log": "\(self.name)"])
        let waiters = self.lifecycle.withLock { state in
            state.phase = .closed
            defer { state.closeWaiters = [] }
            return state.closeWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    // MARK: - Machinery

    private func enter(_ operation: String) throws(StorageError) {
        try self.lifecycle.withLock { (state: inout State) throws(StorageError) in
            guard state.phase == .open else {
                throw StorageError(code: .invalidArgument, message: "\(operation): log '\(self.name)' is closed")
            }
            state.activeCount += 1
        }
    }

    private func leave() {
        let waiter = self.lifecycle.withLock { state -> CheckedContinuation<Void, Never>? in
            state.activeCount -= 1
            guard state.activeCount == 0, let waiter = state.drainWaiter else { return nil }
            state.drainWaiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Runs a call on the caller's thread (non-blocking backend) or on this log's serial lane.
    private func perform<T: Sendable>(_ operation: String, _ body: @escaping @Sendable () throws -> T) async throws -> T
    {
        try self.enter(operation)
        guard self.context.usesBlockingPool else {
            defer { self.leave() }
            return try body()
        }
        return try await withCheckedThrowingContinuation { continuation in
            self.operationLane.enqueue {
                let result = Result { try body() }
                self.leave()
                continuation.resume(with: result)
            }
        }
    }

    /// How an append or sync call went.
    private enum CallOutcome {
        /// The member returned an error: nothing changed and the callback will never run.
        case rejected(Int32)
        /// The member accepted and the callback already ran, before the member returned.
        case completedDuringCall(Int32)
        /// The member accepted; the callback will run later on a backend thread.
        case pending
    }

    /// Calls an append or sync member with a retained completion context.
    private func callWithCompletion(
        _ call: (kstore_completion, UnsafeMutableRawPointer) -> Int32,
        deliverLater: @escaping @Sendable (Int32) -> Void
    ) -> CallOutcome {
        let box = CompletionContext { status in
            // On the backend's thread, inside its callback. A success is delivered right here (the
            // host's completions are short and never call the backend): no thread hand-off. A
            // failure needs last_error, which the ABI forbids inside a callback, so it hops to this
            // log's completion lane — and so does everything after it until the lane is drained,
            // to keep the order kstore.h promises.
            if status == KSTORE_OK && self.laneDeliveries.load(ordering: .acquiring) == 0 {
                deliverLater(status)
            } else {
                self.deliverOnLane { deliverLater(status) }
            }
        }
        let context = Unmanaged.passRetained(box).toOpaque()
        let status = call(
            { context, status in
                // The host passes a non-NULL context to every append and sync, and the backend
                // calls the callback exactly once with it (kstore.h "Completions").
                Unmanaged<CompletionContext>.fromOpaque(context!).takeRetainedValue().fire(status)
            },
            context
        )
        guard status == KSTORE_OK else {
            // Rejected: the backend never calls the callback, so the reference is ours to drop.
            Unmanaged<CompletionContext>.fromOpaque(context).release()
            return .rejected(status)
        }
        if let status = box.memberReturned() { return .completedDuringCall(status) }
        return .pending
    }

    /// Runs a delivery through the completion lane (right here if the lane is idle), counting it in
    /// `laneDeliveries` so that backend callbacks do not overtake it.
    private func deliverOnLane(_ delivery: @escaping @Sendable () -> Void) {
        self.laneDeliveries.add(1, ordering: .acquiringAndReleasing)
        self.completionLane.runInlineOrEnqueue {
            delivery()
            self.laneDeliveries.subtract(1, ordering: .acquiringAndReleasing)
        }
    }

    /// Delivers a completion that is known once the member returned, in order behind any completion
    /// of this log still waiting on the lane — except a BUSY refusal, which delivers nothing and
    /// returns false so that `submitInOrder` tries again.
    private func deliverUnlessBusy(_ outcome: CallOutcome, _ deliver: @escaping @Sendable (Int32) -> Void) -> Bool {
        switch outcome {
        case .rejected(KSTORE_ERR_BUSY):
            return false
        case .completedDuringCall(KSTORE_OK) where self.laneDeliveries.load(ordering: .acquiring) == 0:
            // A synchronous backend completed during the call (memory; file on a storage thread):
            // the member has returned, nothing waits on the lane, so deliver here.
            deliver(KSTORE_OK)
        case .rejected(let status), .completedDuringCall(let status):
            self.deliverOnLane { deliver(status) }
        case .pending:
            break
        }
        return true
    }

    /// Runs appends and syncs in submission order, on the caller's thread (non-blocking backend)
    /// or this log's serial lane. A submission the backend refuses with BUSY is not failed: it
    /// waits, with every later append and sync of this log queued behind it, and is tried again
    /// after a pause (200 µs doubling to 20 ms) until the backend takes it — backpressure, so a
    /// write pipeline that is momentarily full slows producers instead of failing them. Only after
    /// `busyRetryLimit` of refusals does it complete with BUSY. Later submissions keep their order:
    /// a sync queued behind a waiting append still covers it.
    private func submitInOrder(_ submission: Submission) {
        // A blocking backend is called right here from a storage thread (a request handed to the
        // pool whole, kstore.h "Threading": any call may block there); from other threads through
        // the log's lane.
        guard self.context.usesBlockingPool, !BlockingExecutor.isStorageThread else {
            self.runInOrder(submission)
            return
        }
        self.operationLane.enqueue { self.runInOrder(submission) }
    }

    private func runInOrder(_ submission: Submission) {
        if !self.backlogOwned.load(ordering: .acquiring) {
            // Nothing waits (the common case, without a lock): call the backend right here.
            if submission.attempt() { return }
            let owner = self.backlog.withLock { backlog -> Bool in
                guard !backlog.owned else {
                    // Another submission, concurrent with this one, waits already: queue behind it.
                    backlog.operations.append(submission)
                    return false
                }
                self.setOwned(&backlog, true)
                return true
            }
            if owner { self.drainBacklog(first: submission, refused: true) }
            return
        }
        let direct = self.backlog.withLock { backlog in
            if backlog.owned {
                backlog.operations.append(submission)
                return false
            }
            self.setOwned(&backlog, true)
            return true
        }
        if direct { self.drainBacklog(first: submission) }
    }

    /// Changes `owned` and its lock-free mirror together (with the backlog's lock held).
    private func setOwned(_ backlog: inout Backlog, _ owned: Bool) {
        backlog.owned = owned
        self.backlogOwned.store(owned, ordering: .releasing)
    }

    /// Called by the owner of the backlog: tries `first` (or the head of the backlog), then every
    /// queued submission, until the backlog is empty (ownership ends) or the backend answers BUSY
    /// (ownership passes to a scheduled retry). `refused`: the backend just refused `first`.
    private func drainBacklog(first: Submission?, refused: Bool = false) {
        var next = first
        var alreadyRefused = refused
        // Whether the operation before the next one was taken or given up (not a retry's start).
        var previousDone = false
        while true {
            let submission: Submission
            if let next {
                submission = next
            } else {
                let head = self.backlog.withLock { [previousDone] backlog -> Submission? in
                    if previousDone {
                        backlog.busySince = nil
                        backlog.pause = Self.busyRetryPauseMin
                    }
                    guard let head = backlog.operations.popFirst() else {
                        self.setOwned(&backlog, false)
                        return nil
                    }
                    return head
                }
                guard let head else { return }
                submission = head
            }
            next = nil
            if !alreadyRefused {
                previousDone = true
                if submission.attempt() { continue }
            }
            alreadyRefused = false
            let now = ContinuousClock.now
            let pause = self.backlog.withLock { backlog -> Duration? in
                let since = backlog.busySince ?? now
                if backlog.busySince == nil { backlog.waited += 1 }
                guard now - since < Self.busyRetryLimit else { return nil }
                backlog.busySince = since
                backlog.operations.prepend(submission)
                defer { backlog.pause = min(backlog.pause * 2, Self.busyRetryPauseMax) }
                return backlog.pause
            }
            guard let pause else {
                self.context.logger.warning(
                    "the backend stayed busy for \(Self.busyRetryLimit); failing the waiting operation",
                    metadata: ["storage.log": "\(self.name)"]
                )
                self.deliverOnLane { submission.deliver(KSTORE_ERR_BUSY) }
                continue
            }
            Task.detached {
                try? await Task.sleep(for: pause)
                if self.context.usesBlockingPool {
                    self.operationLane.enqueue { self.drainBacklog(first: nil) }
                } else {
                    self.drainBacklog(first: nil)
                }
            }
            return
        }
    }

    /// How many appends and syncs have waited for a BUSY backend since the log was opened.
    var busyWaits: UInt64 { self.backlog.withLock { $0.waited } }

    private func fetchState() throws -> StorageLogState {
        var state = kstore_log_state()
        state.struct_size = UInt32(MemoryLayout<kstore_log_state>.size)
        // REQUIRED member, checked non-NULL in LogHandle.init.
        let status = self.handle.methods.state!(self.handle.pointer, &state)
        guard status == KSTORE_OK else { throw self.context.error(status, "state of log '\(self.name)'") }
        let hostStartOffset = self.lifecycle.withLock { $0.hostStartOffset }
        return StorageLogState(
            startOffset: max(state.start_offset, min(hostStartOffset, state.end_offset)),
            endOffset: state.end_offset,
            durableEndOffset: state.durable_end_offset,
            maxTimestamp: state.max_timestamp,
            byteCount: state.byte_count,
            entryCount: state.entry_count
        )
    }

    /// One call of the backend's read into `destination` (capacity = its count).
    private func readEntries(
        from offset: Int64,
        limit: Int64,
        into destination: UnsafeMutableRawBufferPointer
    ) throws -> kstore_read_result {
        var result = kstore_read_result()
        result.struct_size = UInt32(MemoryLayout<kstore_read_result>.size)
        result.next_offset = offset
        var status: Int32 = KSTORE_OK
        if let base = destination.baseAddress {
            // REQUIRED member, checked non-NULL in LogHandle.init.
            status = self.handle.methods.read!(
                self.handle.pointer,
                offset,
                limit,
                base,
                UInt64(destination.count),
                &result
            )
        } else {
            // An empty buffer may have no address; kstore.h wants a pointer, so lend one byte.
            var spare: UInt8 = 0
            status = withUnsafeMutableBytes(of: &spare) { spare in
                self.handle.methods.read!(self.handle.pointer, offset, limit, spare.baseAddress, 0, &result)
            }
        }
        guard status == KSTORE_OK else { throw self.context.error(status, "read log '\(self.name)' at \(offset)") }
        // A backend that wrote past the buffer has already corrupted memory: stop.
        precondition(
            result.byte_count <= UInt64(destination.count),
            "backend '\(self.context.backend.name)' wrote \(result.byte_count) bytes into a "
                + "\(destination.count)-byte buffer"
        )
        let consistent =
            result.entry_count == 0
            ? result.byte_count == 0
                && (result.first_entry_bytes == 0 || result.first_entry_bytes > UInt64(destination.count))
            : result.byte_count > 0 && result.next_offset > offset
        guard consistent else {
            throw StorageError(
                code: .corrupt,
                message: "read log '\(self.name)' at \(offset): backend '\(self.context.backend.name)' returned an "
                    + "inconsistent result (entries \(result.entry_count), bytes \(result.byte_count), next "
                    + "\(result.next_offset), first entry \(result.first_entry_bytes) bytes, "
                    + "capacity \(destination.count))"
            )
        }
        return result
    }

    private func performRead(
        from offset: Int64,
        limit: Int64,
        maxBytes: Int,
        minimumOneEntry: Bool
    ) throws
        -> StorageReadResult
    {
        guard maxBytes >= 0 else {
            throw StorageError(code: .invalidArgument, message: "read log '\(self.name)': maxBytes \(maxBytes) < 0")
        }
        let hostStartOffset = self.lifecycle.withLock { $0.hostStartOffset }
        guard offset >= hostStartOffset else {
            throw StorageError(
                code: .outOfRange,
                message: "read log '\(self.name)' at \(offset): below the start offset \(hostStartOffset)"
            )
        }
        // Size the buffer from the log's average entry size over the requested range, so a large
        // read does not re-copy what it read each time the buffer doubles; reads that would need
        // more still grow below.
        var initialBytes = Self.readInitialBytes
        if let state = try? self.fetchState(), state.entryCount > 0, state.endOffset > state.startOffset {
            let offsets = max(0, min(limit, state.endOffset) - offset)
            let estimate = Double(state.byteCount) * Double(offsets) / Double(state.endOffset - state.startOffset)
            initialBytes = max(initialBytes, Int(min(estimate * 1.05, Double(Int32.max))))
        }
        var buffer = ByteBufferAllocator().buffer(capacity: min(maxBytes, initialBytes))
        var nextOffset = offset
        var entryCount = 0
        // Set to the first entry's size when it alone exceeds maxBytes and KIP-74 says to return it
        // anyway (and nothing after it).
        var oversizedFirstEntryBytes: Int? = nil
        while true {
            let room = oversizedFirstEntryBytes ?? min(buffer.writableBytes, maxBytes - buffer.readableBytes)
            var result = kstore_read_result()
            try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 0) { writable in
                let destination = UnsafeMutableRawBufferPointer(rebasing: writable.prefix(max(0, room)))
                result = try self.readEntries(from: nextOffset, limit: limit, into: destination)
                return Int(result.byte_count)
            }
            if result.entry_count > 0 {
                entryCount += Int(result.entry_count)
                nextOffset = result.next_offset
                if oversizedFirstEntryBytes != nil || buffer.readableBytes >= maxBytes { break }
                continue
            }
            guard result.first_entry_bytes > 0, result.first_entry_bytes <= UInt64(Int.max) else { break }
            // The next entry did not fit: grow the buffer for it, geometrically but never past maxBytes.
            let neededBytes = Int(result.first_entry_bytes)
            if neededBytes <= maxBytes - buffer.readableBytes {
                let capacity = min(maxBytes, max(buffer.readableBytes + neededBytes, buffer.capacity * 2))
                buffer.reserveCapacity(capacity)
            } else if entryCount == 0 && minimumOneEntry && oversizedFirstEntryBytes == nil {
                oversizedFirstEntryBytes = neededBytes
                buffer.reserveCapacity(minimumWritableBytes: neededBytes)
            } else {
                break
            }
        }
        return StorageReadResult(bytes: buffer, nextOffset: nextOffset, entryCount: entryCount)
    }

    private func performFindOffset(atOrAfterTimestamp timestamp: Int64) throws -> Int64? {
        let hostStartOffset = self.lifecycle.withLock { $0.hostStartOffset }
        if let find = self.handle.member(\.find_offset_by_time) {
            var offset: Int64 = -1
            let status = find(self.handle.pointer, timestamp, &offset)
            guard status == KSTORE_OK else {
                throw self.context.error(status, "find offset by time \(timestamp) in log '\(self.name)'")
            }
            if offset < 0 { return nil }
            if offset >= hostStartOffset { return offset }
            // The answer lies below the start the host keeps itself: scan from that start.
        }
        return try self.scanForTimestamp(timestamp)
    }

    /// kstore.h fallback for find_offset_by_time: reads the entries one at a time from the start.
    private func scanForTimestamp(_ timestamp: Int64) throws -> Int64? {
        guard let entryMaxTimestamp = self.context.entryMaxTimestamp else {
            throw StorageError(
                code: .unsupported,
                message: "find offset by time in log '\(self.name)': backend '\(self.context.backend.name)' has no "
                    + "find_offset_by_time and no entryMaxTimestamp reader is configured"
            )
        }
        let state = try self.fetchState()
        guard state.maxTimestamp >= timestamp else { return nil }
        var offset = state.startOffset
        while offset < state.endOffset {
            // A zero-byte read reports the size of the entry containing `offset`.
            let probe = try self.readEntries(
                from: offset,
                limit: Int64.max,
                into: UnsafeMutableRawBufferPointer(start: nil, count: 0)
            )
            guard probe.first_entry_bytes > 0, probe.first_entry_bytes <= UInt64(Int.max) else { return nil }
            var entry = ByteBufferAllocator().buffer(capacity: Int(probe.first_entry_bytes))
            var result = kstore_read_result()
            try entry.writeWithUnsafeMutableBytes(minimumWritableBytes: 0) { writable in
                let destination = UnsafeMutableRawBufferPointer(rebasing: writable.prefix(Int(probe.first_entry_bytes)))
                result = try self.readEntries(from: offset, limit: Int64.max, into: destination)
                return Int(result.byte_count)
            }
            guard result.entry_count == 1 else { return nil }
            if let entryTimestamp = entryMaxTimestamp(entry), entryTimestamp >= timestamp { return offset }
            offset = result.next_offset
        }
        return nil
    }
}

/// A log handle and a copy of its validated methods table. kstore.h: the host never runs two
/// mutating calls on one log at once and the others may run concurrently with them; StorageLog
/// keeps to that (appends are serialized by the caller, everything goes through one lane on the
/// blocking path) and calls close exactly once after everything else, so sharing the pointer is
/// sound. REQUIRED members are checked non-NULL in init, so `methods.append!` and its siblings
/// cannot fail.
struct LogHandle: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<kstore_log>
    let methods: kstore_log_methods

    init(validating pointer: UnsafeMutablePointer<kstore_log>, origin: String) throws {
        func reject(_ reason: String) -> StorageError {
            StorageError(code: .unsupported, message: "\(origin) has an unusable kstore_log_methods table: \(reason)")
        }
        guard let table = pointer.pointee.methods else { throw reject("the methods pointer is NULL") }
        let raw = UnsafeRawPointer(table)
        let version = raw.load(fromByteOffset: 0, as: UInt32.self)
        let structSize = raw.load(fromByteOffset: 4, as: UInt32.self)
        guard version >= ABIVersion1.version else { throw reject("abi_version \(version) is older than 1") }
        guard structSize >= ABIVersion1.logMethodsBytes else {
            throw reject("struct_size \(structSize) is smaller than the version 1 size \(ABIVersion1.logMethodsBytes)")
        }
        let methods = table.pointee
        var missing: [String] = []
        if methods.close == nil { missing.append("close") }
        if methods.append == nil { missing.append("append") }
        if methods.read == nil { missing.append("read") }
        if methods.sync == nil { missing.append("sync") }
        if methods.state == nil { missing.append("state") }
        guard missing.isEmpty else { throw reject("REQUIRED member(s) \(missing.joined(separator: ", ")) are NULL") }
        self.pointer = pointer
        self.methods = methods
    }

    /// An OPTIONAL member, if the table's version and size say it exists and it is non-NULL.
    func member<Function>(_ keyPath: KeyPath<kstore_log_methods, Function?>, since version: UInt32 = 1) -> Function? {
        guard
            tableHasMember(
                version: self.methods.abi_version,
                structSize: self.methods.struct_size,
                since: version,
                offset: MemoryLayout<kstore_log_methods>.offset(of: keyPath)
            )
        else { return nil }
        return self.methods[keyPath: keyPath]
    }
}

/// The context of one accepted append or sync. The backend's callback may run before the member
/// returns (then the submitter delivers the completion, outside the callback) or later on a backend
/// thread (then it is handed to `deliverLater`).
final class CompletionContext: Sendable {
    private enum Phase {
        case calling, returned
        case firedDuringCall(Int32)
        case fired
    }

    private let phase = LockedState(Phase.calling)
    private let deliverLater: @Sendable (Int32) -> Void

    init(deliverLater: @escaping @Sendable (Int32) -> Void) {
        self.deliverLater = deliverLater
    }

    /// The backend's callback.
    func fire(_ status: Int32) {
        let later = self.phase.withLock { phase -> Bool in
            switch phase {
            case .calling:
                phase = .firedDuringCall(status)
                return false
            case .returned:
                phase = .fired
                return true
            case .firedDuringCall, .fired:
                preconditionFailure("a kstore completion was called twice")
            }
        }
        if later { self.deliverLater(status) }
    }

    /// The member returned KSTORE_OK: the status if the callback already ran, else nil.
    func memberReturned() -> Int32? {
        self.phase.withLock { phase -> Int32? in
            switch phase {
            case .calling:
                phase = .returned
                return nil
            case .firedDuringCall(let status):
                phase = .fired
                return status
            case .returned, .fired:
                preconditionFailure("a kstore member returned twice")
            }
        }
    }
}

/// Runs `body` with `parts` as a kstore_iovec array pointing into the buffers' storage, without
/// copying. The pointers are valid only inside `body`.
func withIovecs<R>(_ parts: [ByteBuffer], _ body: (UnsafePointer<kstore_iovec>?, UInt32) -> R) -> R {
    withUnsafeTemporaryAllocation(of: kstore_iovec.self, capacity: max(parts.count, 1)) { iovecs in
        func gather(_ index: Int) -> R {
            if index == parts.count {
                return body(UnsafePointer(iovecs.baseAddress), UInt32(parts.count))
            }
            return parts[index].withUnsafeReadableBytes { bytes in
                iovecs[index] = kstore_iovec(base: bytes.baseAddress, len: bytes.count)
                return gather(index + 1)
            }
        }
        return gather(0)
    }
}
