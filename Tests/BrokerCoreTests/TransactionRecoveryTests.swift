import NIOCore
import StorageHost
import Testing

@testable import BrokerCore
@testable import KafkaMessages
@testable import KafkaRecords

/// Recovery of transactions when a broker starts again over the same storage instance, including
/// states a kill -9 leaves (written here into the logs directly, as the crash would leave them).
@Suite("Transaction recovery")
struct TransactionRecoveryTests {
    /// Appends one entry to a log of a stopped broker, as a write that completed before a crash.
    static func append(_ entry: ByteBuffer, to name: String, engine: StorageEngine, isBatch: Bool) async throws {
        let log = try await engine.openLog(named: name, create: false)
        let end = try log.state().endOffset
        var bytes = entry
        if isBatch { RecordBatchWriter.assignOffsets(&bytes, baseOffset: end, partitionLeaderEpoch: 0) }
        try await log.append(firstOffset: end, lastOffset: end, maxTimestamp: 1_700_000_000_000, parts: [bytes])
        try await log.sync()
        await log.close()
    }

    /// An Ongoing transaction survives a restart: its batches hold the last stable offset again
    /// (found by scanning from where the partition joined it), and its producer commits it.
    @Test func anOngoingTransactionIsOpenAgainAfterARestart() async throws {
        let first = try await TestBroker.start()
        try await first.createTopic("t")
        _ = try await first.produce("t", batch: makeBatch(count: 2))
        var client = TransactionalClient(first)
        _ = try await client.initTransactions()
        _ = try await client.addPartitions("t", [0])
        #expect(try await client.produce("t") == (0, 2))
        await first.broker.shutdown()

        let second = try await TestBroker.start(engine: first.engine)
        #expect(try await second.phase(of: "tx") == "Ongoing")
        #expect(try await second.latest("t", readCommitted: true) == 2)
        var resumed = TransactionalClient(second)
        resumed.producer = client.producer
        resumed.sequences = client.sequences
        #expect(try await resumed.produce("t", count: 1) == (0, 5))
        #expect(try await resumed.end(commit: true) == 0)
        #expect(try await second.latest("t", readCommitted: true) == 7)
    }

    /// A crash after an ABORT marker became durable but before its index entry was written
    /// (the transaction is still PrepareAbort in its log): recovery finds the marker, indexes it
    /// durably, finishes the transaction; a later restart reads the entry from the index log.
    @Test func anAbortMarkerWithoutItsIndexEntryIsIndexedAtRecovery() async throws {
        let first = try await TestBroker.start()
        try await first.createTopic("t")
        var client = TransactionalClient(first)
        _ = try await client.initTransactions()
        _ = try await client.addPartitions("t", [0])
        #expect(try await client.produce("t") == (0, 0))
        let ongoing = try #require(first.broker.transactionCoordinator.describe(transactionalId: "tx"))
        await first.broker.shutdown()

        // The crash window: PrepareAbort durable, the marker durable, nothing after.
        var prepared = ongoing.moved(to: .prepareAbort, nowMs: ongoing.lastUpdateTimestampMs + 1)
        prepared.lastProducerEpoch = ongoing.lastProducerEpoch
        try await Self.append(
            TransactionLogRecord.metadata(prepared).encode(),
            to: TransactionLogRecord.logName,
            engine: first.engine,
            isBatch: false
        )
        let marker = EndTransactionMarker(kind: .abort, coordinatorEpoch: 0)
            .batch(producerId: ongoing.producerId, producerEpoch: ongoing.producerEpoch, timestamp: 1_700_000_000_000)
        try await Self.append(marker, to: Topic.logName(topic: "t", partition: 0), engine: first.engine, isBatch: true)

        let second = try await TestBroker.start(engine: first.engine)
        await second.broker.transactionCoordinator.waitForMarkers(transactionalId: "tx")
        #expect(try await second.phase(of: "tx") == "CompleteAbort")
        let expected: [FetchResponse.AbortedTransaction] = [.init(producerId: ongoing.producerId, firstOffset: 0)]
        #expect(try await second.fetch("t", readCommitted: true).abortedTransactions == expected)
        // The recovery scan's entry was persisted: a restart gets it from the index log.
        await second.broker.shutdown()
        let third = try await TestBroker.start(engine: first.engine)
        let data = try await third.fetch("t", readCommitted: true)
        #expect(data.abortedTransactions == expected)
        #expect(data.lastStableOffset == data.highWatermark)
    }

    /// A crash right after EndTxn was answered (PrepareCommit durable, no marker yet): recovery
    /// writes the markers and the transaction becomes visible and CompleteCommit.
    @Test func aPreparedCommitIsFinishedAtRecovery() async throws {
        let first = try await TestBroker.start()
        try await first.createTopic("t")
        var client = TransactionalClient(first)
        _ = try await client.initTransactions()
        _ = try await client.addPartitions("t", [0])
        _ = try await client.addOffsets(group: "g")
        _ = try await client.produce("t")
        #expect(try await client.commitOffsets(group: "g", topic: "t", offset: 3) == 0)
        let ongoing = try #require(first.broker.transactionCoordinator.describe(transactionalId: "tx"))
        await first.broker.shutdown()
        var prepared = ongoing.moved(to: .prepareCommit, nowMs: ongoing.lastUpdateTimestampMs + 1)
        prepared.lastProducerEpoch = ongoing.lastProducerEpoch
        try await Self.append(
            TransactionLogRecord.metadata(prepared).encode(),
            to: TransactionLogRecord.logName,
            engine: first.engine,
            isBatch: false
        )

        let second = try await TestBroker.start(engine: first.engine)
        await second.broker.transactionCoordinator.waitForMarkers(transactionalId: "tx")
        #expect(try await second.phase(of: "tx") == "CompleteCommit")
        #expect(try await second.latest("t", readCommitted: true) == 4)
        #expect(try await second.committedOffset(group: "g", topic: "t", requireStable: true) == (3, 0))
    }

    /// An index entry whose marker the partition does not hold (a log that lost its tail) is
    /// dropped at startup, never trusted.
    @Test func indexEntriesThePartitionDoesNotHoldAreDropped() async throws {
        let first = try await TestBroker.start()
        try await first.createTopic("t")
        _ = try await first.produce("t", batch: makeBatch(count: 4))
        let topicId = try #require(first.broker.registry.topic(named: "t")?.id)
        await first.broker.shutdown()
        for lastOffset: Int64 in [2, 40] {
            let record = AbortedTransactionRecord(
                topicId: topicId,
                partition: 0,
                transaction: .init(producerId: 5, firstOffset: 0, lastOffset: lastOffset)
            )
            try await Self.append(
                record.encode(),
                to: AbortedTransactionRecord.logName,
                engine: first.engine,
                isBatch: false
            )
        }
        let second = try await TestBroker.start(engine: first.engine)
        #expect(try await second.fetch("t", readCommitted: true).abortedTransactions == [])
    }
}
