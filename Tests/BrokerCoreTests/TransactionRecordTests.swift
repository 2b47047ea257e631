import NIOCore
import Testing

@testable import BrokerCore
@testable import KafkaMessages
@testable import KafkaRecords

@Suite("Transaction log records and the partition's transactions")
struct TransactionRecordTests {
    static let metadata = TransactionMetadata(
        transactionalId: "tx-é",
        producerId: 77,
        lastProducerId: 76,
        producerEpoch: 3,
        lastProducerEpoch: 2,
        timeoutMs: 60_000,
        phase: .prepareAbort,
        partitions: [TopicPartition(topic: "a", partition: 0): 10, TopicPartition(topic: "b", partition: 5): 0],
        groups: ["g1", "g2"],
        startTimestampMs: 1_700_000_000_000,
        lastUpdateTimestampMs: 1_700_000_000_500
    )

    static func concatenated(_ entries: [ByteBuffer]) -> ByteBuffer {
        var all = ByteBuffer()
        for var entry in entries { all.writeBuffer(&entry) }
        return all
    }

    /// Transaction log records encode and decode losslessly; a truncated log is an error, not a guess.
    @Test func transactionLogRecordsRoundTrip() throws {
        var empty = Self.metadata
        empty.partitions = [:]
        empty.groups = []
        empty.phase = .empty
        let records: [TransactionLogRecord] = [
            .metadata(Self.metadata), .metadata(empty), .tombstone(transactionalId: "gone"),
        ]
        let all = Self.concatenated(records.map { $0.encode() })
        #expect(try TransactionLogRecord.decodeAll(all) == records)
        var truncated = all
        truncated.moveWriterIndex(to: truncated.writerIndex - 1)
        #expect(throws: InternalLogEntry.DecodeError.self) { try TransactionLogRecord.decodeAll(truncated) }
    }

    /// Aborted-transaction index records round-trip.
    @Test func abortedTransactionRecordsRoundTrip() throws {
        let records = [
            AbortedTransactionRecord(
                topicId: .random(),
                partition: 3,
                transaction: .init(producerId: 9, firstOffset: 100, lastOffset: 150)
            ),
            AbortedTransactionRecord(
                topicId: .random(),
                partition: 0,
                transaction: .init(producerId: 1, firstOffset: 0, lastOffset: 1)
            ),
        ]
        #expect(try AbortedTransactionRecord.decodeAll(Self.concatenated(records.map { $0.encode() })) == records)
    }

    /// The end-transaction marker is a control batch of one record that parses back to its type.
    @Test(arguments: [EndTransactionMarker.Kind.commit, .abort])
    func endTransactionMarkersRoundTrip(kind: EndTransactionMarker.Kind) throws {
        let batch = EndTransactionMarker(kind: kind, coordinatorEpoch: 5).batch(
            producerId: 42,
            producerEpoch: 7,
            timestamp: 1_000
        )
        let header = try RecordBatchValidator.validateStoredBatch(batch)
        #expect(header.isControl && header.isTransactional)
        #expect(header.producerId == 42 && header.producerEpoch == 7 && header.baseSequence == -1)
        #expect(header.recordCount == 1)
        #expect(EndTransactionMarker(controlBatch: batch) == EndTransactionMarker(kind: kind, coordinatorEpoch: 5))
        #expect(EndTransactionMarker(controlBatch: makeBatch(count: 1)) == nil)
        // Producers may not write them.
        #expect(throws: RecordBatchError.self) {
            try RecordBatchValidator.validateProduceRecords(batch, policy: .init())
        }
    }

    /// Transactional offsets are replayed as pending and decided by their transaction-end record;
    /// a snapshot keeps the pending ones.
    @Test func transactionalOffsetsReplayAndSurviveSnapshots() {
        let partition = TopicPartition(topic: "t", partition: 0)
        let entry = OffsetsLogRecord.Entry(
            topicPartition: partition,
            committed: CommittedOffset(offset: 12, leaderEpoch: -1, metadata: "m", commitTimestampMs: 5)
        )
        let records: [OffsetsLogRecord] = [
            .transactionalCommit(.init(group: "g", entries: [entry]), producerId: 1, producerEpoch: 0),
            .transactionalCommit(.init(group: "g", entries: [entry]), producerId: 2, producerEpoch: 0),
            .transactionEnd(group: "g", producerId: 1, committed: false),
        ]
        var decoded: [OffsetsLogRecord] = []
        if let all = try? OffsetsLogRecord.decodeAll(Self.concatenated(records.map { $0.encode() })) { decoded = all }
        #expect(decoded == records)
        var replay = OffsetsReplay()
        for record in decoded { replay.apply(record) }
        #expect(replay.offsets.offsets(of: "g") == nil)
        #expect(replay.offsets.hasPending(group: "g", partition: partition))
        #expect(replay.offsets.pendingProducers.map(\.producerId) == [2])
        var afterSnapshot = OffsetsReplay()
        for record in OffsetsLogRecord.snapshot(id: 9, of: replay.offsets) { afterSnapshot.apply(record) }
        #expect(afterSnapshot.offsets == replay.offsets)
        afterSnapshot.apply(.transactionEnd(group: "g", producerId: 2, committed: true))
        #expect(afterSnapshot.offsets.offsets(of: "g")?[partition]?.offset == 12)
        #expect(!afterSnapshot.offsets.hasPending(group: "g", partition: partition))
    }

    /// The last stable offset is the high watermark unless a transaction is open or its marker is
    /// not yet visible; aborted transactions enter the index when their marker becomes visible.
    @Test func lastStableOffsetFollowsOpenTransactionsAndMarkers() {
        var transactions = PartitionTransactions()
        #expect(transactions.lastStableOffset(highWatermark: 10) == 10)
        let began = [
            transactions.noteTransactionalBatch(producerId: 1, at: 10),
            transactions.noteTransactionalBatch(producerId: 1, at: 12),
            transactions.noteTransactionalBatch(producerId: 2, at: 11),
        ]
        #expect(began == [true, false, true])
        #expect(transactions.lastStableOffset(highWatermark: 5) == 5)
        #expect(transactions.lastStableOffset(highWatermark: 20) == 10)
        let firstOffsets = [
            transactions.noteMarker(producerId: 1, at: 20, isAbort: true),
            transactions.noteMarker(producerId: 3, at: 21, isAbort: true),
        ]
        #expect(firstOffsets == [10, nil])
        // The marker is assigned but not visible: it still holds the LSO.
        #expect(transactions.lastStableOffset(highWatermark: 20) == 10)
        transactions.markersVisible(below: 21)
        #expect(transactions.lastStableOffset(highWatermark: 21) == 11)
        #expect(transactions.aborted == [AbortedTransaction(producerId: 1, firstOffset: 10, lastOffset: 20)])
        _ = transactions.noteMarker(producerId: 2, at: 22, isAbort: false)
        transactions.forgetMarker(at: 22)
        #expect(transactions.hasOpenTransaction(2))
        _ = transactions.noteMarker(producerId: 2, at: 22, isAbort: false)
        transactions.markersVisible(below: 23)
        #expect(transactions.isEmpty)
        #expect(transactions.aborted.count == 1)
    }

    /// A read reports the aborted transactions whose marker is at or after its start and whose
    /// first batch is before its end; retention drops entries whose marker is gone.
    @Test func abortedTransactionsOfARange() {
        var transactions = PartitionTransactions()
        let entries = [
            AbortedTransaction(producerId: 1, firstOffset: 0, lastOffset: 5),
            AbortedTransaction(producerId: 2, firstOffset: 3, lastOffset: 9),
            AbortedTransaction(producerId: 1, firstOffset: 10, lastOffset: 12),
        ]
        transactions.restore(open: [:], aborted: entries.reversed())
        #expect(transactions.aborted == entries)
        #expect(transactions.abortedTransactions(from: 0, upTo: 100) == entries)
        #expect(transactions.abortedTransactions(from: 6, upTo: 100) == Array(entries[1...]))
        #expect(transactions.abortedTransactions(from: 6, upTo: 10) == [entries[1]])
        #expect(transactions.abortedTransactions(from: 13, upTo: 100) == [])
        transactions.pruneAborted(below: 6)
        #expect(transactions.aborted == Array(entries[1...]))
    }
}
