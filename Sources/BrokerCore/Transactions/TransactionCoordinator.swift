import KafkaMessages
import Logging
import StorageHost
import Synchronization

/// The transaction coordinator's I/O shell around `TransactionCoordinatorState` (Kafka's
/// `TransactionCoordinator` + `TransactionStateManager` + the marker channel, for one broker):
/// one lock over the state, the transaction state log (`__fjord_transaction_state`) every
/// transition is made durable in before it takes effect, the writing of markers into partitions
/// and groups (`TransactionCoordinator+Markers.swift`), a timer that aborts timed-out
/// transactions, and recovery at startup (`TransactionCoordinator+Recovery.swift`).
final class TransactionCoordinator: Sendable {
    struct Locked {
        var machine: TransactionCoordinatorState
        var isClosed = false
        var timer: (deadline: Int64, task: Task<Void, Never>)?
        /// The task writing the markers of each decided transaction.
        var markerTasks: [String: Task<Void, Never>] = [:]
    }

    let locked: Mutex<Locked>
    let writer: InternalLogWriter
    let index: AbortedTransactionIndexLog
    let registry: TopicRegistry
    let groups: GroupCoordinator
    let metadata: MetadataManager
    let storage: StorageEngine
    /// Wall-clock milliseconds: transaction timestamps are persisted and outlive the process.
    let clock: @Sendable () -> Int64
    let logger: Logger

    init(
        machine: TransactionCoordinatorState,
        writer: InternalLogWriter,
        index: AbortedTransactionIndexLog,
        registry: TopicRegistry,
        groups: GroupCoordinator,
        metadata: MetadataManager,
        storage: StorageEngine,
        clock: @escaping @Sendable () -> Int64,
        logger: Logger
    ) {
        self.locked = Mutex(Locked(machine: machine))
        self.writer = writer
        self.index = index
        self.registry = registry
        self.groups = groups
        self.metadata = metadata
        self.storage = storage
        self.clock = clock
        self.logger = logger
    }

    var isClosed: Bool { locked.withLock { $0.isClosed } }
    var settings: TransactionSettings { locked.withLock { $0.machine.settings } }

    // MARK: Requests

    /// InitProducerId with a transactional id: the producer id and epoch to use, or an error.
    func initProducerId(
        transactionalId: String,
        timeoutMs: Int32,
        expected: ProducerIdAndEpoch?
    ) async
        -> (error: ErrorCode, producer: ProducerIdAndEpoch?)
    {
        var fresh: Int64?
        // A new transactional id (or an exhausted epoch) needs a producer id first; the second
        // round uses it.
        for _ in 0..<2 {
            let decision = locked.withLock { state -> InitProducerIdDecision in
                guard !state.isClosed else { return .answer(.coordinatorNotAvailable) }
                guard state.machine.isValidTimeout(timeoutMs) else { return .answer(.invalidTransactionTimeout) }
                return state.machine.initProducerId(
                    transactionalId: transactionalId,
                    timeoutMs: timeoutMs,
                    expected: expected,
                    newProducerId: fresh,
                    nowMs: clock()
                )
            }
            switch decision {
            case .answer(let error):
                return (error, nil)
            case .needsProducerId:
                do {
                    fresh = try await metadata.allocateProducerId()
                } catch {
                    logger.error("allocating a producer id failed", metadata: ["error": "\(error)"])
                    return (.coordinatorNotAvailable, nil)
                }
            case .write(let target):
                let error = await write(target)
                if error == .none {
                    logger.info(
                        "initialized transactional id",
                        metadata: [
                            "transactional-id": "\(transactionalId)", "producer-id": "\(target.producerId)",
                            "epoch": "\(target.producerEpoch)",
                        ]
                    )
                }
                return (
                    error,
                    error == .none
                        ? ProducerIdAndEpoch(producerId: target.producerId, producerEpoch: target.producerEpoch) : nil
                )
            case .fence(let target):
                logger.info(
                    "fencing the producer of an ongoing transaction",
                    metadata: ["transactional-id": "\(transactionalId)"]
                )
                let error = await write(target)
                // The client retries once the fenced transaction is aborted.
                return (error == .none ? .concurrentTransactions : error, nil)
            }
        }
        return (.coordinatorNotAvailable, nil)
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: one error for all of them, as Kafka answers.
    func addToTransaction(
        transactionalId: String,
        producer: ProducerIdAndEpoch,
        partitions: [TopicPartition: Int64],
        groups: Set<String> = []
    ) async -> ErrorCode {
        let decision = locked.withLock { state -> TransactionDecision in
            guard !state.isClosed else { return .answer(.coordinatorNotAvailable) }
            return state.machine.addToTransaction(
                transactionalId: transactionalId,
                producer: producer,
                partitions: partitions,
                groups: groups,
                nowMs: clock()
            )
        }
        return await carryOut(decision)
    }

    /// How long EndTxn waits for the markers after the decision is durable (see `endTransaction`).
    static let endTransactionMarkerWait: Duration = .seconds(2)

    /// EndTxn: decided once PrepareCommit/PrepareAbort is durable — the answer could go out then,
    /// as Kafka's does, with the markers following in the background and the transaction's next
    /// requests answered CONCURRENT_TRANSACTIONS until they are written. On one broker the markers
    /// are local and take a few milliseconds, so the answer waits for them (at most
    /// `endTransactionMarkerWait`): the producer's next AddPartitionsToTxn then succeeds at once
    /// instead of after a retry (librdkafka backs off 20 ms), and its committed offsets are
    /// visible when the commit returns. What the answer means is unchanged: the decision is durable.
    func endTransaction(transactionalId: String, producer: ProducerIdAndEpoch, commit: Bool) async -> ErrorCode {
        let decision = locked.withLock { state -> TransactionDecision in
            guard !state.isClosed else { return .answer(.coordinatorNotAvailable) }
            return state.machine.endTransaction(
                transactionalId: transactionalId,
                producer: producer,
                commit: commit,
                nowMs: clock()
            )
        }
        let error = await carryOut(decision)
        if case .write = decision, error == .none {
            await waitForMarkers(transactionalId: transactionalId, atMost: Self.endTransactionMarkerWait)
        }
        return error
    }

    private func carryOut(_ decision: TransactionDecision) async -> ErrorCode {
        switch decision {
        case .answer(let error): return error
        case .write(let target): return await write(target)
        }
    }

    /// Whether the producer's transaction includes a partition (produce verification).
    func verify(transactionalId: String, producer: ProducerIdAndEpoch, partition: TopicPartition) -> ErrorCode {
        locked.withLock {
            $0.machine.verify(transactionalId: transactionalId, producer: producer, partition: partition)
        }
    }

    /// Whether the producer's transaction includes a group's offsets (TxnOffsetCommit).
    func verify(transactionalId: String, producer: ProducerIdAndEpoch, group: String) -> ErrorCode {
        locked.withLock { $0.machine.verify(transactionalId: transactionalId, producer: producer, group: group) }
    }

    func describe(transactionalId: String) -> TransactionMetadata? {
        locked.withLock { $0.machine.metadata(transactionalId) }
    }

    /// Every transactional id, by id.
    var all: [TransactionMetadata] {
        locked.withLock { $0.machine.transactions.values.sorted { $0.transactionalId < $1.transactionalId } }
    }

    // MARK: The transaction log

    /// Writes a prepared transition and applies it once durable (or drops it when the write
    /// fails); starts the markers of a transaction it decided. The error is what the client gets.
    func write(_ target: TransactionMetadata) async -> ErrorCode {
        let record: TransactionLogRecord =
            target.phase == .dead ? .tombstone(transactionalId: target.transactionalId) : .metadata(target)
        let pending = locked.withLock { state -> PendingOffsetsWrite? in
            guard !state.isClosed else {
                _ = state.machine.completeWrite(target, succeeded: false)
                return nil
            }
            return writer.submit([record.encode()])
        }
        guard let pending else { return .notCoordinator }
        let succeeded: Bool
        if case .success = await writer.finish(pending) { succeeded = true } else { succeeded = false }
        let actions = locked.withLock { state in
            let actions = state.machine.completeWrite(target, succeeded: succeeded)
            armTimer(&state)
            return actions
        }
        for case .writeMarkers(let decided) in actions { startMarkers(decided) }
        maybeCompact()
        // Kafka answers NOT_COORDINATOR when the transaction log cannot be written: clients look
        // the coordinator up again and retry.
        return succeeded ? .none : .notCoordinator
    }

    /// Rewrites the live state of every id and deletes the log before it, once the log is long
    /// enough. Only while no transition is pending: a pending record written before the snapshot
    /// would otherwise be superseded by the older state the snapshot holds.
    func maybeCompact() {
        let compaction = locked.withLock { state -> (pending: PendingOffsetsWrite, start: Int64)? in
            guard !state.isClosed, !state.machine.hasPendingWrites,
                writer.isCompactionDue(liveCount: state.machine.transactions.count)
            else { return nil }
            let live = state.machine.transactions.keys.sorted().compactMap { id in
                state.machine.transactions[id].map { TransactionLogRecord.metadata($0).encode() }
            }
            return writer.beginCompaction(live: live)
        }
        guard let compaction else { return }
        Task { await self.writer.finishCompaction(compaction) }
    }

    // MARK: Timeouts and expiration

    /// Keeps a timer armed at the earliest transaction timeout (moved earlier only; a timer that
    /// fires early finds nothing due and re-arms).
    func armTimer(_ state: inout Locked) {
        guard !state.isClosed, let deadline = state.machine.nextDeadline else { return }
        if let armed = state.timer, armed.deadline <= deadline { return }
        state.timer?.task.cancel()
        let delayMs = max(0, deadline - clock())
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

    /// Aborts every transaction past its timeout, with an epoch bump that fences its producer
    /// (Kafka's `abortTimedOutTransactions`). Tests with a manual clock call this directly and may
    /// wait for the returned writes.
    @discardableResult
    func tick(firedFor deadline: Int64? = nil) -> [Task<Void, Never>] {
        let due = locked.withLock { state -> [TransactionMetadata] in
            if let deadline, state.timer?.deadline == deadline { state.timer = nil }
            guard !state.isClosed else { return [] }
            let due = state.machine.abortTimedOut(nowMs: clock())
            armTimer(&state)
            return due
        }
        return due.map { target in
            logger.info(
                "aborting a transaction that exceeded its timeout",
                metadata: ["transactional-id": "\(target.transactionalId)", "timeout-ms": "\(target.timeoutMs)"]
            )
            return Task { _ = await self.write(target) }
        }
    }

    /// Waits until the markers of the id's decided transaction (if any are being written) are
    /// done, or at most `limit`.
    func waitForMarkers(transactionalId: String, atMost limit: Duration? = nil) async {
        guard let task = locked.withLock({ $0.markerTasks[transactionalId] }) else { return }
        guard let limit else {
            await task.value
            return
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await task.value }
            group.addTask { try? await Task.sleep(for: limit) }
            await group.next()
            group.cancelAll()
        }
    }

    /// Forgets transactional ids idle for longer than `transactional.id.expiration.ms`.
    func expireTransactionalIds() async {
        let expired = locked.withLock { state in
            state.isClosed ? [] : state.machine.expireTransactionalIds(nowMs: clock())
        }
        for target in expired {
            if await write(target) == .none {
                logger.info("expired transactional id", metadata: ["transactional-id": "\(target.transactionalId)"])
            }
        }
    }

    // MARK: Shutdown

    /// Stops the timer and the marker writers (a transaction whose markers are not all written
    /// stays PrepareCommit/PrepareAbort in the log and is finished at the next start), then closes
    /// the logs. Call before the partitions are closed.
    func close() async {
        let tasks = locked.withLock { state -> [Task<Void, Never>] in
            state.isClosed = true
            state.timer?.task.cancel()
            state.timer = nil
            return Array(state.markerTasks.values)
        }
        for task in tasks {
            task.cancel()
            await task.value
        }
        await writer.close()
        await index.close()
    }
}

/// Produce's check of a transactional batch, with Kafka 3.8's translation of the coordinator's
/// answers into errors producers handle (ReplicaManager's `postVerificationCallback` and
/// AddPartitionsToTxnManager, which answers TRANSACTION_ABORTABLE as such from Produce v11 on, as
/// INVALID_TXN_STATE before).
struct ProduceTransactionVerifier: TransactionVerifier {
    let coordinator: TransactionCoordinator
    let transactionalId: String
    let answersTransactionAbortable: Bool

    func verify(producerId: Int64, producerEpoch: Int16, topic: String, partition: Int32) -> (ErrorCode, String)? {
        let error = coordinator.verify(
            transactionalId: transactionalId,
            producer: ProducerIdAndEpoch(producerId: producerId, producerEpoch: producerEpoch),
            partition: TopicPartition(topic: topic, partition: partition)
        )
        switch error {
        case .none:
            return nil
        case .producerFenced:
            return (.invalidProducerEpoch, "producer \(producerId) epoch \(producerEpoch) is fenced")
        case .transactionAbortable where answersTransactionAbortable:
            return (.transactionAbortable, "Partition was not added to the transaction")
        case .transactionAbortable:
            return (.invalidTxnState, "Partition was not added to the transaction")
        case .concurrentTransactions, .coordinatorNotAvailable, .notCoordinator:
            // Retriable for every client, without a metadata refresh (Kafka's choice).
            return (
                .notEnoughReplicas,
                "Unable to verify the partition has been added to the transaction. Underlying error: \(error)"
            )
        default:
            return (error, "transaction verification failed: \(error)")
        }
    }
}
