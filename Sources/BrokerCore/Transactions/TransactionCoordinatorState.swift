import KafkaMessages

/// Settings of the transaction coordinator (Kafka's `transaction.*` broker configs).
struct TransactionSettings: Sendable, Equatable {
    /// `transaction.max.timeout.ms`: a producer asking for a longer timeout is refused with
    /// INVALID_TRANSACTION_TIMEOUT.
    var maxTimeoutMs: Int32 = 900_000
    /// `transactional.id.expiration.ms`: ids with no transaction under way and no activity for
    /// this long are forgotten.
    var transactionalIdExpirationMs: Int64 = 604_800_000
}

/// What the coordinator does with a request, decided under its lock.
enum TransactionDecision: Sendable, Equatable {
    /// Answer at once with this error (`.none` for an idempotent repeat).
    case answer(ErrorCode)
    /// Write this new metadata to the transaction log; once it is durable, `completeWrite` applies
    /// it and the request is answered. Until then the id has a transition pending and other
    /// requests for it are answered CONCURRENT_TRANSACTIONS.
    case write(TransactionMetadata)
}

/// What InitProducerId does (Kafka's `prepareInitProducerIdTransit`).
enum InitProducerIdDecision: Sendable, Equatable {
    case answer(ErrorCode)
    /// A producer id must be allocated first (a new transactional id, or an exhausted epoch):
    /// call again with it.
    case needsProducerId
    /// Write this metadata and answer with its producer id and epoch once it is durable.
    case write(TransactionMetadata)
    /// The id has a transaction in progress: write this fenced abort (epoch bumped), write its
    /// markers, and answer CONCURRENT_TRANSACTIONS so the client retries, by then against a
    /// completed transaction whose epoch it bumps once more.
    case fence(TransactionMetadata)
}

/// What the I/O shell must do after a transition became durable.
enum TransactionAction: Sendable, Equatable {
    /// The transaction is decided (PrepareCommit/PrepareAbort): write its markers into every
    /// partition and group, then call `markersWritten`.
    case writeMarkers(TransactionMetadata)
}

/// Every transactional id this coordinator owns, as one value: the state machine of Kafka's
/// `TransactionCoordinator` and `TransactionMetadata` (Empty → Ongoing → PrepareCommit /
/// PrepareAbort → CompleteCommit / CompleteAbort; epoch bumps; fencing; timeouts), with time
/// passed in (`nowMs`), so tests drive it with a manual clock.
///
/// A transition is prepared (recorded as pending, answered with `.write`), made durable by the
/// shell, then applied by `completeWrite` — so what the coordinator answers from is always what
/// the log holds.
struct TransactionCoordinatorState: Sendable {
    let settings: TransactionSettings
    private(set) var transactions: [String: TransactionMetadata] = [:]
    /// The transition being written for an id.
    private(set) var pending: [String: TransactionMetadata] = [:]
    /// Ids whose epoch fence failed to be written: the next fence reuses the bumped epoch
    /// (Kafka's `hasFailedEpochFence`; that epoch was never given to a client).
    private var failedEpochFences: Set<String> = []

    init(settings: TransactionSettings) {
        self.settings = settings
    }

    func metadata(_ transactionalId: String) -> TransactionMetadata? { transactions[transactionalId] }
    func isPending(_ transactionalId: String) -> Bool { pending[transactionalId] != nil }
    var hasPendingWrites: Bool { !pending.isEmpty }

    /// Kafka's `validateTransactionTimeoutMs`.
    func isValidTimeout(_ timeoutMs: Int32) -> Bool { timeoutMs > 0 && timeoutMs <= settings.maxTimeoutMs }

    // MARK: InitProducerId

    /// InitProducerId with a transactional id (validated non-empty, timeout checked by the caller).
    /// `newProducerId` is a freshly allocated id, when `.needsProducerId` asked for one.
    mutating func initProducerId(
        transactionalId: String,
        timeoutMs: Int32,
        expected: ProducerIdAndEpoch?,
        newProducerId: Int64?,
        nowMs: Int64
    ) -> InitProducerIdDecision {
        guard let current = transactions[transactionalId] else {
            guard let newProducerId else { return .needsProducerId }
            transactions[transactionalId] = .new(
                transactionalId: transactionalId,
                producerId: newProducerId,
                timeoutMs: timeoutMs,
                nowMs: nowMs
            )
            return initProducerId(
                transactionalId: transactionalId,
                timeoutMs: timeoutMs,
                expected: expected,
                newProducerId: nil,
                nowMs: nowMs
            )
        }
        if pending[transactionalId] != nil { return .answer(.concurrentTransactions) }
        if let expected, !Self.isValidProducerId(expected, for: current) { return .answer(.producerFenced) }
        switch current.phase {
        case .prepareCommit, .prepareAbort:
            return .answer(.concurrentTransactions)
        case .ongoing:
            return .fence(prepare(fenceOf: current, nowMs: nowMs))
        case .empty, .completeCommit, .completeAbort, .dead:
            if TransactionMetadata.isEpochExhausted(current.producerEpoch),
                expected.map({ $0.producerEpoch == current.producerEpoch }) ?? true
            {
                guard let newProducerId else { return .needsProducerId }
                var rotated = current.moved(to: .empty, nowMs: nowMs)
                rotated.producerId = newProducerId
                rotated.producerEpoch = 0
                rotated.lastProducerEpoch = expected == nil ? -1 : current.producerEpoch
                return .write(prepare(cleared(rotated, timeoutMs: timeoutMs)))
            }
            guard let epochs = Self.bumpedEpochs(of: current, expectedEpoch: expected?.producerEpoch) else {
                return .answer(.producerFenced)
            }
            var bumped = current.moved(to: .empty, nowMs: nowMs)
            bumped.producerEpoch = epochs.next
            bumped.lastProducerEpoch = epochs.last
            return .write(prepare(cleared(bumped, timeoutMs: timeoutMs)))
        }
    }

    /// Kafka's `isValidProducerId`: the id was just created, or the client names the current
    /// producer id, or the previous one with an exhausted epoch (a retry after a rotation).
    private static func isValidProducerId(_ expected: ProducerIdAndEpoch, for current: TransactionMetadata) -> Bool {
        current.producerEpoch == -1 || expected.producerId == current.producerId
            || (expected.producerId == current.lastProducerId
                && TransactionMetadata.isEpochExhausted(expected.producerEpoch))
    }

    /// Kafka's `prepareIncrementProducerEpoch`: the next epoch and the last epoch to remember, or
    /// nil when the client's epoch is neither the current nor the last one (a fenced producer).
    private static func bumpedEpochs(
        of current: TransactionMetadata,
        expectedEpoch: Int16?
    ) -> (next: Int16, last: Int16)? {
        let bumped = current.producerEpoch &+ 1
        guard let expectedEpoch else { return (bumped, -1) }
        if current.producerEpoch == -1 || expectedEpoch == current.producerEpoch {
            return (bumped, current.producerEpoch)
        }
        if expectedEpoch == current.lastProducerEpoch {
            // A retry of a bump whose answer the client never received: the same answer again.
            return (current.producerEpoch, current.lastProducerEpoch)
        }
        return nil
    }

    private func cleared(_ metadata: TransactionMetadata, timeoutMs: Int32) -> TransactionMetadata {
        var next = metadata
        next.timeoutMs = timeoutMs
        next.partitions = [:]
        next.groups = []
        next.startTimestampMs = -1
        return next
    }

    /// The abort of a transaction whose producer is fenced (a new InitProducerId, or the timeout):
    /// the epoch is bumped so the old producer's requests and batches are refused from now on.
    private mutating func prepare(fenceOf current: TransactionMetadata, nowMs: Int64) -> TransactionMetadata {
        var fenced = current.moved(to: .prepareAbort, nowMs: nowMs)
        if !failedEpochFences.contains(current.transactionalId), current.producerEpoch < Int16.max {
            fenced.producerEpoch = current.producerEpoch + 1
        }
        fenced.lastProducerEpoch = -1
        return prepare(fenced)
    }

    private mutating func prepare(_ target: TransactionMetadata) -> TransactionMetadata {
        precondition(pending[target.transactionalId] == nil, "two transitions of \(target.transactionalId) at once")
        pending[target.transactionalId] = target
        return target
    }

    // MARK: AddPartitionsToTxn, AddOffsetsToTxn

    /// Adds partitions (each with the partition's current log end offset) and groups to the
    /// producer's transaction, starting one if there is none (Kafka's `handleAddPartitionsToTransaction`).
    mutating func addToTransaction(
        transactionalId: String,
        producer: ProducerIdAndEpoch,
        partitions: [TopicPartition: Int64],
        groups: Set<String> = [],
        nowMs: Int64
    ) -> TransactionDecision {
        let current: TransactionMetadata
        switch check(transactionalId, producer, exactEpoch: true) {
        case .failure(let error): return .answer(error)
        case .success(let found): current = found
        }
        if current.phase.isPreparing { return .answer(.concurrentTransactions) }
        let known = partitions.keys.allSatisfy { current.partitions[$0] != nil } && groups.isSubset(of: current.groups)
        if current.phase == .ongoing && known { return .answer(.none) }
        var next = current.moved(to: .ongoing, nowMs: nowMs)
        if current.phase != .ongoing {
            next.startTimestampMs = nowMs
            next.partitions = [:]
            next.groups = []
        }
        // A partition already in the transaction keeps its earlier (smaller) log end offset.
        next.partitions.merge(partitions) { earlier, _ in earlier }
        next.groups.formUnion(groups)
        return .write(prepare(next))
    }

    /// The checks every request of a producer starts with: the id exists, names this producer id
    /// with the current epoch (`exactEpoch`; otherwise not older), and no transition is pending.
    private func check(
        _ transactionalId: String,
        _ producer: ProducerIdAndEpoch,
        exactEpoch: Bool
    ) -> Checked {
        guard let current = transactions[transactionalId], current.producerId == producer.producerId else {
            return .failure(.invalidProducerIdMapping)
        }
        if exactEpoch ? producer.producerEpoch != current.producerEpoch : producer.producerEpoch < current.producerEpoch
        {
            return .failure(.producerFenced)
        }
        if pending[transactionalId] != nil { return .failure(.concurrentTransactions) }
        return .success(current)
    }

    private enum Checked {
        case success(TransactionMetadata)
        case failure(ErrorCode)
    }

    // MARK: EndTxn

    /// EndTxn (Kafka's `endTransaction` from a client): an Ongoing transaction is prepared to
    /// commit or abort; repeats of a decision already taken are answered as Kafka does.
    mutating func endTransaction(
        transactionalId: String,
        producer: ProducerIdAndEpoch,
        commit: Bool,
        nowMs: Int64
    ) -> TransactionDecision {
        let current: TransactionMetadata
        switch check(transactionalId, producer, exactEpoch: true) {
        case .failure(let error): return .answer(error)
        case .success(let found): current = found
        }
        switch current.phase {
        case .ongoing:
            return .write(prepare(current.moved(to: commit ? .prepareCommit : .prepareAbort, nowMs: nowMs)))
        case .completeCommit:
            return .answer(commit ? .none : .invalidTxnState)
        case .completeAbort:
            return .answer(commit ? .invalidTxnState : .none)
        case .prepareCommit:
            return .answer(commit ? .concurrentTransactions : .invalidTxnState)
        case .prepareAbort:
            return .answer(commit ? .invalidTxnState : .concurrentTransactions)
        case .empty, .dead:
            return .answer(.invalidTxnState)
        }
    }

    // MARK: Writes and markers

    /// The log write of a prepared transition finished. On success the transition takes effect
    /// and, for a decided transaction, its markers are due; on failure nothing changed.
    mutating func completeWrite(_ target: TransactionMetadata, succeeded: Bool) -> [TransactionAction] {
        let id = target.transactionalId
        guard pending[id] == target else { return [] }
        pending.removeValue(forKey: id)
        guard succeeded else {
            if target.phase == .prepareAbort, let current = transactions[id],
                target.producerEpoch > current.producerEpoch
            {
                failedEpochFences.insert(id)
            }
            return []
        }
        if target.phase == .dead {
            transactions.removeValue(forKey: id)
            return []
        }
        if target.phase.isPreparing || target.phase == .completeCommit || target.phase == .completeAbort {
            failedEpochFences.remove(id)
        }
        transactions[id] = target
        return target.phase.isPreparing ? [.writeMarkers(target)] : []
    }

    /// Every marker of a decided transaction is durable: prepare its completion (Kafka's
    /// `prepareComplete`), which the shell writes like any transition. nil if the id moved on.
    mutating func markersWritten(transactionalId: String, producerEpoch: Int16, nowMs: Int64) -> TransactionMetadata? {
        guard let current = transactions[transactionalId], current.phase.isPreparing,
            current.producerEpoch == producerEpoch, pending[transactionalId] == nil
        else { return nil }
        var complete = current.moved(
            to: current.phase == .prepareCommit ? .completeCommit : .completeAbort,
            nowMs: nowMs
        )
        complete.partitions = [:]
        complete.groups = []
        return prepare(complete)
    }

    // MARK: Timeouts and expiration

    /// The earliest moment an Ongoing transaction times out.
    var nextDeadline: Int64? {
        transactions.values.compactMap { pending[$0.transactionalId] == nil ? $0.timeoutDeadlineMs : nil }.min()
    }

    /// Fenced aborts of every Ongoing transaction past its timeout (Kafka's
    /// `abortTimedOutTransactions`): the epoch is bumped, so the producer learns it was aborted.
    mutating func abortTimedOut(nowMs: Int64) -> [TransactionMetadata] {
        let due = transactions.values.filter { metadata in
            guard let deadline = metadata.timeoutDeadlineMs else { return false }
            return deadline <= nowMs && pending[metadata.transactionalId] == nil
        }
        return due.sorted { $0.transactionalId < $1.transactionalId }.map { prepare(fenceOf: $0, nowMs: nowMs) }
    }

    /// Tombstones for ids idle longer than `transactional.id.expiration.ms` with no transaction
    /// under way (Kafka's `removeExpiredTransactionalIds`).
    mutating func expireTransactionalIds(nowMs: Int64) -> [TransactionMetadata] {
        let cutoff = nowMs - settings.transactionalIdExpirationMs
        let expired = transactions.values.filter {
            $0.phase.allowsExpiration && $0.lastUpdateTimestampMs <= cutoff && pending[$0.transactionalId] == nil
        }
        return expired.sorted { $0.transactionalId < $1.transactionalId }.map {
            prepare($0.moved(to: .dead, nowMs: nowMs))
        }
    }

    // MARK: Verification (produce, TxnOffsetCommit)

    /// Whether a producer's transaction includes `partition` (Kafka's
    /// `handleVerifyPartitionsInTransaction`; the broker then maps the errors for Produce).
    func verify(transactionalId: String, producer: ProducerIdAndEpoch, partition: TopicPartition) -> ErrorCode {
        verify(transactionalId, producer) { $0.partitions[partition] != nil }
    }

    /// Whether a producer's transaction includes the offsets of `group` (AddOffsetsToTxn was done).
    func verify(transactionalId: String, producer: ProducerIdAndEpoch, group: String) -> ErrorCode {
        verify(transactionalId, producer) { $0.groups.contains(group) }
    }

    private func verify(
        _ transactionalId: String,
        _ producer: ProducerIdAndEpoch,
        includes: (TransactionMetadata) -> Bool
    ) -> ErrorCode {
        guard let current = transactions[transactionalId], current.producerId == producer.producerId else {
            return .invalidProducerIdMapping
        }
        if current.producerEpoch != producer.producerEpoch { return .producerFenced }
        if current.phase.isPreparing { return .concurrentTransactions }
        return current.phase == .ongoing && includes(current) ? .none : .transactionAbortable
    }

    // MARK: Replay

    /// Replay of the transaction log: the last record of an id is its state.
    mutating func restore(_ metadata: TransactionMetadata) {
        transactions[metadata.transactionalId] = metadata
    }

    mutating func remove(transactionalId: String) {
        transactions.removeValue(forKey: transactionalId)
    }

    /// Transactions under way (Ongoing, PrepareCommit, PrepareAbort), by id.
    var undecided: [TransactionMetadata] {
        transactions.values.filter { $0.phase.isUndecided }.sorted { $0.transactionalId < $1.transactionalId }
    }
}
