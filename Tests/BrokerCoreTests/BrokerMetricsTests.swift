import CoreMetrics
import MetricsTestKit
import Testing

@testable import BrokerCore
@testable import KafkaMessages
@testable import KafkaRecords

@Suite("The metrics facade and scrape-time observation")
struct BrokerMetricsTests {
    private func started(
        _ configure: (inout BrokerConfiguration) -> Void = { _ in }
    ) async throws -> (TestBroker, TestMetrics) {
        let metrics = TestMetrics()
        let broker = try await TestBroker.start(metrics: BrokerMetrics(factory: metrics), configure: configure)
        return (broker, metrics)
    }

    private func requests(_ metrics: TestMetrics, _ api: String, _ version: Int16) -> Int64 {
        metrics.counterTotal(
            label: BrokerMetrics.Name.requests,
            dimensions: [("api", api), ("version", String(version))]
        )
    }

    /// Requests are counted and timed by API and version, with their bytes both ways.
    @Test func requestsAreCountedByApiAndVersion() async throws {
        let (broker, metrics) = try await started()
        try await broker.createTopic("t")
        _ = try await broker.send(MetadataRequest(topics: [], allowAutoTopicCreation: false), version: 12)
        _ = try await broker.send(MetadataRequest(topics: [], allowAutoTopicCreation: false), version: 12)
        _ = try await broker.send(MetadataRequest(topics: nil), version: 4)
        #expect(requests(metrics, "Metadata", 12) == 2)
        #expect(requests(metrics, "Metadata", 4) == 1)
        #expect(requests(metrics, "CreateTopics", 7) == 1)
        let timers = metrics.timers(
            label: BrokerMetrics.Name.requestDuration,
            dimensions: [("api", "Metadata"), ("version", "12")]
        )
        #expect(timers.flatMap(\.values).count == 2)
        #expect(timers.flatMap(\.values).allSatisfy { $0 > 0 })
        #expect(
            metrics.counterTotal(
                label: BrokerMetrics.Name.requestBytes,
                dimensions: [("api", "Metadata"), ("version", "12")]
            ) > 0
        )
        #expect(
            metrics.counterTotal(
                label: BrokerMetrics.Name.responseBytes,
                dimensions: [("api", "Metadata"), ("version", "12")]
            ) > 0
        )
    }

    /// Error codes in responses are counted by API and Kafka's error name; successes are not.
    @Test func responseErrorsAreCountedByCode() async throws {
        let (broker, metrics) = try await started { $0.autoCreateTopics = false }
        try await broker.createTopic("t")
        let missing = try await broker.produce("nope", batch: makeBatch(count: 1))
        #expect(missing.errorCode == ErrorCode.unknownTopicOrPartition.rawValue)
        _ = try await broker.produce("t", batch: makeBatch(count: 1))
        _ = try await broker.fetch("t", offset: 99)
        #expect(
            metrics.counterTotal(
                label: BrokerMetrics.Name.requestErrors,
                dimensions: [("api", "Produce"), ("error", "UNKNOWN_TOPIC_OR_PARTITION")]
            ) == 1
        )
        #expect(
            metrics.counterTotal(
                label: BrokerMetrics.Name.requestErrors,
                dimensions: [("api", "Fetch"), ("error", "OFFSET_OUT_OF_RANGE")]
            ) == 1
        )
        #expect(metrics.counters(label: BrokerMetrics.Name.requestErrors).count == 2)
        #expect(requests(metrics, "Produce", 9) == 2)
    }

    /// A produce counts its accepted batches, records and bytes once; a refused batch counts nothing.
    @Test func produceCountsAcceptedBatchesRecordsAndBytes() async throws {
        let (broker, metrics) = try await started()
        try await broker.createTopic("t")
        let batch = makeBatch(count: 7)
        _ = try await broker.produce("t", batch: batch)
        var corrupt = makeBatch(count: 3)
        corrupt.setInteger(UInt8(0xFF), at: corrupt.readerIndex + 70)
        let refused = try await broker.produce("t", batch: corrupt)
        #expect(refused.errorCode == ErrorCode.corruptMessage.rawValue)
        #expect(metrics.counterTotal(label: BrokerMetrics.Name.produceBatches) == 1)
        #expect(metrics.counterTotal(label: BrokerMetrics.Name.produceRecords) == 7)
        #expect(metrics.counterTotal(label: BrokerMetrics.Name.produceBytes) == Int64(batch.readableBytes))
    }

    /// A produce with acks=0 is counted though it has no response.
    @Test func acksZeroProduceIsCounted() async throws {
        let (broker, metrics) = try await started()
        try await broker.createTopic("t")
        let frame = TestBroker.frame(
            ProduceRequest(
                acks: 0,
                timeoutMs: 1000,
                topicData: [.init(name: "t", partitionData: [.init(index: 0, records: makeBatch(count: 2))])]
            ),
            version: 9,
            correlationId: 5
        )
        let outcome = await broker.send(frame: frame)
        guard case .noResponse = outcome else {
            Issue.record("expected no response, got \(outcome)")
            return
        }
        #expect(requests(metrics, "Produce", 9) == 1)
        #expect(metrics.counterTotal(label: BrokerMetrics.Name.produceRecords) == 2)
    }

    /// Fetch counts the record bytes it serves and how long a long poll waited.
    @Test func fetchCountsBytesAndWaits() async throws {
        let (broker, metrics) = try await started()
        try await broker.createTopic("t")
        let batch = makeBatch(count: 4)
        _ = try await broker.produce("t", batch: batch)
        _ = try await broker.fetch("t", offset: 0)
        #expect(metrics.counterTotal(label: BrokerMetrics.Name.fetchBytes) == Int64(batch.readableBytes))
        _ = try await broker.fetch("t", offset: 4, maxWaitMs: 30)
        let waits = metrics.timers(label: BrokerMetrics.Name.fetchWait).flatMap(\.values)
        #expect(waits.count == 1)
        #expect((waits.first ?? 0) >= 20_000_000)
    }

    /// Partition observation reads the same offsets ListOffsets answers.
    @Test func partitionObservationMatchesListOffsets() async throws {
        let (broker, _) = try await started()
        try await broker.createTopic("t", partitions: 2)
        _ = try await broker.produce("t", partition: 1, batch: makeBatch(count: 5))
        let observed = broker.broker.observePartitions()
        #expect(observed.map(\.partition) == [0, 1])
        let latest = try await broker.listOffset("t", partition: 1, timestamp: -1)
        let earliest = try await broker.listOffset("t", partition: 1, timestamp: -2)
        #expect(observed[1].highWatermark == latest.offset)
        #expect(observed[1].logStartOffset == earliest.offset)
        #expect(observed[1].logEndOffset == 5)
        #expect(observed[1].sizeBytes == UInt64(makeBatch(count: 5).readableBytes))
        #expect(observed[0].highWatermark == 0)
    }

    /// A group's lag is the high watermark minus its committed offset, per partition.
    @Test func groupObservationComputesLag() async throws {
        let (broker, _) = try await started()
        try await broker.createTopic("t")
        _ = try await broker.produce("t", batch: makeBatch(count: 10))
        #expect(try await broker.commit(group: "readers", [("t", 0, 4)]) == [.none])
        let groups = broker.broker.observeGroups()
        let readers = try #require(groups.first { $0.groupId == "readers" })
        #expect(readers.committed == [.init(topic: "t", partition: 0, committedOffset: 4, lag: 6)])
        #expect(readers.state == "Empty")
        #expect(readers.memberCount == 0)
    }
}
