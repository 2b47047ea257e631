import Foundation
import NIOCore
import Testing

@testable import KafkaRecords

/// What make_golden_batches.py says every golden batch holds.
struct GoldenExpectation: Decodable {
    struct Header: Decodable {
        var key: String
        var value: String?
    }
    struct Entry: Decodable {
        var timestamp: Int64
        var key: String?
        var value: String?
        var headers: [Header]
    }
    var generator: String
    var producerId: Int64
    var producerEpoch: Int16
    var baseSequence: Int32
    var records: [Entry]
}

func goldenURL(_ name: String, _ ext: String) throws -> URL {
    try #require(
        Bundle.module.url(forResource: name, withExtension: ext, subdirectory: "Golden"),
        "Golden/\(name).\(ext)"
    )
}

func fromHex(_ text: String) throws -> [UInt8] {
    let digits = Array(text.trimmingCharacters(in: .whitespacesAndNewlines).utf8)
    try #require(digits.count % 2 == 0)
    return try stride(from: 0, to: digits.count, by: 2).map { index in
        try #require(UInt8(String(decoding: digits[index..<index + 2], as: UTF8.self), radix: 16))
    }
}

func loadGoldenBatch(_ name: String) throws -> ByteBuffer {
    ByteBuffer(bytes: try fromHex(String(contentsOf: try goldenURL(name, "hex"), encoding: .utf8)))
}

func expectedRecords() throws -> (GoldenExpectation, [Record]) {
    let expectation = try JSONDecoder().decode(
        GoldenExpectation.self,
        from: Data(contentsOf: try goldenURL("expected_records", "json"))
    )
    let records = try expectation.records.enumerated().map { index, entry in
        Record(
            offsetDelta: Int32(index),
            timestamp: entry.timestamp,
            key: try entry.key.map { ByteBuffer(bytes: try fromHex($0)) },
            value: try entry.value.map { ByteBuffer(bytes: try fromHex($0)) },
            headers: try entry.headers.map {
                RecordHeader(key: $0.key, value: try $0.value.map { ByteBuffer(bytes: try fromHex($0)) })
            }
        )
    }
    return (expectation, records)
}

@Suite("Golden batches from kafka-python's encoder")
struct GoldenBatchTests {
    /// Each batch kafka-python 3.0 builds (every codec, raw and xerial snappy, zstd without content size) validates
    /// and reads back exactly the records the script wrote.
    @Test(
        "a real client's batch validates and reads back",
        arguments: [
            ("none", CompressionCodec.none), ("gzip", .gzip), ("snappy", .snappy), ("snappy-raw", .snappy),
            ("lz4", .lz4), ("zstd", .zstd), ("zstd-no-content-size", .zstd),
        ] as [(String, CompressionCodec)]
    )
    func goldenBatch(name: String, codec: CompressionCodec) throws {
        let batch = try loadGoldenBatch(name)
        let (expectation, expected) = try expectedRecords()
        #expect(expectation.generator.hasPrefix("kafka-python"))

        let validated = try RecordBatchValidator.validateProduceRecords(batch, policy: permissivePolicy)
        #expect(validated.header.compression == codec)
        #expect(validated.header.producerId == expectation.producerId)
        #expect(validated.header.producerEpoch == expectation.producerEpoch)
        #expect(validated.header.baseSequence == expectation.baseSequence)
        #expect(validated.recordCount == Int32(expected.count))
        let maxTimestamp = expected.map(\.timestamp).max()!
        #expect(validated.maxTimestamp == maxTimestamp)
        #expect(validated.header.maxTimestamp == maxTimestamp, "kafka-python's header agrees with the records")
        #expect(validated.offsetDeltaOfMaxTimestamp == Int32(expected.firstIndex { $0.timestamp == maxTimestamp }!))

        #expect(try RecordBatchReader.records(of: batch, maxDecompressedBytes: 1 << 20) == expected)

        // Offsets assigned by the broker leave the client's CRC intact.
        var stored = batch
        RecordBatchWriter.assignOffsets(&stored, baseOffset: 1000, partitionLeaderEpoch: 7)
        #expect(try RecordBatchValidator.validateStoredBatch(stored).crc == validated.header.crc)
        let minimum = expected.map(\.timestamp).min()!
        let firstAtMinimum = expected.firstIndex { $0.timestamp >= minimum }!
        #expect(
            try RecordBatchReader.firstOffset(atOrAfterTimestamp: minimum, in: stored, maxDecompressedBytes: 1 << 20)
                == 1000 + Int64(firstAtMinimum)
        )
        let firstAtMaximum = expected.firstIndex { $0.timestamp >= maxTimestamp }!
        #expect(
            try RecordBatchReader.firstOffset(
                atOrAfterTimestamp: maxTimestamp,
                in: stored,
                maxDecompressedBytes: 1 << 20
            ) == 1000 + Int64(firstAtMaximum)
        )
        #expect(
            try RecordBatchReader.firstOffset(
                atOrAfterTimestamp: maxTimestamp + 1,
                in: stored,
                maxDecompressedBytes: 1 << 20
            ) == nil
        )
    }

    /// Our builder's records, compressed by our codecs, are read identically to the client's (same content).
    @Test("our builder encodes the golden records byte-identically when uncompressed")
    func builderMatchesClient() throws {
        let (expectation, expected) = try expectedRecords()
        var builder = RecordBatchBuilder(
            baseOffset: 0,
            partitionLeaderEpoch: 0,
            producerId: expectation.producerId,
            producerEpoch: expectation.producerEpoch,
            baseSequence: expectation.baseSequence
        )
        for record in expected { builder.append(record) }
        #expect(bytes(of: builder.build()) == bytes(of: try loadGoldenBatch("none")))
    }
}
