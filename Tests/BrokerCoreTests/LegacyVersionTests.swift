import NIOCore
import Testing

@testable import BrokerCore
@testable import KafkaMessages
@testable import KafkaRecords

/// A magic 0/1 message set of `values` (keys "k0", "k1", …), one wrapper of `codec` when compressed.
func legacyMessageSet(
    _ values: [String],
    magic: Int8,
    codec: CompressionCodec = .none,
    timestamp: Int64 = 1_700_000_000_000
)
    throws -> ByteBuffer
{
    var builder = LegacyMessageSetBuilder(magic: magic, compression: codec)
    for (i, value) in values.enumerated() {
        builder.append(
            offset: Int64(i),
            timestamp: magic == 0 ? -1 : timestamp + Int64(i),
            key: ByteBuffer(string: "k\(i)"),
            value: ByteBuffer(string: value)
        )
    }
    return try builder.build()
}

extension TestBroker {
    /// Fetches at an old (v0-3) or new version and returns the partition's answer.
    func fetchMessages(
        _ topic: String,
        offset: Int64,
        partitionMaxBytes: Int32 = 1 << 20,
        version: Int16
    ) async throws
        -> FetchResponse.PartitionData
    {
        try await fetch(topic, offset: offset, partitionMaxBytes: partitionMaxBytes, version: version)
    }
}

@Suite("Produce v0-2 and Fetch v0-3 (message sets), Fetch v13+ (topic ids)")
struct LegacyVersionTests {
    /// Produce v0, v1 and v2 store a message set as one v2 batch at the broker's offsets; a v12
    /// reader sees every message with its key, value and (magic 1) timestamp.
    @Test(arguments: [(Int16(0), Int8(0)), (1, 0), (2, 1)], [CompressionCodec.none, .gzip, .snappy, .lz4])
    func oldProduceIsUpConverted(_ versionAndMagic: (Int16, Int8), codec: CompressionCodec) async throws {
        let (version, magic) = versionAndMagic
        let test = try await TestBroker.start()
        try await test.createTopic("t")
        #expect(
            try await test.produce(
                "t",
                batch: legacyMessageSet(["a", "b"], magic: magic, codec: codec),
                version: version
            ) == (0, 0)
        )
        #expect(
            try await test.produce("t", batch: legacyMessageSet(["c"], magic: magic, codec: codec), version: version)
                == (0, 2)
        )
        let records = try await test.consumeAll("t")
        #expect(records.map(\.0) == [0, 1, 2])
        #expect(records.map { value($0.1) } == ["a", "b", "c"])
        #expect(records.map { $0.1.key.map { String(buffer: $0) } } == ["k0", "k1", "k0"])
        let timestamps: [Int64] =
            magic == 0 ? [-1, -1, -1] : [1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_000]
        #expect(records.map(\.1.timestamp) == timestamps)
        let stored = try #require(try await test.fetch("t", offset: 0).records)
        let header = try RecordBatchHeader(parsing: try #require(RecordBatchReader.batches(in: stored).first))
        #expect(header.compression == codec)
        #expect(header.producerId == -1)
    }

    /// A topic's `compression.type` applies to up-converted sets; Produce v2 answers the
    /// LogAppendTime it stamped.
    @Test func upConversionAppliesTopicCompressionAndLogAppendTime() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic(
            "t",
            configs: ["compression.type": "lz4", "message.timestamp.type": "LogAppendTime"]
        )
        let before = test.broker.nowMs
        let response = try await test.send(
            ProduceRequest(
                acks: 1,
                timeoutMs: 1000,
                topicData: [
                    .init(name: "t", partitionData: [.init(index: 0, records: try legacyMessageSet(["x"], magic: 1))])
                ]
            ),
            version: 2
        )
        let answer = response.responses[0].partitionResponses[0]
        #expect(answer.errorCode == 0)
        #expect(answer.logAppendTimeMs >= before)
        let stored = try #require(try await test.fetch("t", offset: 0).records)
        let header = try RecordBatchHeader(parsing: try #require(RecordBatchReader.batches(in: stored).first))
        #expect(header.compression == .lz4)
        #expect(header.timestampTypeIsLogAppendTime)
    }

    /// A corrupt message set (bad CRC, truncated) is refused CORRUPT_MESSAGE for its partition only.
    @Test func corruptMessageSetFailsItsPartitionOnly() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t", partitions: 3)
        var badCrc = try legacyMessageSet(["a"], magic: 1)
        badCrc.setInteger(badCrc.getInteger(at: 12, as: UInt32.self)! ^ 1, at: 12)
        var truncated = try legacyMessageSet(["a", "b"], magic: 0)
        truncated.moveWriterIndex(to: truncated.writerIndex - 3)
        let response = try await test.send(
            ProduceRequest(
                acks: -1,
                timeoutMs: 1000,
                topicData: [
                    .init(
                        name: "t",
                        partitionData: [
                            .init(index: 0, records: badCrc),
                            .init(index: 1, records: try legacyMessageSet(["ok"], magic: 1)),
                            .init(index: 2, records: truncated),
                        ]
                    )
                ]
            ),
            version: 2
        )
        #expect(response.responses[0].partitionResponses.map(\.errorCode) == [2, 0, 2])
        #expect(try await test.consumeAll("t", partition: 1).map { value($0.1) } == ["ok"])
    }

    /// Produce v3+ stores what the producer sent; a message set there is not a valid batch.
    @Test func messageSetInProduceV3IsRefused() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t")
        let (code, _) = try await test.produce("t", batch: legacyMessageSet(["a"], magic: 1), version: 3)
        #expect(code != 0)
        #expect(try await test.consumeAll("t").isEmpty)
    }

    /// Fetch v0-1 answer magic 0 and v2-3 magic 1 message sets of the stored batches, from the
    /// fetch offset, compressed batches as wrappers of their codec; the log keeps its v2 batches.
    @Test(arguments: [Int16(0), 1, 2, 3], [CompressionCodec.none, .gzip, .lz4])
    func oldFetchIsDownConverted(version: Int16, codec: CompressionCodec) async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t")
        #expect(try await test.produce("t", batch: makeBatch(count: 3, prefix: "a", compression: codec)) == (0, 0))
        #expect(try await test.produce("t", batch: makeBatch(count: 2, prefix: "b", compression: codec)) == (0, 3))
        let data = try await test.fetchMessages("t", offset: 1, version: version)
        #expect(data.errorCode == 0)
        #expect(data.highWatermark == 5)
        let set = try #require(data.records)
        #expect(LegacyMessageSet.magic(of: set) == (version <= 1 ? 0 : 1))
        let messages = try LegacyMessageSet.contents(of: set, maxDecompressedBytes: 1 << 20).messages
        // A compressed batch goes out whole; the reader skips what precedes its offset.
        let wanted = messages.filter { $0.offset >= 1 }
        #expect(wanted.map(\.offset) == [1, 2, 3, 4])
        #expect(wanted.map { $0.value.map { String(buffer: $0) } } == ["a1", "a2", "b0", "b1"])
        #expect(wanted.allSatisfy { $0.timestamp == (version <= 1 ? -1 : $0.timestamp) })
        if version >= 2 { #expect(wanted.first?.timestamp == 1_700_000_000_001) }
        let stored = try #require(try await test.fetch("t", offset: 0).records)
        #expect(RecordBatchReader.batches(in: stored).count == 2)
    }

    /// The per-partition byte limit bounds a down-converted answer, but the first message
    /// always goes out so the reader makes progress.
    @Test func downConversionIsBoundedByTheByteLimit() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t")
        #expect(try await test.produce("t", batch: makeBatch(count: 10, prefix: "value-")) == (0, 0))
        let one = try await test.fetchMessages("t", offset: 0, partitionMaxBytes: 1, version: 2)
        #expect(
            try LegacyMessageSet.contents(of: #require(one.records), maxDecompressedBytes: 1 << 20).messages.count == 1
        )
        let size = LegacyMessageSetBuilder.messageByteCount(magic: 1, keyBytes: 2, valueBytes: 7)
        let three = try await test.fetchMessages("t", offset: 0, partitionMaxBytes: Int32(3 * size + 5), version: 3)
        let messages = try LegacyMessageSet.contents(of: #require(three.records), maxDecompressedBytes: 1 << 20)
            .messages
        #expect(messages.map(\.offset) == [0, 1, 2])
    }

    /// zstd cannot be carried by the old formats: UNSUPPORTED_COMPRESSION_TYPE (76).
    @Test func zstdCannotBeDownConverted() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t")
        #expect(try await test.produce("t", batch: makeBatch(count: 2, compression: .zstd)) == (0, 0))
        #expect(try await test.fetchMessages("t", offset: 0, version: 1).errorCode == 76)
    }

    /// What a v2 producer writes, a v2 reader reads back unchanged.
    @Test func oldProducerAndOldReaderAgree() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t")
        #expect(
            try await test.produce("t", batch: legacyMessageSet(["p", "q"], magic: 1, codec: .snappy), version: 2) == (
                0, 0
            )
        )
        let data = try await test.fetchMessages("t", offset: 0, version: 2)
        let messages = try LegacyMessageSet.contents(of: #require(data.records), maxDecompressedBytes: 1 << 20).messages
        #expect(messages.map { $0.value.map { String(buffer: $0) } } == ["p", "q"])
        #expect(messages.map(\.timestamp) == [1_700_000_000_000, 1_700_000_000_001])
    }

    /// Fetch v13+ names topics by id and answers with it; an unknown id is UNKNOWN_TOPIC_ID (100).
    @Test(arguments: [Int16(13), 14, 15, 16])
    func fetchByTopicId(version: Int16) async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t")
        #expect(try await test.produce("t", batch: makeBatch(count: 2)) == (0, 0))
        let id = try #require(test.broker.registry.topic(named: "t")?.id)
        func request(_ topicId: KafkaUUID) -> FetchRequest {
            var request = FetchRequest(
                maxWaitMs: 0,
                minBytes: 1,
                maxBytes: 1 << 20,
                topics: [
                    .init(
                        topicId: topicId,
                        partitions: [.init(partition: 0, fetchOffset: 0, partitionMaxBytes: 1 << 20)]
                    )
                ]
            )
            if version >= 15 { request.replicaState = .init(replicaId: -1, replicaEpoch: -1) }
            return request
        }
        let known = try await test.send(request(id), version: version)
        #expect(known.responses.map(\.topicId) == [id])
        #expect(known.responses[0].partitions[0].errorCode == 0)
        #expect(known.responses[0].partitions[0].highWatermark == 2)
        #expect(RecordBatchReader.batches(in: try #require(known.responses[0].partitions[0].records)).count == 1)
        let unknown = try await test.send(
            request(KafkaUUID(mostSignificantBits: 1, leastSignificantBits: 2)),
            version: version
        )
        #expect(unknown.responses[0].partitions[0].errorCode == ErrorCode.unknownTopicId.rawValue)
    }
}
