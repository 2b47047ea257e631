import KafkaMessages
import Logging
import StorageHost
import Synchronization

/// The aborted-transactions index of every partition, persisted in one internal log
/// (`__fjord_aborted_transactions`, see `AbortedTransactionRecord`): what Kafka keeps in each
/// segment's `.txnindex`. The partitions hold the index in memory; this log makes it survive a
/// restart without scanning whole partitions for ABORT markers.
final class AbortedTransactionIndexLog: Sendable {
    private let writer: InternalLogWriter
    private let logger: Logger
    /// Held while entries are submitted and while a compaction gathers the live entries and
    /// submits them: an entry is either among the live ones or written after the compaction's
    /// start, never deleted by it.
    private let order = Mutex(())

    private init(writer: InternalLogWriter, logger: Logger) {
        self.writer = writer
        self.logger = logger
    }

    /// Opens the log and hands every partition the entries it holds, each checked against the
    /// partition's log (`Partition.verifiedAbortedTransactions`). Returns the log and the checked
    /// entries per partition, which `TransactionCoordinator.recover` merges with what its scan finds.
    static func open(
        storage: StorageEngine,
        registry: TopicRegistry,
        compactionThresholdEntries: Int,
        logger: Logger
    ) async throws -> (AbortedTransactionIndexLog, [ObjectIdentifier: [AbortedTransaction]]) {
        let (writer, chunks) = try await InternalLogWriter.open(
            storage: storage,
            name: AbortedTransactionRecord.logName,
            compactionThresholdEntries: compactionThresholdEntries,
            logger: logger
        )
        let index = AbortedTransactionIndexLog(writer: writer, logger: logger)
        var byPartition: [TopicPartitionId: [AbortedTransaction]] = [:]
        do {
            for chunk in chunks {
                for record in try AbortedTransactionRecord.decodeAll(chunk) {
                    byPartition[TopicPartitionId(topicId: record.topicId, partition: record.partition), default: []]
                        .append(record.transaction)
                }
            }
        } catch {
            await writer.close()
            throw error
        }
        var verified: [ObjectIdentifier: [AbortedTransaction]] = [:]
        var dropped = 0
        for (key, entries) in byPartition {
            // Entries of deleted topics are dropped here and vanish at the next compaction.
            guard let partition = registry.topic(id: key.topicId)?.partition(key.partition) else { continue }
            let checked = await partition.verifiedAbortedTransactions(Array(Set(entries)))
            verified[ObjectIdentifier(partition)] = checked.kept
            dropped += checked.dropped
        }
        if dropped > 0 {
            logger.warning(
                "aborted-transaction index entries that their partition does not hold were dropped",
                metadata: ["entries": "\(dropped)"]
            )
        }
        return (index, verified)
    }

    /// Persists index entries; they are durable when this returns without throwing.
    func persist(_ records: [AbortedTransactionRecord]) async throws {
        guard !records.isEmpty else { return }
        let pending = order.withLock { _ in writer.submit(records.map { $0.encode() }) }
        if case .failure(let error) = await writer.finish(pending) { throw error }
    }

    /// Rewrites the live entries (markers still in their partitions) and deletes the rest, once
    /// the log holds well more entries than are live.
    func maybeCompact(registry: TopicRegistry) async {
        let started = order.withLock { _ -> (compaction: (pending: PendingOffsetsWrite, start: Int64), count: Int)? in
            var live: [AbortedTransactionRecord] = []
            for topic in registry.all {
                for partition in topic.partitions {
                    for transaction in partition.liveAbortedTransactions {
                        live.append(
                            AbortedTransactionRecord(
                                topicId: topic.id,
                                partition: partition.index,
                                transaction: transaction
                            )
                        )
                    }
                }
            }
            guard writer.isCompactionDue(liveCount: live.count),
                let compaction = writer.beginCompaction(live: live.map { $0.encode() })
            else { return nil }
            return (compaction, live.count)
        }
        guard let started else { return }
        await writer.finishCompaction(started.compaction)
        logger.debug("compacted the aborted-transaction index log", metadata: ["entries": "\(started.count)"])
    }

    func close() async {
        await writer.close()
    }
}

/// A partition named by its topic's id, so a topic deleted and created again under the same name
/// never inherits the old one's index entries.
struct TopicPartitionId: Hashable, Sendable {
    var topicId: KafkaUUID
    var partition: Int32
}
