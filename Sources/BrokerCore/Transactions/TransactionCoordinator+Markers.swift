import KafkaMessages
import KafkaRecords
import Synchronization

/// Gathers the outcomes of one round of marker appends, one slot per partition, and hands them to
/// the waiting marker writer when the last one arrives.
final class MarkerOutcomes: AppendOutcomeCollector {
    private struct State {
        var outcomes: [AppendOutcome?]
        var remaining: Int
        var continuation: CheckedContinuation<[AppendOutcome], Never>?
    }
    private let state: Mutex<State>

    init(count: Int) {
        self.state = Mutex(State(outcomes: Array(repeating: nil, count: count), remaining: count))
    }

    func deliver(_ outcome: AppendOutcome, slot: Int) {
        let ready = state.withLock { state -> (CheckedContinuation<[AppendOutcome], Never>, [AppendOutcome])? in
            precondition(state.outcomes[slot] == nil, "two outcomes for marker slot \(slot)")
            state.outcomes[slot] = outcome
            state.remaining -= 1
            guard state.remaining == 0, let continuation = state.continuation else { return nil }
            state.continuation = nil
            return (continuation, state.outcomes.map { $0! })  // Safe: every slot is filled.
        }
        if let (continuation, outcomes) = ready { continuation.resume(returning: outcomes) }
    }

    func wait() async -> [AppendOutcome] {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> [AppendOutcome]? in
                if state.remaining == 0 { return state.outcomes.map { $0! } }  // Safe: every slot is filled.
                state.continuation = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }
}

/// Writing a decided transaction's markers (Kafka's `TransactionMarkerChannelManager` and the
/// WriteTxnMarkers it sends, done in-process): a COMMIT or ABORT control batch into every partition
/// of the transaction and the end of its offsets into every group, all durable; for an abort the
/// aborted-transaction index entries, durable; only then the CompleteCommit/CompleteAbort record.
/// A kill -9 anywhere in between leaves the transaction PrepareCommit/PrepareAbort in the log, and
/// recovery finishes it the same way.
extension TransactionCoordinator {
    static let markerRetryPauseMinMs = 50
    static let markerRetryPauseMaxMs = 5_000

    /// Starts writing the markers of a transaction that became PrepareCommit/PrepareAbort.
    func startMarkers(_ decided: TransactionMetadata) {
        locked.withLock { state in
            guard !state.isClosed, state.markerTasks[decided.transactionalId] == nil else { return }
            state.markerTasks[decided.transactionalId] = Task {
                await self.complete(decided)
                self.locked.withLock { _ = $0.markerTasks.removeValue(forKey: decided.transactionalId) }
            }
        }
    }

    /// Writes the markers until every one is durable (retrying partitions and groups whose write
    /// failed, with a growing pause), then the completion.
    private func complete(_ decided: TransactionMetadata) async {
        let commit = decided.phase == .prepareCommit
        var partitions = decided.partitions.keys.sorted()
        var groupIds = decided.groups.sorted()
        var unindexed: [AbortedTransactionRecord] = []
        var pauseMs = Self.markerRetryPauseMinMs
        while !Task.isCancelled && !isClosed {
            if !partitions.isEmpty {
                let round = await writePartitionMarkers(decided, partitions, commit: commit)
                partitions = round.failed
                unindexed += round.aborted
            }
            var failedGroups: [String] = []
            for group in groupIds
            where !(await groups.completeTransaction(groupId: group, producerId: decided.producerId, commit: commit)) {
                failedGroups.append(group)
            }
            groupIds = failedGroups
            if !unindexed.isEmpty, (try? await index.persist(unindexed)) != nil { unindexed = [] }
            if partitions.isEmpty && groupIds.isEmpty && unindexed.isEmpty {
                if await writeCompletion(decided) { return }
            } else {
                logger.warning(
                    "writing transaction markers failed; retrying",
                    metadata: [
                        "transactional-id": "\(decided.transactionalId)", "partitions": "\(partitions)",
                        "groups": "\(groupIds)",
                    ]
                )
            }
            try? await Task.sleep(for: .milliseconds(pauseMs))
            pauseMs = min(pauseMs * 2, Self.markerRetryPauseMaxMs)
        }
    }

    /// The completion record; false when it could not be written (tried again after a pause).
    private func writeCompletion(_ decided: TransactionMetadata) async -> Bool {
        let target = locked.withLock { state in
            state.machine.markersWritten(
                transactionalId: decided.transactionalId,
                producerEpoch: decided.producerEpoch,
                nowMs: clock()
            )
        }
        // nil: the id moved on (it cannot while its markers are owed, but never loop on it).
        guard let target else { return true }
        return await write(target) == .none
    }

    /// One round of marker appends. Returns the partitions whose marker failed (to try again) and,
    /// for an abort, the index entries of partitions the producer had written to.
    private func writePartitionMarkers(
        _ decided: TransactionMetadata,
        _ partitions: [TopicPartition],
        commit: Bool
    ) async -> (failed: [TopicPartition], aborted: [AbortedTransactionRecord]) {
        var targets: [(TopicPartition, Topic, Partition)] = []
        for topicPartition in partitions {
            // A partition deleted since it joined the transaction needs no marker (Kafka drops
            // markers for partitions it no longer knows).
            guard let topic = registry.topic(named: topicPartition.topic),
                let partition = topic.partition(topicPartition.partition)
            else { continue }
            targets.append((topicPartition, topic, partition))
        }
        guard !targets.isEmpty else { return ([], []) }
        let outcomes = MarkerOutcomes(count: targets.count)
        let firstOffsets = await submitMarkers(targets.map(\.2), decided, commit: commit, into: outcomes)
        let results = await outcomes.wait()
        var failed: [TopicPartition] = []
        var aborted: [AbortedTransactionRecord] = []
        for (slot, (topicPartition, topic, partition)) in targets.enumerated() {
            let result = results[slot]
            if result.errorCode == .none {
                if !commit, let first = firstOffsets[slot] {
                    let transaction = AbortedTransaction(
                        producerId: decided.producerId,
                        firstOffset: first,
                        lastOffset: result.baseOffset
                    )
                    aborted.append(
                        AbortedTransactionRecord(
                            topicId: topic.id,
                            partition: partition.index,
                            transaction: transaction
                        )
                    )
                }
            } else if result.errorCode != .unknownTopicOrPartition {
                failed.append(topicPartition)
            }
        }
        return (failed, aborted)
    }

    /// Submits the markers. On a non-blocking backend right here, in partition order, then one
    /// shared sync on a shared-sync backend. On a blocking backend each partition's marker is
    /// submitted from a storage thread — where produced batches are appended too, so a
    /// partition's appends reach the backend in offset order — one work item per partition, so
    /// their fdatasyncs run in parallel (`--num-io-threads`). Returns each partition's transaction
    /// first offset (nil where the producer wrote nothing there).
    private func submitMarkers(
        _ partitions: [Partition],
        _ decided: TransactionMetadata,
        commit: Bool,
        into outcomes: MarkerOutcomes
    ) async -> [Int64?] {
        let nowMs = clock()
        let submit: @Sendable (Int, Partition) -> (Partition.Submission, Int64?) = { slot, partition in
            partition.submitMarker(
                producerId: decided.producerId,
                producerEpoch: decided.producerEpoch,
                commit: commit,
                nowMs: nowMs,
                sink: AppendSink(collector: outcomes, slot: slot)
            )
        }
        guard storage.usesBlockingPool else {
            var firstOffsets: [Int64?] = []
            var sharedSync: [(Partition, Int64)] = []
            for (slot, partition) in partitions.enumerated() {
                let (submission, first) = submit(slot, partition)
                firstOffsets.append(first)
                if case .awaitsSharedSync = submission { sharedSync.append((partition, 0)) }
            }
            for index in sharedSync.indices { sharedSync[index].1 = sharedSync[index].0.submittedEnd }
            Partition.submitSharedSync(covering: sharedSync)
            return firstOffsets
        }
        let storage = self.storage
        return await withTaskGroup(of: (Int, Int64?).self) { group in
            for (slot, partition) in partitions.enumerated() {
                group.addTask {
                    await withCheckedContinuation { continuation in
                        storage.runOnStorageThread { continuation.resume(returning: (slot, submit(slot, partition).1)) }
                    }
                }
            }
            var firstOffsets = [Int64?](repeating: nil, count: partitions.count)
            for await (slot, first) in group { firstOffsets[slot] = first }
            return firstOffsets
        }
    }
}
