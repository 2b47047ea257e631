import NIOCore
import StorageHost
import Testing

@testable import BrokerCore
@testable import KafkaMessages
@testable import KafkaRecords

private let codecs: [CompressionCodec] = [.none, .gzip, .snappy, .lz4, .zstd]
private let topicTypes = ["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]

/// The codec a topic's compression.type stores batches with (nil: the producer's).
private func storedCodec(_ type: String) -> CompressionCodec? {
    switch type {
    case "uncompressed": CompressionCodec.none
    case "gzip": .gzip
    case "snappy": .snappy
    case "lz4": .lz4
    case "zstd": .zstd
    default: nil
    }
}

extension TestBroker {
    fileprivate func produceResponse(
        _ topic: String,
        batch: ByteBuffer
    ) async throws -> ProduceResponse.PartitionProduceResponse {
        try await send(
            ProduceRequest(
                acks: -1,
                timeoutMs: 1000,
                topicData: [.init(name: topic, partitionData: [.init(index: 0, records: batch)])]
            ),
            version: 9
        ).responses[0].partitionResponses[0]
    }

    /// The stored batches of partition 0, as Fetch returns them.
    fileprivate func storedBatches(_ topic: String) async throws -> [ByteBuffer] {
        let data = try await fetch(topic, offset: 0)
        return RecordBatchReader.batches(in: try #require(data.records))
    }
}

@Suite("Topic compression.type and message.timestamp.type")
struct TopicCompressionTests {
    /// Every compression.type with every producer codec: consumers read the same records (CRC
    /// checked) in the topic's codec; when the codecs match, the producer's bytes are stored.
    @Test(arguments: topicTypes, codecs)
    func topicCodecAppliesToEveryProducerCodec(type: String, producer: CompressionCodec) async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t", configs: ["compression.type": type])
        let sent = makeBatch(count: 50, compression: producer)
        let answer = try await test.produceResponse("t", batch: sent)
        #expect(answer.errorCode == 0, "\(answer.errorMessage ?? "")")
        #expect(answer.logAppendTimeMs == -1)
        let stored = try #require(try await test.storedBatches("t").first)
        let target = storedCodec(type) ?? producer
        #expect(try RecordBatchHeader(parsing: stored).compression == target)
        if target == producer {
            #expect(
                stored.getBytes(at: stored.readerIndex + 16, length: stored.readableBytes - 16)
                    == sent.getBytes(at: sent.readerIndex + 16, length: sent.readableBytes - 16)
            )
        }
        let consumed = try await test.consumeAll("t")
        #expect(consumed.map { value($0.1) } == (0..<50).map { "m\($0)" })
        #expect(consumed.map(\.0) == Array(0..<50))
    }

    /// An idempotent producer's retry of a recompressed batch is recognized (the new batch keeps
    /// its producer id, epoch and sequence) and stored once.
    @Test func recompressedIdempotentRetryIsStoredOnce() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t", configs: ["compression.type": "lz4"])
        let batch = makeBatch(count: 5, producerId: 9, producerEpoch: 0, baseSequence: 0, compression: .gzip)
        #expect(try await test.produce("t", batch: batch) == (0, 0))
        #expect(try await test.produce("t", batch: batch) == (0, 0))
        let next = makeBatch(count: 5, producerId: 9, producerEpoch: 0, baseSequence: 5)
        #expect(try await test.produce("t", batch: next) == (0, 5))
        #expect(try await test.consumeAll("t").count == 10)
    }

    /// LogAppendTime: the broker stamps each batch with its clock (timestamp type and max
    /// timestamp, CRC recomputed), answers log_append_time_ms, and ignores the timestamp bounds.
    @Test(arguments: ["producer", "zstd"])
    func logAppendTimeStampsBatches(type: String) async throws {
        let test = try await TestBroker.start { $0.clock = { 1_900_000_000_000 } }
        try await test.createTopic(
            "t",
            configs: [
                "message.timestamp.type": "LogAppendTime", "message.timestamp.before.max.ms": "1",
                "compression.type": type,
            ]
        )
        let answer = try await test.produceResponse("t", batch: makeBatch(count: 3, timestamp: 5, compression: .gzip))
        #expect(answer.errorCode == 0, "\(answer.errorMessage ?? "")")
        #expect(answer.logAppendTimeMs == 1_900_000_000_000)
        let stored = try #require(try await test.storedBatches("t").first)
        let header = try RecordBatchValidator.validateStoredBatch(stored)
        #expect(header.timestampTypeIsLogAppendTime)
        #expect(header.maxTimestamp == 1_900_000_000_000)
        let latest = try await test.listOffset("t", timestamp: -3)
        #expect(latest.timestamp == 1_900_000_000_000)
        // Offsets by time follow the append time, not the producer's timestamps.
        #expect(try await test.listOffset("t", timestamp: 1_899_999_999_000).offset == 0)
        #expect(try await test.listOffset("t", timestamp: 1_900_000_000_001).offset == -1)
    }

    /// A batch with one record out of the timestamp bounds is refused with its record named.
    @Test func oneBadRecordGetsItsRecordError() async throws {
        let test = try await TestBroker.start { $0.clock = { 1_700_000_000_000 } }
        try await test.createTopic("t", configs: ["message.timestamp.before.max.ms": "60000"])
        var builder = RecordBatchBuilder()
        builder.append(key: nil, value: ByteBuffer(string: "ok"), timestamp: 1_700_000_000_000)
        builder.append(key: nil, value: ByteBuffer(string: "old"), timestamp: 1_600_000_000_000)
        builder.append(key: nil, value: ByteBuffer(string: "ok"), timestamp: 1_700_000_000_000)
        let answer = try await test.produceResponse("t", batch: builder.build())
        #expect(answer.errorCode == ErrorCode.invalidTimestamp.rawValue)
        #expect(answer.errorMessage == "One or more records have been rejected due to invalid timestamp")
        #expect(answer.recordErrors.map(\.batchIndex) == [1])
        #expect(
            answer.recordErrors.first?.batchIndexErrorMessage?.hasPrefix("Timestamp 1600000000000 of message") == true
        )
        // A whole-batch error carries no record errors.
        let corrupt = try await test.produceResponse("t", batch: ByteBuffer(bytes: [0, 1, 2]))
        #expect(corrupt.errorCode != 0)
        #expect(corrupt.recordErrors.isEmpty)
    }

    /// A dynamic broker compression.type reaches topics without their own.
    @Test func brokerCompressionTypeIsTheTopicDefault() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t")
        let result = try await test.send(
            IncrementalAlterConfigsRequest(resources: [
                .init(
                    resourceType: 4,
                    resourceName: "",
                    configs: [.init(name: "compression.type", configOperation: 0, value: "snappy")]
                )
            ]),
            version: 1
        )
        #expect(result.responses[0].errorCode == 0, "\(result.responses[0].errorMessage ?? "")")
        #expect(try await test.produce("t", batch: makeBatch(count: 4)).errorCode == 0)
        let stored = try #require(try await test.storedBatches("t").first)
        #expect(try RecordBatchHeader(parsing: stored).compression == .snappy)
    }

    /// Kafka's internal topic names are marked internal and refuse client produces.
    @Test func internalTopicsAreMarked() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("__consumer_offsets")
        try await test.createTopic("plain")
        let meta = try await test.send(MetadataRequest(topics: nil), version: 12)
        #expect(meta.topics.map(\.isInternal) == [true, false])
        #expect(
            try await test.produce("__consumer_offsets", batch: makeBatch(count: 1)).errorCode
                == ErrorCode.invalidTopicException.rawValue
        )
    }
}
