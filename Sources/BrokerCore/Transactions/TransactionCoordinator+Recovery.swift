import KafkaMessages
import Logging
import StorageHost

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Startup (Kafka's `loadTransactionsForTxnTopicPartition`, plus what its producer snapshots and
/// `.txnindex` files give a partition).
///
/// 1. The aborted-transaction index log is read and every entry checked against its partition.
/// 2. The transaction state log is replayed: the last record of each id is its state.
/// 3. Every partition in a transaction under way (Ongoing, PrepareCommit, PrepareAbort) is scanned
///    from the log end it had when it joined that transaction: the transactions still open there
///    hold its last stable offset again, and ABORT markers written before the crash whose index
///    entries were not are indexed now (durably, before anything else happens).
/// 4. Offsets of groups pending in a transaction that is no longer under way are dropped.
/// 5. PrepareCommit/PrepareAbort transactions get their markers written (again: a marker already
///    in a partition is harmless, consumers skip it) and are completed; Ongoing ones stay open —
///    their producer may still commit them — and are aborted when their timeout passes, measured
///    from their start as recorded in the log (as Kafka does).
extension TransactionCoordinator {
    struct Configuration: Sendable {
        var settings: TransactionSettings
        var compactionThresholdEntries: Int
        var clock: @Sendable () -> Int64
    }

    static func open(
        configuration: Configuration,
        storage: StorageEngine,
        registry: TopicRegistry,
        groups: GroupCoordinator,
        metadata: MetadataManager,
        logger: Logger
    ) async throws -> TransactionCoordinator {
        let started = ContinuousClock.now
        let (index, persisted) = try await AbortedTransactionIndexLog.open(
            storage: storage,
            registry: registry,
            compactionThresholdEntries: configuration.compactionThresholdEntries,
            logger: logger
        )
        let writer: InternalLogWriter
        var machine = TransactionCoordinatorState(settings: configuration.settings)
        do {
            let (opened, chunks) = try await InternalLogWriter.open(
                storage: storage,
                name: TransactionLogRecord.logName,
                compactionThresholdEntries: configuration.compactionThresholdEntries,
                logger: logger
            )
            writer = opened
            do {
                for chunk in chunks {
                    for record in try TransactionLogRecord.decodeAll(chunk) {
                        switch record {
                        case .metadata(let metadata): machine.restore(metadata)
                        case .tombstone(let transactionalId): machine.remove(transactionalId: transactionalId)
                        }
                    }
                }
            } catch {
                await writer.close()
                throw error
            }
        } catch {
            await index.close()
            throw error
        }
        let coordinator = TransactionCoordinator(
            machine: machine,
            writer: writer,
            index: index,
            registry: registry,
            groups: groups,
            metadata: metadata,
            storage: storage,
            clock: configuration.clock,
            logger: logger
        )
        do {
            try await coordinator.recoverPartitions(persisted: persisted)
        } catch {
            await coordinator.close()
            throw error
        }
        await coordinator.abortOrphanedGroupOffsets()
        coordinator.resumeUndecided(since: started)
        return coordinator
    }

    /// Steps 3: rebuilds every partition's open transactions and index, persisting what the scans
    /// found that the index log lacked.
    private func recoverPartitions(persisted: [ObjectIdentifier: [AbortedTransaction]]) async throws {
        var openSince: [TopicPartition: [Int64: Int64]] = [:]
        for transaction in locked.withLock({ $0.machine.undecided }) {
            for (partition, since) in transaction.partitions {
                openSince[partition, default: [:]][transaction.producerId] = since
            }
        }
        var discovered: [AbortedTransactionRecord] = []
        for topic in registry.all {
            for partition in topic.partitions {
                let since = openSince[TopicPartition(topic: topic.name, partition: partition.index)] ?? [:]
                let entries = persisted[ObjectIdentifier(partition)] ?? []
                guard !since.isEmpty || !entries.isEmpty else { continue }
                let found = try await partition.recoverTransactions(openSince: since, persisted: entries)
                discovered += found.map {
                    AbortedTransactionRecord(topicId: topic.id, partition: partition.index, transaction: $0)
                }
            }
        }
        try await index.persist(discovered)
        if !discovered.isEmpty {
            logger.info("indexed aborted transactions found at recovery", metadata: ["entries": "\(discovered.count)"])
        }
    }

    /// Step 4: offsets pending in a transaction the coordinator no longer has under way with that
    /// group can never be decided by a marker; they are dropped, as an abort would.
    private func abortOrphanedGroupOffsets() async {
        let undecided = locked.withLock { state in
            Dictionary(state.machine.undecided.map { ($0.producerId, $0.groups) }, uniquingKeysWith: { $0.union($1) })
        }
        for (group, producerId) in groups.pendingTransactionalProducers
        where undecided[producerId]?.contains(group) != true {
            logger.warning(
                "dropping transactional offsets of a transaction the coordinator does not have",
                metadata: ["group": "\(group)", "producer-id": "\(producerId)"]
            )
            _ = await groups.completeTransaction(groupId: group, producerId: producerId, commit: false)
        }
    }

    /// Step 5: markers for decided transactions, the timer for open ones.
    private func resumeUndecided(since started: ContinuousClock.Instant) {
        let undecided = locked.withLock { state in
            armTimer(&state)
            return state.machine.undecided
        }
        for transaction in undecided where transaction.phase.isPreparing { startMarkers(transaction) }
        let elapsed = started.duration(to: .now)
        logger.info(
            "transactions recovered",
            metadata: [
                "transactional-ids": "\(locked.withLock { $0.machine.transactions.count })",
                "ongoing": "\(undecided.filter { $0.phase == .ongoing }.count)",
                "completing": "\(undecided.filter { $0.phase.isPreparing }.count)",
                "ms": "\(elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000)",
            ]
        )
    }
}
