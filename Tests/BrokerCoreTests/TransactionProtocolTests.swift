import NIOCore
import StorageHost
import Synchronization
import Testing

@testable import BrokerCore
@testable import KafkaMessages
@testable import KafkaRecords

/// A wall clock that moves only when a test says so (transaction timestamps are wall-clock).
final class ManualWallClock: Sendable {
    private let nowMs = Atomic<Int64>(1_700_000_000_000)
    var read: @Sendable () -> Int64 { { self.nowMs.load(ordering: .relaxed) } }
    func advance(byMs milliseconds: Int64) { nowMs.add(milliseconds, ordering: .relaxed) }
}

/// A transactional producer driven request by request, as librdkafka does it.
struct TransactionalClient {
    let test: TestBroker
    let transactionalId: String
    var producer = ProducerIdAndEpoch(producerId: -1, producerEpoch: -1)
    var sequences: [Int32: Int32] = [:]

    init(_ test: TestBroker, _ transactionalId: String = "tx") {
        self.test = test
        self.transactionalId = transactionalId
    }

    mutating func initTransactions(timeoutMs: Int32 = 60_000) async throws -> Int16 {
        let response = try await test.send(
            InitProducerIdRequest(transactionalId: transactionalId, transactionTimeoutMs: timeoutMs),
            version: 4
        )
        if response.errorCode == 0 {
            producer = ProducerIdAndEpoch(producerId: response.producerId, producerEpoch: response.producerEpoch)
            sequences = [:]
        }
        return response.errorCode
    }

    func addPartitions(_ topic: String, _ partitions: [Int32], version: Int16 = 3) async throws -> [Int16] {
        let response = try await test.send(
            AddPartitionsToTxnRequest(
                v3AndBelowTransactionalId: transactionalId,
                v3AndBelowProducerId: producer.producerId,
                v3AndBelowProducerEpoch: producer.producerEpoch,
                v3AndBelowTopics: [.init(name: topic, partitions: partitions)]
            ),
            version: version
        )
        return response.resultsByTopicV3AndBelow.flatMap { $0.resultsByPartition.map(\.partitionErrorCode) }
    }

    func addOffsets(group: String) async throws -> Int16 {
        try await test.send(
            AddOffsetsToTxnRequest(
                transactionalId: transactionalId,
                producerId: producer.producerId,
                producerEpoch: producer.producerEpoch,
                groupId: group
            ),
            version: 3
        ).errorCode
    }

    func commitOffsets(group: String, topic: String, offset: Int64) async throws -> Int16 {
        let response = try await test.send(
            TxnOffsetCommitRequest(
                transactionalId: transactionalId,
                groupId: group,
                producerId: producer.producerId,
                producerEpoch: producer.producerEpoch,
                topics: [
                    .init(
                        name: topic,
                        partitions: [.init(partitionIndex: 0, committedOffset: offset, committedMetadata: "")]
                    )
                ]
            ),
            version: 3
        )
        return response.topics[0].partitions[0].errorCode
    }

    /// EndTxn; once it is accepted, waits until the markers are written and the transaction complete.
    func end(commit: Bool, version: Int16 = 3) async throws -> Int16 {
        let error = try await test.send(
            EndTxnRequest(
                transactionalId: transactionalId,
                producerId: producer.producerId,
                producerEpoch: producer.producerEpoch,
                committed: commit
            ),
            version: version
        ).errorCode
        await test.broker.transactionCoordinator.waitForMarkers(transactionalId: transactionalId)
        return error
    }

    /// Produces `count` records as one transactional batch; (error code, base offset).
    mutating func produce(
        _ topic: String,
        partition: Int32 = 0,
        count: Int = 3,
        prefix: String = "v",
        withTransactionalId: Bool = true,
        version: Int16 = 9
    ) async throws -> (Int16, Int64) {
        var builder = RecordBatchBuilder(
            producerId: producer.producerId,
            producerEpoch: producer.producerEpoch,
            baseSequence: sequences[partition, default: 0],
            isTransactional: true
        )
        for i in 0..<count {
            builder.append(key: nil, value: ByteBuffer(string: "\(prefix)\(i)"), timestamp: 1_700_000_000_000)
        }
        let response = try await test.send(
            ProduceRequest(
                transactionalId: withTransactionalId ? transactionalId : nil,
                acks: -1,
                timeoutMs: 30_000,
                topicData: [.init(name: topic, partitionData: [.init(index: partition, records: builder.build())])]
            ),
            version: version
        )
        let answer = response.responses[0].partitionResponses[0]
        if answer.errorCode == 0 { sequences[partition, default: 0] += Int32(count) }
        return (answer.errorCode, answer.baseOffset)
    }
}

extension TestBroker {
    func fetch(_ topic: String, offset: Int64 = 0, readCommitted: Bool) async throws -> FetchResponse.PartitionData {
        let response = try await send(
            FetchRequest(
                replicaId: -1,
                maxWaitMs: 0,
                minBytes: 0,
                maxBytes: 1 << 20,
                isolationLevel: readCommitted ? 1 : 0,
                topics: [
                    .init(
                        topic: topic,
                        partitions: [.init(partition: 0, fetchOffset: offset, partitionMaxBytes: 1 << 20)]
                    )
                ]
            ),
            version: 12
        )
        return response.responses[0].partitions[0]
    }

    /// The batches of a fetch: (base offset, is control, producer id, values).
    func batches(_ data: FetchResponse.PartitionData) throws -> [(Int64, Bool, Int64, [String])] {
        try RecordBatchReader.batches(in: data.records ?? ByteBuffer()).map { batch in
            let header = try RecordBatchHeader(parsing: batch)
            let values =
                header.isControl
                ? [] : try RecordBatchReader.records(of: batch, maxDecompressedBytes: 1 << 20).map(value)
            return (header.baseOffset, header.isControl, header.producerId, values)
        }
    }

    func latest(_ topic: String, readCommitted: Bool) async throws -> Int64 {
        let response = try await send(
            ListOffsetsRequest(
                replicaId: -1,
                isolationLevel: readCommitted ? 1 : 0,
                topics: [.init(name: topic, partitions: [.init(partitionIndex: 0, timestamp: -1)])]
            ),
            version: 7
        )
        return response.topics[0].partitions[0].offset
    }

    func phase(of transactionalId: String) async throws -> String {
        let response = try await send(DescribeTransactionsRequest(transactionalIds: [transactionalId]), version: 0)
        return response.transactionStates[0].transactionState
    }

    func committedOffset(group: String, topic: String, requireStable: Bool) async throws -> (Int64, Int16) {
        let response = try await send(
            OffsetFetchRequest(
                groupId: group,
                topics: [.init(name: topic, partitionIndexes: [0])],
                requireStable: requireStable
            ),
            version: 7
        )
        let partition = response.topics[0].partitions[0]
        return (partition.committedOffset, partition.errorCode)
    }
}

@Suite("Transactions through the broker")
struct TransactionProtocolTests {
    /// A transactional batch is refused until its partition is in the transaction (INVALID_TXN_STATE)
    /// and without the request's transactional id; once added, the transaction's batches hold the
    /// last stable offset until the commit marker is visible, then read_committed sees them.
    @Test func transactionalProduceAndCommit() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t")
        var client = TransactionalClient(test)
        #expect(try await client.initTransactions() == 0)
        #expect(try await client.produce("t").0 == ErrorCode.invalidTxnState.rawValue)
        // Produce v11 (KIP-890) is told the transaction must abort as such; v10 and older are not.
        #expect(try await client.produce("t", version: 11).0 == ErrorCode.transactionAbortable.rawValue)
        #expect(try await client.produce("t", version: 10).0 == ErrorCode.invalidTxnState.rawValue)
        #expect(try await client.addPartitions("t", [0]) == [0])
        #expect(
            try await client.produce("t", withTransactionalId: false).0
                == ErrorCode.transactionalIdAuthorizationFailed.rawValue
        )
        #expect(try await client.produce("t") == (0, 0))
        #expect(try await client.produce("t", count: 2) == (0, 3))
        #expect(try await test.phase(of: "tx") == "Ongoing")
        #expect(try await test.latest("t", readCommitted: true) == 0)
        #expect(try await test.latest("t", readCommitted: false) == 5)
        let open = try await test.fetch("t", readCommitted: true)
        #expect(open.lastStableOffset == 0 && open.highWatermark == 5)
        #expect(open.records?.readableBytes == 0)
        #expect(try await test.fetch("t", readCommitted: false).records?.readableBytes ?? 0 > 0)

        #expect(try await client.end(commit: true) == 0)
        #expect(try await test.phase(of: "tx") == "CompleteCommit")
        let committed = try await test.fetch("t", readCommitted: true)
        #expect(committed.lastStableOffset == 6 && committed.highWatermark == 6)
        #expect(committed.abortedTransactions == [])
        let batches = try test.batches(committed)
        #expect(batches.map(\.0) == [0, 3, 5])
        #expect(batches.map(\.1) == [false, false, true])
        #expect(batches.flatMap(\.3) == ["v0", "v1", "v2", "v0", "v1"])
        // A batch of the finished transaction's producer needs a new transaction.
        #expect(try await client.produce("t").0 == ErrorCode.invalidTxnState.rawValue)
    }

    /// An aborted transaction's batches stay in the log; read_committed Fetches report it in
    /// AbortedTransactions (from the first batch, for every fetch overlapping it) so consumers
    /// drop them; the next transaction of the producer is not reported.
    @Test func abortedTransactionsAreReportedToReadCommittedFetches() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t")
        var client = TransactionalClient(test)
        _ = try await client.initTransactions()
        _ = try await client.addPartitions("t", [0])
        #expect(try await client.produce("t", prefix: "a") == (0, 0))
        #expect(try await client.end(commit: false) == 0)
        _ = try await client.addPartitions("t", [0])
        #expect(try await client.produce("t", prefix: "c") == (0, 4))
        #expect(try await client.end(commit: true) == 0)
        let data = try await test.fetch("t", readCommitted: true)
        #expect(data.lastStableOffset == 8)
        #expect(data.abortedTransactions == [.init(producerId: client.producer.producerId, firstOffset: 0)])
        #expect(try test.batches(data).map(\.0) == [0, 3, 4, 7])
        #expect(try await test.fetch("t", offset: 3, readCommitted: true).abortedTransactions?.count == 1)
        #expect(try await test.fetch("t", offset: 4, readCommitted: true).abortedTransactions == [])
        // read_uncommitted responses carry no list at all.
        #expect(try await test.fetch("t", readCommitted: false).abortedTransactions == nil)
    }

    /// A second InitProducerId fences the first producer: its open transaction is aborted (the
    /// client retries on CONCURRENT_TRANSACTIONS), its batches are refused with
    /// INVALID_PRODUCER_EPOCH and its EndTxn with PRODUCER_FENCED (INVALID_PRODUCER_EPOCH before v2).
    @Test func aSecondProducerFencesTheFirst() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t")
        var zombie = TransactionalClient(test)
        _ = try await zombie.initTransactions()
        _ = try await zombie.addPartitions("t", [0])
        #expect(try await zombie.produce("t") == (0, 0))
        var successor = TransactionalClient(test)
        #expect(try await successor.initTransactions() == ErrorCode.concurrentTransactions.rawValue)
        await test.broker.transactionCoordinator.waitForMarkers(transactionalId: "tx")
        #expect(try await successor.initTransactions() == 0)
        #expect(successor.producer.producerEpoch == zombie.producer.producerEpoch + 2)
        #expect(try await test.fetch("t", readCommitted: true).abortedTransactions?.count == 1)
        #expect(try await zombie.produce("t").0 == ErrorCode.invalidProducerEpoch.rawValue)
        #expect(try await zombie.end(commit: true) == ErrorCode.producerFenced.rawValue)
        #expect(try await zombie.end(commit: true, version: 1) == ErrorCode.invalidProducerEpoch.rawValue)
        #expect(try await zombie.addPartitions("t", [0], version: 1) == [ErrorCode.invalidProducerEpoch.rawValue])
    }

    /// A transaction open past its timeout is aborted by the coordinator (manual clock), with an
    /// epoch bump that fences the producer; read_committed then reads past it.
    @Test func anOpenTransactionIsAbortedAtItsTimeout() async throws {
        let clock = ManualWallClock()
        let test = try await TestBroker.start { $0.clock = clock.read }
        try await test.createTopic("t")
        var client = TransactionalClient(test)
        _ = try await client.initTransactions(timeoutMs: 1_000)
        _ = try await client.addPartitions("t", [0])
        _ = try await client.produce("t")
        clock.advance(byMs: 1_000)
        #expect(test.broker.transactionCoordinator.tick().isEmpty)
        clock.advance(byMs: 1)
        for write in test.broker.transactionCoordinator.tick() { await write.value }
        await test.broker.transactionCoordinator.waitForMarkers(transactionalId: "tx")
        #expect(try await test.phase(of: "tx") == "CompleteAbort")
        let data = try await test.fetch("t", readCommitted: true)
        #expect(data.lastStableOffset == 4)
        #expect(data.abortedTransactions?.count == 1)
        #expect(try await client.end(commit: true) == ErrorCode.producerFenced.rawValue)
        #expect(try await client.produce("t").0 == ErrorCode.invalidProducerEpoch.rawValue)
    }

    /// TxnOffsetCommit needs the group in the transaction; its offsets are invisible to OffsetFetch
    /// (UNSTABLE_OFFSET_COMMIT with RequireStable) until the commit, and an abort discards them.
    @Test func transactionalOffsetsAreVisibleOnlyAfterTheCommit() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t")
        var client = TransactionalClient(test)
        _ = try await client.initTransactions()
        #expect(try await client.commitOffsets(group: "g", topic: "t", offset: 5) == ErrorCode.invalidTxnState.rawValue)
        #expect(try await client.addOffsets(group: "g") == 0)
        #expect(try await client.commitOffsets(group: "g", topic: "t", offset: 5) == 0)
        #expect(
            try await test.committedOffset(group: "g", topic: "t", requireStable: true) == (
                -1, ErrorCode.unstableOffsetCommit.rawValue
            )
        )
        #expect(try await test.committedOffset(group: "g", topic: "t", requireStable: false) == (-1, 0))
        #expect(try await client.end(commit: true) == 0)
        #expect(try await test.committedOffset(group: "g", topic: "t", requireStable: true) == (5, 0))
        _ = try await client.addOffsets(group: "g")
        #expect(try await client.commitOffsets(group: "g", topic: "t", offset: 9) == 0)
        #expect(try await client.end(commit: false) == 0)
        #expect(try await test.committedOffset(group: "g", topic: "t", requireStable: true) == (5, 0))
    }

    /// InitProducerId refuses a timeout above transaction.max.timeout.ms and an empty id; ListTransactions
    /// filters; DescribeProducers shows the producer's open transaction.
    @Test func errorsAndDescriptions() async throws {
        let test = try await TestBroker.start { $0.transactionMaxTimeoutMs = 5_000 }
        try await test.createTopic("t")
        var client = TransactionalClient(test)
        #expect(try await client.initTransactions(timeoutMs: 5_001) == ErrorCode.invalidTransactionTimeout.rawValue)
        #expect(try await client.initTransactions(timeoutMs: 5_000) == 0)
        _ = try await client.addPartitions("t", [0])
        _ = try await client.produce("t")
        #expect(try await client.addPartitions("missing", [0, 1]) == [3, 3])
        let listed = try await test.send(ListTransactionsRequest(stateFilters: ["Ongoing", "Bogus"]), version: 1)
        #expect(listed.transactionStates.map(\.transactionalId) == ["tx"])
        #expect(listed.unknownStateFilters == ["Bogus"])
        #expect(
            try await test.send(ListTransactionsRequest(stateFilters: ["Empty"]), version: 1).transactionStates.isEmpty
        )
        let described = try await test.send(DescribeTransactionsRequest(transactionalIds: ["tx", "nope"]), version: 0)
        #expect(described.transactionStates[0].topics == [.init(topic: "t", partitions: [0])])
        #expect(described.transactionStates[1].errorCode == ErrorCode.transactionalIdNotFound.rawValue)
        let producers = try await test.send(
            DescribeProducersRequest(topics: [.init(name: "t", partitionIndexes: [0])]),
            version: 0
        )
        let state = producers.topics[0].partitions[0].activeProducers
        #expect(state.map(\.producerId) == [client.producer.producerId])
        #expect(state.first?.currentTxnStartOffset == 0)
        #expect(state.first?.lastSequence == 2)
    }
}
