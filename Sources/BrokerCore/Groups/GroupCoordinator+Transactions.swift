import KafkaMessages

/// Offsets committed inside transactions (TxnOffsetCommit, KIP-98): written to the offsets log as
/// pending, made visible to OffsetFetch only by the transaction's commit marker for the group,
/// dropped by its abort marker — the role of the markers Kafka writes into `__consumer_offsets`.
extension GroupCoordinator {
    /// TxnOffsetCommit for the partitions that passed the request checks (the transaction
    /// coordinator confirmed the group is in the producer's transaction): validates the member
    /// and generation as Kafka does for transactional commits, records the offsets as pending and
    /// submits their log entry.
    func submitTransactionalCommit(
        groupId: String,
        memberId: String,
        groupInstanceId: String?,
        generationId: Int32,
        producer: ProducerIdAndEpoch,
        offsets: [TopicPartition: CommittedOffset]
    ) -> CommitTicket {
        locked.withLock { state in
            guard !state.isClosed else { return .done(.coordinatorNotAvailable) }
            if let error = state.machine.validateOffsetCommit(
                groupId: groupId,
                memberId: memberId,
                groupInstanceId: groupInstanceId,
                generationId: generationId,
                isTransactional: true,
                now: clockNowMs
            ) {
                return .done(error)
            }
            guard !offsets.isEmpty else { return .done(.none) }
            state.machine.storeTransactionalOffsets(groupId: groupId, producerId: producer.producerId, offsets)
            let entries = offsets.keys.sorted().map {
                OffsetsLogRecord.Entry(topicPartition: $0, committed: offsets[$0]!)
            }  // Safe: own keys.
            let record = OffsetsLogRecord.transactionalCommit(
                .init(group: groupId, entries: entries),
                producerId: producer.producerId,
                producerEpoch: producer.producerEpoch
            )
            return .pending(submit([record], &state))
        }
    }

    /// Writes the end of a producer's transaction for `groupId` (its marker): the pending offsets
    /// are committed or dropped in memory and the record is durable when this returns true.
    func completeTransaction(groupId: String, producerId: Int64, commit: Bool) async -> Bool {
        let pending = locked.withLock { state -> PendingOffsetsWrite? in
            guard !state.isClosed else { return nil }
            state.machine.completeTransactionalOffsets(groupId: groupId, producerId: producerId, commit: commit)
            return submit([.transactionEnd(group: groupId, producerId: producerId, committed: commit)], &state)
        }
        guard let pending else { return false }
        if case .failure(let error) = await pending.wait() {
            offsetsWriteFailed(pending, error)
            return false
        }
        maybeCompact()
        return true
    }

    /// Every (group, producer id) with offsets waiting for a transaction's decision (recovery:
    /// those whose transaction the transaction coordinator no longer has under way are aborted).
    var pendingTransactionalProducers: [(group: String, producerId: Int64)] {
        locked.withLock { $0.machine.offsets.pendingProducers }
    }

    /// OffsetFetch with RequireStable (v7+): partitions with offsets in an undecided transaction.
    func unstablePartitions(groupId: String, among partitions: [TopicPartition]) -> Set<TopicPartition> {
        locked.withLock { state in
            Set(partitions.filter { state.machine.offsets.hasPending(group: groupId, partition: $0) })
        }
    }
}
