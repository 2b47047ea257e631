import KafkaMessages
import KafkaRecords
import NIOCore
import StorageHost
import Synchronization

/// What one produce to one partition came to.
struct AppendOutcome: Sendable, Equatable {
    var errorCode: ErrorCode
    var baseOffset: Int64
    var logStartOffset: Int64
    var errorMessage: String?

    static func failure(_ code: ErrorCode, _ message: String?, logStartOffset: Int64 = -1) -> AppendOutcome {
        AppendOutcome(errorCode: code, baseOffset: -1, logStartOffset: logStartOffset, errorMessage: message)
    }
}

/// Where a partition reports what became of one submitted batch: exactly once, from any thread
/// (the thread that submitted it, or the backend's completion thread). It must be quick and must
/// not call the storage backend (kstore.h "Completions").
struct AppendSink: Sendable {
    let collector: any AppendOutcomeCollector
    let slot: Int

    func deliver(_ outcome: AppendOutcome) {
        collector.deliver(outcome, slot: slot)
    }
}

/// Gathers the outcomes of a request's batches (see `ProduceCollector`).
protocol AppendOutcomeCollector: AnyObject, Sendable {
    func deliver(_ outcome: AppendOutcome, slot: Int)
}

/// A long-poll Fetch waiting for any of its partitions' high watermarks to move.
final class FetchWaiter: Sendable {
    private struct State {
        var fired = false
        var continuation: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())

    func fire() {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.fired else { return nil }
            state.fired = true
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume()
    }

    var hasFired: Bool { state.withLock { $0.fired } }

    /// Returns when `fire()` was called (before or during the wait).
    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let fired = state.withLock { state -> Bool in
                if state.fired { return true }
                state.continuation = continuation
                return false
            }
            if fired { continuation.resume() }
        }
    }
}

/// One partition: the single source of truth for its log start, log end and high watermark
/// (DESIGN §4). ListOffsets, Fetch and Metadata all read this object; it changes only when the
/// backend acknowledges an append or a sync.
///
/// Offsets are assigned and appends submitted under `appendOrder`, so appends reach the backend
/// in offset order. The short-lived `state` lock is never held while calling the backend, because
/// a synchronous backend calls our completion before `submitAppend` returns.
final class Partition: Sendable {
    let topicName: String
    let index: Int32
    let log: StorageLog
    /// acks=all waits for a sync only where a sync means something.
    let isDurable: Bool
    /// One sync covers every log of the instance (kstore.h KSTORE_CAP_SHARED_SYNC): a Produce then
    /// issues one sync for all its partitions (`submitSharedSync`) instead of one per partition.
    let syncIsShared: Bool

    // Internal (not private) for the extensions in Partition+Transactions.swift.
    let appendOrder = Mutex(())
    let state: Mutex<State>

    struct Snapshot: Sendable, Equatable {
        var logStartOffset: Int64
        /// The next offset to be assigned (Kafka's log end offset, including in-flight appends).
        var logEndOffset: Int64
        var highWatermark: Int64
        var maxTimestamp: Int64
        /// Offset of the record holding `maxTimestamp`, or -1 when not known yet.
        var offsetOfMaxTimestamp: Int64
        var isOnline: Bool
        /// What read_committed consumers may read up to (Kafka's LSO): the high watermark unless
        /// a transaction in this partition is undecided or its marker not yet visible.
        var lastStableOffset: Int64
    }

    struct InFlightBatch {
        var id: UInt64
        var firstOffset: Int64
        var endOffset: Int64
        var needsSync: Bool
        var sink: AppendSink
        var producerId: Int64
        var previousProducerEntry: ProducerStateTable.Entry?
        var maxTimestamp: Int64
        var offsetOfMaxTimestamp: Int64
        /// Retries of this batch by an idempotent producer that arrived while it was in flight:
        /// they are answered with its outcome, never before it is visible (acks=all: durable).
        var duplicates: [AppendSink] = []
        /// The batch began its producer's transaction in this partition (undone if it fails).
        var beginsTransaction = false
        /// The batch is an end-transaction marker (undone if it fails).
        var isMarker = false
    }

    /// Offsets and the id `State.admit` gave a batch.
    struct AssignedBatch {
        var first: Int64
        var last: Int64
        var id: UInt64
    }

    struct State {
        var logStartOffset: Int64
        var nextOffset: Int64
        var submittedEnd: Int64
        var appendedEnd: Int64
        var durableEnd: Int64
        var highWatermark: Int64
        var maxTimestamp: Int64
        var offsetOfMaxTimestamp: Int64
        var inFlight: [InFlightBatch] = []
        var nextBatchId: UInt64 = 0
        var syncInFlight = false
        var syncWanted = false
        var producers = ProducerStateTable()
        /// Transactions in progress, their markers and the aborted-transactions index.
        var transactions = PartitionTransactions()
        var waiters: [ObjectIdentifier: FetchWaiter] = [:]
        var isClosed = false
        /// Set when the backend reported the log failed (I/O error); the partition stays
        /// offline until the broker restarts and recovery runs.
        var failure: StorageError?

        /// Moves the high watermark over every leading batch that is appended and, if it asked
        /// for it, durable. Returns the produces to answer and whether the watermark moved.
        mutating func advanceVisibility() -> [(AppendSink, AppendOutcome)] {
            var completed: [(AppendSink, AppendOutcome)] = []
            var count = 0
            for batch in inFlight {
                guard batch.endOffset <= appendedEnd, !batch.needsSync || batch.endOffset <= durableEnd else { break }
                highWatermark = batch.endOffset
                if batch.maxTimestamp > maxTimestamp {
                    maxTimestamp = batch.maxTimestamp
                    offsetOfMaxTimestamp = batch.offsetOfMaxTimestamp
                }
                let outcome = AppendOutcome(
                    errorCode: .none,
                    baseOffset: batch.firstOffset,
                    logStartOffset: logStartOffset,
                    errorMessage: nil
                )
                completed.append((batch.sink, outcome))
                for duplicate in batch.duplicates { completed.append((duplicate, outcome)) }
                count += 1
            }
            if count > 0 {
                inFlight.removeFirst(count)
                transactions.markersVisible(below: highWatermark)
            }
            return completed
        }

        /// Decides what becomes of a validated batch (the idempotence and transaction checks of
        /// Kafka's `ProducerAppendInfo`) and, when it is to be appended, assigns its offsets and
        /// records it in flight. Called under `appendOrder`.
        mutating func admit(
            header: RecordBatchHeader,
            validated: ValidatedBatch,
            needsSync: Bool,
            sink: AppendSink,
            nowMs: Int64,
            owner: Partition
        ) -> Result<AssignedBatch, AppendFailure> {
            if let refusal = refusal(owner) { return .failure(refusal) }
            let producerId = header.producerId
            var previous: ProducerStateTable.Entry?
            let lastSequence = ProducerStateTable.lastSequence(
                first: header.baseSequence,
                lastOffsetDelta: header.lastOffsetDelta
            )
            if producerId >= 0 {
                switch producers.check(
                    producerId: producerId,
                    producerEpoch: header.producerEpoch,
                    firstSequence: header.baseSequence,
                    lastSequence: lastSequence
                ) {
                case .append(let before):
                    previous = before
                case .duplicate(let original):
                    if let inFlight = inFlight.firstIndex(where: { $0.firstOffset == original.firstOffset }) {
                        // The original is not visible yet: answer the retry with its outcome.
                        self.inFlight[inFlight].duplicates.append(sink)
                        return .failure(.init(waitingForOriginal: ()))
                    }
                    return .failure(.init(duplicateOf: original))
                case .outOfOrderSequence(let message):
                    return .failure(.init(.outOfOrderSequenceNumber, message))
                case .invalidProducerEpoch(let message):
                    return .failure(.init(.invalidProducerEpoch, message))
                }
                if !header.isTransactional, !transactions.isEmpty, transactions.hasOpenTransaction(producerId) {
                    return .failure(
                        .init(
                            .invalidTxnState,
                            "Expected transactional write from producer \(producerId) in partition \(owner.topicName)-\(owner.index)"
                        )
                    )
                }
            }
            let first = nextOffset
            let last = first + Int64(header.lastOffsetDelta)
            nextOffset = last + 1
            var beginsTransaction = false
            if producerId >= 0 {
                producers.record(
                    producerId: producerId,
                    producerEpoch: header.producerEpoch,
                    batch: .init(
                        firstSequence: header.baseSequence,
                        lastSequence: lastSequence,
                        firstOffset: first,
                        lastOffset: last
                    ),
                    nowMs: nowMs
                )
                if header.isTransactional {
                    beginsTransaction = transactions.noteTransactionalBatch(producerId: producerId, at: first)
                }
            }
            let id = nextBatchId
            nextBatchId += 1
            inFlight.append(
                InFlightBatch(
                    id: id,
                    firstOffset: first,
                    endOffset: last + 1,
                    needsSync: needsSync,
                    sink: sink,
                    producerId: producerId,
                    previousProducerEntry: previous,
                    maxTimestamp: validated.maxTimestamp,
                    offsetOfMaxTimestamp: first + Int64(validated.offsetDeltaOfMaxTimestamp),
                    beginsTransaction: beginsTransaction
                )
            )
            return .success(AssignedBatch(first: first, last: last, id: id))
        }

        /// Why nothing can be appended now: the partition is being deleted or is offline.
        func refusal(_ owner: Partition) -> AppendFailure? {
            if isClosed {
                return .init(.unknownTopicOrPartition, "partition \(owner.topicName)-\(owner.index) is being deleted")
            }
            if let failure {
                return .init(
                    .kafkaStorageError,
                    "partition \(owner.topicName)-\(owner.index) is offline: \(failure.message)"
                )
            }
            return nil
        }

        mutating func takeWaiters() -> [FetchWaiter] {
            guard !waiters.isEmpty else { return [] }
            defer { waiters.removeAll(keepingCapacity: true) }
            return Array(waiters.values)
        }

        /// Fails the batch `id` and every batch after it, rolls the log end back to its first
        /// offset and restores the producer state those batches changed (kstore.h: a failed
        /// append fails every later undelivered one and the log end returns).
        mutating func failFrom(batchId: UInt64, code: ErrorCode, message: String) -> [(AppendSink, AppendOutcome)] {
            guard let position = inFlight.firstIndex(where: { $0.id == batchId }) else { return [] }
            let failed = inFlight[position...]
            for batch in failed.reversed() where batch.producerId >= 0 {
                producers.restore(producerId: batch.producerId, to: batch.previousProducerEntry)
                if batch.beginsTransaction {
                    transactions.forgetBegin(producerId: batch.producerId, at: batch.firstOffset)
                }
                if batch.isMarker { transactions.forgetMarker(at: batch.firstOffset) }
            }
            let rollback = inFlight[position].firstOffset
            nextOffset = min(nextOffset, rollback)
            submittedEnd = min(submittedEnd, rollback)
            let failure = AppendOutcome.failure(code, message, logStartOffset: logStartOffset)
            let outcomes = failed.flatMap { batch in ([batch.sink] + batch.duplicates).map { ($0, failure) } }
            inFlight.removeSubrange(position...)
            return outcomes
        }
    }

    init(topicName: String, index: Int32, log: StorageLog, recovered: StorageLogState) {
        self.topicName = topicName
        self.index = index
        self.log = log
        self.isDurable = log.capabilities.contains(.durable)
        self.syncIsShared = log.capabilities.contains(.sharedSync)
        // Everything the backend recovered is on stable storage and becomes visible at once:
        // the recovered state is the partition's state, with no second source of truth.
        self.state = Mutex(
            State(
                logStartOffset: recovered.startOffset,
                nextOffset: recovered.endOffset,
                submittedEnd: recovered.endOffset,
                appendedEnd: recovered.endOffset,
                durableEnd: recovered.endOffset,
                highWatermark: recovered.endOffset,
                maxTimestamp: recovered.maxTimestamp,
                offsetOfMaxTimestamp: -1
            )
        )
    }

    var snapshot: Snapshot {
        state.withLock {
            Snapshot(
                logStartOffset: $0.logStartOffset,
                logEndOffset: $0.nextOffset,
                highWatermark: $0.highWatermark,
                maxTimestamp: $0.maxTimestamp,
                offsetOfMaxTimestamp: $0.offsetOfMaxTimestamp,
                isOnline: $0.failure == nil && !$0.isClosed,
                lastStableOffset: $0.transactions.lastStableOffset(highWatermark: $0.highWatermark)
            )
        }
    }

    /// Remembers where the maximum timestamp lies once it has been looked up in the log.
    func noteOffsetOfMaxTimestamp(_ offset: Int64, timestamp: Int64) {
        state.withLock {
            if $0.maxTimestamp == timestamp, $0.offsetOfMaxTimestamp < 0 { $0.offsetOfMaxTimestamp = offset }
        }
    }

    /// What `submit` did with a batch.
    enum Submission {
        /// The sink has its outcome, or will get it without anything more from the caller.
        case submitted
        /// Appended; on a shared-sync backend the caller's one sync for the request makes it
        /// visible (`submitSharedSync`).
        case awaitsSharedSync
    }

    /// Assigns offsets to a validated batch and submits it to the backend. Must be called in the
    /// order requests arrived on a connection (the transport calls the core in that order); `sink`
    /// gets the outcome exactly once, when the batch is visible: appended, and durable too when
    /// `acks` is -1 on a durable backend. It may get it before `submit` returns.
    ///
    /// A transactional batch that does not continue its producer's transaction in this partition
    /// is first checked with the transaction coordinator through `verifier` (KIP-890 part 1):
    /// under the append order, so no marker can slip between the check and the append.
    func submit(
        batch: ByteBuffer,
        validated: ValidatedBatch,
        acks: Int16,
        nowMs: Int64,
        sink: AppendSink,
        verifier: (any TransactionVerifier)? = nil
    ) -> Submission {
        let header = validated.header
        let needsSync = acks == -1 && isDurable
        let submitted: Bool = appendOrder.withLock { _ in
            if header.isTransactional, let refusal = verifyTransactionalBatch(header, verifier) {
                sink.deliver(refusal.outcome(logStartOffset: state.withLock { $0.logStartOffset }))
                return false
            }
            let decision = state.withLock { state in
                state.admit(
                    header: header,
                    validated: validated,
                    needsSync: needsSync,
                    sink: sink,
                    nowMs: nowMs,
                    owner: self
                )
            }
            guard case .success(let assigned) = decision else {
                if case .failure(let failure) = decision, !failure.isWaitingForOriginal {
                    let start = state.withLock { $0.logStartOffset }
                    sink.deliver(failure.outcome(logStartOffset: start))
                }
                return false
            }
            // A batch without timestamps is indexed at its append time, so time retention and
            // the time index still place it (kstore.h: -1 never expires by time).
            appendAssigned(
                batch: batch,
                header: header,
                byteCount: validated.byteCount,
                maxTimestamp: validated.maxTimestamp >= 0 ? validated.maxTimestamp : nowMs,
                assigned: assigned
            )
            return true
        }
        guard submitted, needsSync else { return .submitted }
        if syncIsShared { return .awaitsSharedSync }
        requestSync()
        return .submitted
    }

    /// Hands a batch `State.admit` accepted to the backend. Called under `appendOrder`.
    ///
    /// The producer's bytes are stored verbatim; only baseOffset and the partition leader epoch
    /// (bytes 0..<16, outside the CRC) are replaced, by gathering a new prefix with the rest of the
    /// batch instead of copying it.
    func appendAssigned(
        batch: ByteBuffer,
        header: RecordBatchHeader,
        byteCount: Int,
        maxTimestamp: Int64,
        assigned: AssignedBatch
    ) {
        let prefix = RecordBatchWriter.rewrittenPrefix(
            of: header,
            baseOffset: assigned.first,
            partitionLeaderEpoch: Broker.leaderEpoch
        )
        // The batch was validated whole: the slice exists.
        let rest = batch.getSlice(at: batch.readerIndex + 16, length: byteCount - 16)!
        log.submitAppend(
            firstOffset: assigned.first,
            lastOffset: assigned.last,
            maxTimestamp: maxTimestamp,
            parts: [prefix, rest],
            // Validated (or rebuilt by the rewriter): its CRC field covers bytes 21..<end as stored.
            checkedBatch: true
        ) { [self] result in
            appendCompleted(batchId: assigned.id, endOffset: assigned.last + 1, result: result)
        }
        state.withLock { state in
            // Unless the append already failed and rolled the log back, the backend now holds it.
            if state.nextOffset > assigned.last { state.submittedEnd = max(state.submittedEnd, assigned.last + 1) }
        }
    }

    /// The end a sync submitted now covers: every append the backend holds.
    var submittedEnd: Int64 { state.withLock { $0.submittedEnd } }

    /// One sync for the batches `submit` left waiting on several partitions of a shared-sync
    /// backend: `covers` pairs each partition with its `submittedEnd`, read after its appends.
    /// The sync is issued on the first partition's log; its completion makes every pair durable.
    static func submitSharedSync(covering covers: [(Partition, Int64)]) {
        guard let first = covers.first?.0 else { return }
        first.log.submitSync { result in
            for (partition, cover) in covers { partition.applySync(covering: cover, result: result) }
        }
    }

    struct AppendFailure: Error {
        var code: ErrorCode
        var message: String?
        var duplicate: ProducerStateTable.BatchMetadata?
        /// The pending append was attached to its in-flight original; nothing to complete now.
        var isWaitingForOriginal = false

        init(_ code: ErrorCode, _ message: String) {
            self.code = code
            self.message = message
        }

        init(waitingForOriginal: Void) {
            self.code = .none
            self.isWaitingForOriginal = true
        }

        init(duplicateOf original: ProducerStateTable.BatchMetadata) {
            self.code = .none
            self.duplicate = original
        }

        func outcome(logStartOffset: Int64) -> AppendOutcome {
            if let duplicate {
                // A retried batch: answer as the first time, with its original offset.
                return AppendOutcome(
                    errorCode: .none,
                    baseOffset: duplicate.firstOffset,
                    logStartOffset: logStartOffset,
                    errorMessage: nil
                )
            }
            return .failure(code, message, logStartOffset: logStartOffset)
        }
    }

    private func appendCompleted(batchId: UInt64, endOffset: Int64, result: Result<Void, StorageError>) {
        let (outcomes, waiters): ([(AppendSink, AppendOutcome)], [FetchWaiter]) = state.withLock { state in
            switch result {
            case .success:
                // Appends complete in order (kstore.h), so this covers every earlier batch.
                guard state.inFlight.contains(where: { $0.id == batchId }) else { return ([], []) }
                state.appendedEnd = max(state.appendedEnd, endOffset)
                let before = state.highWatermark
                let done = state.advanceVisibility()
                return (done, state.highWatermark != before ? state.takeWaiters() : [])
            case .failure(let error):
                if error.code == .io || error.code == .corrupt { state.failure = error }
                let done = state.failFrom(batchId: batchId, code: .kafkaStorageError, message: error.message)
                return (done, [])
            }
        }
        for (sink, outcome) in outcomes { sink.deliver(outcome) }
        for waiter in waiters { waiter.fire() }
    }

    /// Group commit within the partition: one sync at a time; syncs requested meanwhile are
    /// merged into the next one. (A shared-WAL backend merges syncs across partitions too.)
    func requestSync() {
        let cover: Int64? = state.withLock { state in
            if state.syncInFlight {
                state.syncWanted = true
                return nil
            }
            state.syncInFlight = true
            return state.submittedEnd
        }
        if let cover { issueSync(covering: cover) }
    }

    private func issueSync(covering cover: Int64, fromCompletion: Bool = false) {
        let completion: @Sendable (Result<Void, StorageError>) -> Void = { [self] result in
            syncCompleted(covering: cover, result: result)
        }
        if fromCompletion {
            log.submitSyncOffCompletionThread(completion: completion)
        } else {
            log.submitSync(completion: completion)
        }
    }

    /// The partition's own sync completed: apply it, then issue the sync requested meanwhile.
    private func syncCompleted(covering cover: Int64, result: Result<Void, StorageError>) {
        let next: Int64? = state.withLock { state in
            state.syncInFlight = false
            guard state.syncWanted, state.failure == nil, case .success = result else { return nil }
            state.syncWanted = false
            state.syncInFlight = true
            return state.submittedEnd
        }
        applySync(covering: cover, result: result)
        // A completion must not call back into the backend (kstore.h): the host takes the next
        // sync off this thread when it is the backend's.
        if let next { issueSync(covering: next, fromCompletion: true) }
    }

    /// A sync that covered this log up to `cover` completed: batches it made durable become visible.
    func applySync(covering cover: Int64, result: Result<Void, StorageError>) {
        let (outcomes, waiters): ([(AppendSink, AppendOutcome)], [FetchWaiter]) = state.withLock { state in
            var outcomes: [(AppendSink, AppendOutcome)] = []
            var waiters: [FetchWaiter] = []
            switch result {
            case .success:
                state.durableEnd = max(state.durableEnd, cover)
                let before = state.highWatermark
                outcomes = state.advanceVisibility()
                if state.highWatermark != before { waiters = state.takeWaiters() }
            case .failure(let error):
                // The covered entries are not known to be durable and the log is failed
                // (kstore.h, sync): every produce still waiting on durability gets a storage error.
                state.failure = error
                if let first = state.inFlight.first(where: { $0.needsSync }) {
                    outcomes = state.failFrom(batchId: first.id, code: .kafkaStorageError, message: error.message)
                }
            }
            return (outcomes, waiters)
        }
        for (sink, outcome) in outcomes { sink.deliver(outcome) }
        for waiter in waiters { waiter.fire() }
    }

    // MARK: Reading

    enum ReadOutcome: Sendable {
        /// The batches read, the partition's state, and (read_committed) the aborted transactions
        /// that overlap what was read.
        case records(ByteBuffer, Snapshot, abortedTransactions: [AbortedTransaction])
        case error(ErrorCode, Snapshot)
    }

    /// Reads whole batches from `offset` up to the high watermark (Fetch), or with
    /// `readCommitted` up to the last stable offset, together with the aborted transactions a
    /// read_committed consumer needs to drop what it reads of them.
    func read(
        from offset: Int64,
        maxBytes: Int,
        minimumOneBatch: Bool,
        allocator: ByteBufferAllocator,
        readCommitted: Bool = false
    ) async -> ReadOutcome {
        let snapshot = self.snapshot
        guard snapshot.isOnline else {
            return .error(state.withLock { $0.isClosed } ? .unknownTopicOrPartition : .kafkaStorageError, snapshot)
        }
        if offset < snapshot.logStartOffset || offset > snapshot.logEndOffset {
            return .error(.offsetOutOfRange, snapshot)
        }
        let limit = readCommitted ? snapshot.lastStableOffset : snapshot.highWatermark
        if offset >= limit || maxBytes <= 0 && !minimumOneBatch {
            return .records(allocator.buffer(capacity: 0), snapshot, abortedTransactions: [])
        }
        do {
            let result = try await log.read(
                from: offset,
                limit: limit,
                maxBytes: max(maxBytes, 0),
                minimumOneEntry: minimumOneBatch
            )
            guard readCommitted, result.entryCount > 0 else {
                return .records(result.bytes, snapshot, abortedTransactions: [])
            }
            let aborted = state.withLock {
                $0.transactions.abortedTransactions(from: offset, upTo: result.nextOffset)
            }
            return .records(result.bytes, snapshot, abortedTransactions: aborted)
        } catch let error as StorageError {
            // Retention may have moved the start between the check and the read.
            return .error(error.code == .outOfRange ? .offsetOutOfRange : .kafkaStorageError, self.snapshot)
        } catch {
            return .error(.kafkaStorageError, self.snapshot)
        }
    }

    // MARK: Long poll

    /// Registers `waiter` to fire when the high watermark moves past `knownHighWatermark`; fires
    /// it at once if it already has (so no wake-up is lost between a read and the wait).
    func addWaiter(_ waiter: FetchWaiter, knownHighWatermark: Int64) {
        let fireNow = state.withLock { state -> Bool in
            if state.highWatermark != knownHighWatermark || state.isClosed || state.failure != nil { return true }
            state.waiters[ObjectIdentifier(waiter)] = waiter
            return false
        }
        if fireNow { waiter.fire() }
    }

    func removeWaiter(_ waiter: FetchWaiter) {
        _ = state.withLock { $0.waiters.removeValue(forKey: ObjectIdentifier(waiter)) }
    }

    /// Wakes long polls (shutdown, deletion).
    func wakeWaiters() {
        let waiters = state.withLock { $0.takeWaiters() }
        for waiter in waiters { waiter.fire() }
    }

    // MARK: Lifecycle

    /// Stops accepting appends and reads, makes what was appended durable (a graceful shutdown
    /// loses nothing, whatever the acks), waits for in-flight appends and closes the log.
    func close() async {
        appendOrder.withLock { _ in state.withLock { $0.isClosed = true } }
        wakeWaiters()
        if isDurable, state.withLock({ $0.failure == nil }) {
            do {
                try await log.sync()
            } catch {
                // The log is failed; recovery at the next start decides what survived.
            }
        }
        await log.close()
    }

    // MARK: Durability and retention

    /// Syncs appends that no acks=all produce asked to sync (acks=1 data on a durable backend), so
    /// a power loss can lose at most one flush interval of them. Coalesces with running syncs.
    func flushIfDirty() {
        guard isDurable else { return }
        let dirty = state.withLock { $0.failure == nil && !$0.isClosed && $0.submittedEnd > $0.durableEnd }
        if dirty { requestSync() }
    }

    /// Applies the topic's retention: the backend deletes whole segments, and the log start
    /// offset (ListOffsets earliest, Fetch's out-of-range bound) follows.
    func enforceRetention(retentionMs: Int64, retentionBytes: Int64, nowMs: Int64) async throws {
        guard retentionMs >= 0 || retentionBytes >= 0 else { return }
        let cutoff = retentionMs >= 0 ? nowMs - retentionMs : -1
        let newStart = try await log.enforceRetention(retainBytes: retentionBytes, retainAfterTimestamp: cutoff)
        state.withLock { state in
            if newStart > state.logStartOffset { state.logStartOffset = min(newStart, state.highWatermark) }
            state.transactions.pruneAborted(below: state.logStartOffset)
        }
    }

    /// DeleteRecords: moves the log start offset to `offset` (which must not exceed the high
    /// watermark) through the backend's delete_before, durably on a durable backend, and returns
    /// the new log start offset (the low watermark). Reads below it answer OFFSET_OUT_OF_RANGE.
    func deleteRecords(before offset: Int64) async throws -> Int64 {
        try await log.deleteBefore(offset)
        // kstore.h: the new start is durable no later than the next completed sync.
        if isDurable { try await log.sync() }
        return state.withLock { state in
            state.logStartOffset = max(state.logStartOffset, min(offset, state.highWatermark))
            // Aborted transactions wholly below the new start are no longer needed by any reader.
            state.transactions.pruneAborted(below: state.logStartOffset)
            return state.logStartOffset
        }
    }

    /// Rebuilds idempotent-producer state from the batches at the end of the log, so a producer
    /// retrying a batch it sent before a crash is still answered with the original offset
    /// (Kafka keeps producer snapshots for this; Fjord re-reads the tail). Producers whose last
    /// batch lies further back than `windowOffsets` are treated as new ones, as Kafka treats
    /// producers whose state expired.
    func recoverProducerState(windowOffsets: Int64, nowMs: Int64) async throws {
        let snapshot = self.snapshot
        var offset = max(snapshot.logStartOffset, snapshot.logEndOffset - windowOffsets)
        var recovered = ProducerStateTable()
        while offset < snapshot.highWatermark {
            let chunk = try await log.read(
                from: offset,
                limit: snapshot.highWatermark,
                maxBytes: 1 << 20,
                minimumOneEntry: true
            )
            guard chunk.entryCount > 0 else { break }
            for batch in RecordBatchReader.batches(in: chunk.bytes) {
                guard let header = try? RecordBatchHeader(parsing: batch), header.producerId >= 0 else { continue }
                if header.isControl {
                    // A marker carries no sequence; it may bump the producer's epoch.
                    recovered.noteMarker(
                        producerId: header.producerId,
                        producerEpoch: header.producerEpoch,
                        nowMs: nowMs
                    )
                    continue
                }
                recovered.record(
                    producerId: header.producerId,
                    producerEpoch: header.producerEpoch,
                    batch: .init(
                        firstSequence: header.baseSequence,
                        lastSequence: ProducerStateTable.lastSequence(
                            first: header.baseSequence,
                            lastOffsetDelta: header.lastOffsetDelta
                        ),
                        firstOffset: header.baseOffset,
                        lastOffset: header.baseOffset + Int64(header.lastOffsetDelta)
                    ),
                    nowMs: nowMs
                )
            }
            offset = chunk.nextOffset
        }
        state.withLock { $0.producers = recovered }
    }

    /// Forgets idle idempotent producers.
    func expireProducers(olderThan cutoffMs: Int64) {
        state.withLock { $0.producers.expire(olderThan: cutoffMs) }
    }
}
