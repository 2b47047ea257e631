import NIOCore
import Testing

@testable import KafkaRecords

/// The codecs the old message formats carry (zstd came with magic 2, KIP-110).
let legacyCodecs: [CompressionCodec] = [.none, .gzip, .snappy, .lz4]

/// A magic 0 message (offset 5, key "k", value "hello") built by hand from Kafka's `LegacyRecord` layout with
/// Python's `zlib.crc32`.
let goldenMagic0: [UInt8] = [
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x14, 0xa4, 0xcd, 0xab, 0x3a, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x01, 0x6b, 0x00, 0x00, 0x00, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
]

/// A magic 1 message (offset 7, CreateTime 1700000000000, null key, value "v1"), built the same way.
let goldenMagic1: [UInt8] = [
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x18, 0x6a, 0x55, 0x00, 0xfb, 0x01, 0x00, 0x00,
    0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x02, 0x76, 0x31,
]

/// One random message: key and value each null, empty or a few random bytes; a CreateTime around 2023.
struct LegacySample: Equatable {
    var offset: Int64
    var timestamp: Int64
    var key: ByteBuffer?
    var value: ByteBuffer?

    static func random(count: Int, firstOffset: Int64, using generator: inout SplitMix64) -> [LegacySample] {
        func field() -> ByteBuffer? {
            switch Int.random(in: 0..<6, using: &generator) {
            case 0: return nil
            case 1: return ByteBuffer()
            default:
                let length = Int.random(in: 1...300, using: &generator)
                return ByteBuffer(bytes: (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) })
            }
        }
        var offset = firstOffset
        return (0..<count).map { _ in
            // Offsets grow, with the gaps compaction leaves.
            offset += Int64.random(in: 1...3, using: &generator)
            return LegacySample(
                offset: offset,
                timestamp: 1_700_000_000_000 + Int64.random(in: -5_000...5_000, using: &generator),
                key: field(),
                value: field()
            )
        }
    }
}

/// A message set of `samples`: one plain message each, or one wrapper of `codec` per `wrapperSize` messages.
func legacySet(
    _ samples: [LegacySample],
    magic: Int8,
    codec: CompressionCodec,
    wrapperSize: Int = .max
) throws
    -> ByteBuffer
{
    var set = ByteBuffer()
    var index = 0
    while index < samples.count {
        let chunk = samples[index..<min(samples.count, index + (codec == .none ? samples.count : wrapperSize))]
        var builder = LegacyMessageSetBuilder(magic: magic, compression: codec)
        for sample in chunk {
            builder.append(offset: sample.offset, timestamp: sample.timestamp, key: sample.key, value: sample.value)
        }
        var built = try builder.build()
        set.writeBuffer(&built)
        index += chunk.count
    }
    return set
}

/// Expects `body` to throw a RecordBatchError with Kafka error `code`.
func expectError<T>(
    code: Int16,
    _ comment: Comment? = nil,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws(RecordBatchError) -> T
) {
    do {
        _ = try body()
        Issue.record(
            "expected error \(code), got success \(comment.map { "— \($0)" } ?? "")",
            sourceLocation: sourceLocation
        )
    } catch {
        #expect(error.kafkaErrorCode == code, "expected \(code), got \(error)", sourceLocation: sourceLocation)
    }
}

@Suite("Magic 0 and 1 message sets")
struct LegacyMessageSetTests {
    @Test("hand-built magic 0 and 1 messages parse, and the builder writes the same bytes")
    func goldenMessages() throws {
        let set = buffer(goldenMagic0 + goldenMagic1)
        let contents = try LegacyMessageSet.contents(of: set, maxDecompressedBytes: 1 << 20)
        #expect(
            contents.messages == [
                LegacyMessage(offset: 5, magic: 0, timestamp: -1, key: buffer("k"), value: buffer("hello")),
                LegacyMessage(offset: 7, magic: 1, timestamp: 1_700_000_000_000, key: nil, value: buffer("v1")),
            ]
        )
        #expect(contents.sourceCodec == .none)
        #expect(contents.largestMessageBytes == goldenMagic1.count)

        var magic0 = LegacyMessageSetBuilder(magic: 0)
        magic0.append(offset: 5, timestamp: 123, key: buffer("k"), value: buffer("hello"))
        #expect(bytes(of: try magic0.build()) == goldenMagic0)
        var magic1 = LegacyMessageSetBuilder(magic: 1)
        magic1.append(offset: 7, timestamp: 1_700_000_000_000, key: nil, value: buffer("v1"))
        #expect(bytes(of: try magic1.build()) == goldenMagic1)
    }

    @Test("a flipped byte fails the CRC-32 with CORRUPT_MESSAGE")
    func corruptCRC() {
        var corrupted = goldenMagic1
        corrupted[corrupted.count - 1] ^= 0x01
        expectError(code: 2) { () throws(RecordBatchError) in
            try LegacyMessageSet.contents(of: buffer(corrupted), maxDecompressedBytes: 1 << 20)
        }
    }

    @Test("a truncated trailing message is an error, or skipped when a partial one is allowed (Fetch)")
    func partialTrailingMessage() throws {
        let set = buffer(goldenMagic0 + goldenMagic1.prefix(20))
        expectError(code: 2) { () throws(RecordBatchError) in
            try LegacyMessageSet.contents(of: set, maxDecompressedBytes: 1 << 20)
        }
        let contents = try LegacyMessageSet.contents(
            of: set,
            maxDecompressedBytes: 1 << 20,
            allowsPartialTrailingMessage: true
        )
        #expect(contents.messages.map(\.offset) == [5])
    }

    @Test("magic 2 inside a message set, zstd's codec id, and a wrapper inside a wrapper are rejected")
    func invalidShapes() throws {
        var magic2 = goldenMagic1
        magic2[LegacyLayout.magic] = 2
        expectError(code: 87) { () throws(RecordBatchError) in
            try LegacyMessageSet.contents(of: buffer(magic2), maxDecompressedBytes: 1 << 20)
        }

        var zstd = ByteBuffer()
        LegacyMessageSetBuilder.write(
            &zstd,
            offset: 0,
            magic: 1,
            attributes: 4,
            timestamp: 0,
            key: nil,
            value: buffer("x")
        )
        expectError(code: 2) { () throws(RecordBatchError) in
            try LegacyMessageSet.contents(of: zstd, maxDecompressedBytes: 1 << 20)
        }

        var inner = LegacyMessageSetBuilder(magic: 1, compression: .gzip)
        inner.append(offset: 0, timestamp: 0, key: nil, value: buffer("x"))
        let innerWrapper = try inner.build()
        let doubled = try Compression.compress(innerWrapper, codec: .gzip)
        var outer = ByteBuffer()
        LegacyMessageSetBuilder.write(
            &outer,
            offset: 0,
            magic: 1,
            attributes: 1,
            timestamp: 0,
            key: nil,
            value: doubled
        )
        expectError(code: 87) { () throws(RecordBatchError) in
            try LegacyMessageSet.contents(of: outer, maxDecompressedBytes: 1 << 20)
        }
    }

    @Test("wrappers inflate within the decompression limit")
    func decompressionLimit() throws {
        let samples = (0..<50).map {
            LegacySample(offset: Int64($0), timestamp: 0, key: nil, value: buffer(String(repeating: "z", count: 1000)))
        }
        let set = try legacySet(samples, magic: 1, codec: .gzip)
        #expect(set.readableBytes < 2000)
        expectError(code: 2) { () throws(RecordBatchError) in
            try LegacyMessageSet.contents(of: set, maxDecompressedBytes: 10_000)
        }
        #expect(try LegacyMessageSet.contents(of: set, maxDecompressedBytes: 1 << 20).messages.count == 50)
    }

    /// KAFKA-3160: a magic 0 lz4 frame carries the header checksum over the magic number and the descriptor.
    @Test("magic 0 lz4 writes Kafka's broken frame header checksum and reads either checksum")
    func magic0LZ4Quirk() throws {
        let samples = [LegacySample(offset: 3, timestamp: -1, key: buffer("a"), value: buffer("b"))]
        let magic0 = try legacySet(samples, magic: 0, codec: .lz4)
        let magic1 = try legacySet(samples, magic: 1, codec: .lz4)
        let value0 = try #require(
            try LegacyMessageSet.nextMessage(in: magic0, at: 0, end: magic0.writerIndex)?.decoded.value
        )
        let value1 = try #require(
            try LegacyMessageSet.nextMessage(in: magic1, at: 0, end: magic1.writerIndex)?.decoded.value
        )
        // Kafka's MessageCompressionTest.testLZ4FramingV0 header, and the standard one.
        #expect(Array(bytes(of: value0).prefix(7)) == [0x04, 0x22, 0x4D, 0x18, 0x60, 0x40, 0x1A])
        #expect(Array(bytes(of: value1).prefix(7)) == [0x04, 0x22, 0x4D, 0x18, 0x60, 0x40, 0x82])
        // A standard reader rejects the broken checksum: the quirk is really there.
        expectError(code: 2) { () throws(RecordBatchError) in
            try Compression.decompress(value0, codec: .lz4, limit: 1 << 20)
        }
        for set in [magic0, magic1] {
            let contents = try LegacyMessageSet.contents(of: set, maxDecompressedBytes: 1 << 20)
            #expect(contents.messages.map(\.key) == [buffer("a")])
            #expect(contents.messages.map(\.offset) == [3])
        }
        // A magic 0 wrapper with the correct checksum (as newer clients write it) reads too.
        var standard = value0
        standard.setInteger(UInt8(0x82), at: standard.readerIndex + 6)
        var fixed = ByteBuffer()
        LegacyMessageSetBuilder.write(
            &fixed,
            offset: 3,
            magic: 0,
            attributes: 3,
            timestamp: -1,
            key: nil,
            value: standard
        )
        #expect(
            try LegacyMessageSet.contents(of: fixed, maxDecompressedBytes: 1 << 20).messages.map(\.value) == [
                buffer("b")
            ]
        )
    }

    @Test("a magic 1 LogAppendTime wrapper gives its timestamp to every inner message")
    func logAppendTimeWrapper() throws {
        var builder = LegacyMessageSetBuilder(magic: 1, compression: .snappy, timestampTypeIsLogAppendTime: true)
        builder.append(offset: 10, timestamp: 500, key: nil, value: buffer("x"))
        builder.append(offset: 11, timestamp: 500, key: nil, value: buffer("y"))
        let contents = try LegacyMessageSet.contents(of: try builder.build(), maxDecompressedBytes: 1 << 20)
        #expect(contents.messages.map(\.timestamp) == [500, 500])
        #expect(contents.messages.map(\.timestampTypeIsLogAppendTime) == [true, true])
        #expect(contents.messages.map(\.offset) == [10, 11])
    }

    /// Property: random message sets read back every message's offset, key, value and timestamp.
    @Test("random message sets round trip through builder and parser", arguments: legacyCodecs)
    func randomRoundTrip(codec: CompressionCodec) throws {
        var generator = SplitMix64(seed: 0x1717 &+ UInt64(codec.rawValue))
        for _ in 0..<60 {
            let magic = Int8.random(in: 0...1, using: &generator)
            let samples = LegacySample.random(
                count: Int.random(in: 1...40, using: &generator),
                firstOffset: Int64.random(in: 0...1_000_000, using: &generator),
                using: &generator
            )
            let set = try legacySet(
                samples,
                magic: magic,
                codec: codec,
                wrapperSize: Int.random(in: 1...15, using: &generator)
            )
            let contents = try LegacyMessageSet.contents(of: set, maxDecompressedBytes: 64 << 20)
            #expect(contents.sourceCodec == codec)
            let expected = samples.map {
                LegacySample(offset: $0.offset, timestamp: magic == 0 ? -1 : $0.timestamp, key: $0.key, value: $0.value)
            }
            let read = contents.messages.map {
                LegacySample(offset: $0.offset, timestamp: $0.timestamp, key: $0.key, value: $0.value)
            }
            #expect(read == expected, "magic \(magic)")
            #expect(Set(contents.messages.map(\.magic)) == [magic])
        }
    }
}
