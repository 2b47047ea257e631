import NIOCore
import Testing

@testable import BrokerCore
@testable import KafkaMessages

@Suite("Idempotent producing")
struct IdempotenceTests {
    /// InitProducerId hands out distinct producer ids with epoch 0; a transactional id gets one
    /// from the transaction coordinator; an empty transactional id is refused.
    @Test func initProducerIdAllocatesDistinctIds() async throws {
        let test = try await TestBroker.start()
        var seen = Set<Int64>()
        for version: Int16 in [0, 1, 2, 3, 4] {
            let response = try await test.send(
                InitProducerIdRequest(transactionalId: nil, transactionTimeoutMs: 1000),
                version: version
            )
            #expect(response.errorCode == 0)
            #expect(response.producerEpoch == 0)
            #expect(seen.insert(response.producerId).inserted)
        }
        let transactional = try await test.send(
            InitProducerIdRequest(transactionalId: "tx", transactionTimeoutMs: 1000),
            version: 4
        )
        #expect(transactional.errorCode == 0)
        #expect(transactional.producerEpoch == 0)
        #expect(seen.insert(transactional.producerId).inserted)
        let empty = try await test.send(
            InitProducerIdRequest(transactionalId: "", transactionTimeoutMs: 1000),
            version: 4
        )
        #expect(empty.errorCode == ErrorCode.invalidRequest.rawValue)
    }

    /// A retried batch is answered with its original offset and never stored twice.
    @Test func duplicateBatchIsNotStoredTwice() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("dup")
        let first = makeBatch(count: 3, producerId: 42, producerEpoch: 0, baseSequence: 0)
        #expect(try await test.produce("dup", batch: first) == (0, 0))
        let second = makeBatch(count: 2, producerId: 42, producerEpoch: 0, baseSequence: 3)
        #expect(try await test.produce("dup", batch: second) == (0, 3))
        #expect(try await test.produce("dup", batch: first) == (0, 0))
        #expect(try await test.produce("dup", batch: second) == (0, 3))
        #expect(try await test.listOffset("dup", timestamp: -1).offset == 5)
        #expect(try await test.consumeAll("dup").count == 5)
    }

    /// A gap in sequence numbers is OUT_OF_ORDER_SEQUENCE_NUMBER; an older epoch INVALID_PRODUCER_EPOCH.
    @Test func sequenceGapsAndStaleEpochsAreRefused() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("seq")
        #expect(
            try await test.produce("seq", batch: makeBatch(count: 1, producerId: 7, producerEpoch: 3, baseSequence: 0))
                .errorCode == 0
        )
        #expect(
            try await test.produce("seq", batch: makeBatch(count: 1, producerId: 7, producerEpoch: 3, baseSequence: 2))
                .errorCode
                == ErrorCode.outOfOrderSequenceNumber.rawValue
        )
        #expect(
            try await test.produce("seq", batch: makeBatch(count: 1, producerId: 7, producerEpoch: 2, baseSequence: 1))
                .errorCode
                == ErrorCode.invalidProducerEpoch.rawValue
        )
        // A new epoch must restart at sequence 0.
        #expect(
            try await test.produce("seq", batch: makeBatch(count: 1, producerId: 7, producerEpoch: 4, baseSequence: 1))
                .errorCode
                == ErrorCode.outOfOrderSequenceNumber.rawValue
        )
        #expect(
            try await test.produce("seq", batch: makeBatch(count: 1, producerId: 7, producerEpoch: 4, baseSequence: 0))
                .errorCode == 0
        )
        #expect(try await test.listOffset("seq", timestamp: -1).offset == 2)
    }

    /// Sequence numbers wrap from Int32.max to 0.
    @Test func sequenceNumbersWrap() {
        #expect(ProducerStateTable.nextSequence(after: Int32.max) == 0)
        #expect(ProducerStateTable.lastSequence(first: Int32.max - 1, lastOffsetDelta: 3) == 1)
        var table = ProducerStateTable()
        table.record(
            producerId: 1,
            producerEpoch: 0,
            batch: .init(firstSequence: Int32.max - 1, lastSequence: Int32.max, firstOffset: 0, lastOffset: 1),
            nowMs: 0
        )
        #expect(
            table.check(producerId: 1, producerEpoch: 0, firstSequence: 0, lastSequence: 4)
                == .append(previous: table.entries[1])
        )
    }

    /// Only the last five batches per producer are remembered, as in Kafka.
    @Test func onlyFiveBatchesAreCached() {
        var table = ProducerStateTable()
        for i in 0..<8 {
            table.record(
                producerId: 1,
                producerEpoch: 0,
                batch: .init(
                    firstSequence: Int32(i),
                    lastSequence: Int32(i),
                    firstOffset: Int64(i),
                    lastOffset: Int64(i)
                ),
                nowMs: 0
            )
        }
        #expect(table.entries[1]?.batches.count == 5)
        #expect(
            table.check(producerId: 1, producerEpoch: 0, firstSequence: 4, lastSequence: 4)
                != .append(previous: table.entries[1])
        )
        table.expire(olderThan: 1)
        #expect(table.entries.isEmpty)
    }
}

@Suite("Idempotence across restarts")
struct IdempotenceRestartTests {
    /// A broker restarted over the same storage rebuilds producer state from the log's tail: a
    /// retry of a batch stored before the restart gets its original offset and is not stored again.
    @Test func producerStateIsRebuiltFromTheLogTail() async throws {
        let first = try await TestBroker.start()
        try await first.createTopic("restart")
        let stored = makeBatch(count: 3, producerId: 9, producerEpoch: 0, baseSequence: 0)
        #expect(try await first.produce("restart", batch: stored) == (0, 0))
        await first.broker.shutdown()

        let second = try await TestBroker.start(engine: first.engine)
        #expect(try await second.produce("restart", batch: stored) == (0, 0))
        #expect(try await second.listOffset("restart", timestamp: -1).offset == 3)
        let gap = makeBatch(count: 1, producerId: 9, producerEpoch: 0, baseSequence: 7)
        #expect(
            try await second.produce("restart", batch: gap).errorCode == ErrorCode.outOfOrderSequenceNumber.rawValue
        )
        let next = makeBatch(count: 1, producerId: 9, producerEpoch: 0, baseSequence: 3)
        #expect(try await second.produce("restart", batch: next) == (0, 3))
    }

    /// Only the configured window of offsets is re-read: a producer whose batches lie further back
    /// is treated as new (Kafka's behaviour for expired producer state), so any sequence is accepted.
    @Test func producersBeyondTheRecoveryWindowStartFresh() async throws {
        let first = try await TestBroker.start { $0.producerStateRecoveryOffsets = 5 }
        try await first.createTopic("window")
        _ = try await first.produce(
            "window",
            batch: makeBatch(count: 3, producerId: 1, producerEpoch: 0, baseSequence: 0)
        )
        _ = try await first.produce("window", batch: makeBatch(count: 10))
        await first.broker.shutdown()
        let second = try await TestBroker.start(engine: first.engine) { $0.producerStateRecoveryOffsets = 5 }
        let far = makeBatch(count: 1, producerId: 1, producerEpoch: 0, baseSequence: 50)
        #expect(try await second.produce("window", batch: far) == (0, 13))
    }
}
