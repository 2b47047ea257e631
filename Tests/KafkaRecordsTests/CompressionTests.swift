import NIOCore
import Testing

@testable import KafkaRecords

private let compressedCodecs: [CompressionCodec] = [.gzip, .snappy, .lz4, .zstd]

/// Deterministic input: compressible text or incompressible noise.
private func sample(byteCount: Int, compressible: Bool) -> ByteBuffer {
    var generator = SplitMix64(seed: UInt64(byteCount))
    var result = ByteBuffer()
    result.reserveCapacity(byteCount)
    for index in 0..<byteCount {
        result.writeInteger(
            compressible
                ? UInt8(truncatingIfNeeded: (index / 7) % 23 + 65) : UInt8(truncatingIfNeeded: generator.next())
        )
    }
    return result
}

/// A tiny seeded generator so failures replay.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Compression codecs")
struct CompressionTests {
    /// Compress then decompress gives back the input, for sizes around block boundaries and both kinds of data.
    @Test(
        "compress/decompress round trip",
        arguments: compressedCodecs,
        [0, 1, 100, 32 * 1024, 32 * 1024 + 1, 64 * 1024 + 3, 1_000_000]
    )
    func roundTrip(codec: CompressionCodec, byteCount: Int) throws {
        for compressible in [true, false] {
            let input = sample(byteCount: byteCount, compressible: compressible)
            let compressed = try Compression.compress(input, codec: codec)
            let output = try Compression.decompress(compressed, codec: codec, limit: byteCount)
            #expect(output == input, "\(byteCount) bytes, compressible: \(compressible)")
        }
    }

    /// Output of exactly `limit` bytes is fine; one byte more is CORRUPT_MESSAGE.
    @Test("decompression is bounded by the limit", arguments: compressedCodecs)
    func limitBoundary(codec: CompressionCodec) throws {
        let input = sample(byteCount: 200_000, compressible: true)
        let compressed = try Compression.compress(input, codec: codec)
        #expect(try Compression.decompress(compressed, codec: codec, limit: 200_000).readableBytes == 200_000)
        let error = #expect(throws: RecordBatchError.self) {
            try Compression.decompress(compressed, codec: codec, limit: 199_999)
        }
        #expect(error?.kafkaErrorCode == RecordBatchError.corruptMessageCode)
        #expect(throws: RecordBatchError.self) { try Compression.decompress(compressed, codec: codec, limit: 0) }
    }

    /// Garbage, empty input, truncation and trailing bytes fail cleanly for every codec.
    @Test("malformed streams fail cleanly", arguments: compressedCodecs)
    func malformed(codec: CompressionCodec) throws {
        let compressed = bytes(
            of: try Compression.compress(sample(byteCount: 50_000, compressible: true), codec: codec)
        )
        var cases: [(String, [UInt8])] = [
            ("empty", []),
            ("one byte", [0x01]),
            ("noise", bytes(of: sample(byteCount: 4096, compressible: false))),
            ("trailing garbage", compressed + [0x42, 0x42, 0x42]),
        ]
        for cut in [1, 2, 5, compressed.count / 2, compressed.count - 1] {
            cases.append(("truncated to \(cut)", Array(compressed[..<cut])))
        }
        for (name, input) in cases {
            #expect(throws: RecordBatchError.self, "\(codec): \(name)") {
                try Compression.decompress(buffer(input), codec: codec, limit: 1 << 20)
            }
        }
    }

    /// Every strict prefix of a one-block stream is rejected (a bare xerial header is the valid empty stream).
    @Test("every prefix of a stream is handled", arguments: compressedCodecs)
    func everyPrefix(codec: CompressionCodec) throws {
        let input = sample(byteCount: 3000, compressible: true)
        let compressed = bytes(of: try Compression.compress(input, codec: codec))
        for cut in 0..<compressed.count {
            if codec == .snappy && cut == 16 {
                // A xerial header followed by no blocks is a valid empty stream.
                #expect(
                    try Compression.decompress(buffer(Array(compressed[..<cut])), codec: codec, limit: 0)
                        == ByteBuffer()
                )
                continue
            }
            #expect(throws: RecordBatchError.self, "\(codec) prefix \(cut)") {
                try Compression.decompress(buffer(Array(compressed[..<cut])), codec: codec, limit: 1 << 20)
            }
        }
    }

    /// Snappy output is xerial-framed like the Java client's; raw snappy blocks (librdkafka) decode too.
    @Test("snappy: xerial framing out, xerial and raw in")
    func snappyFraming() throws {
        let input = sample(byteCount: 100_000, compressible: true)
        let framed = bytes(of: try Compression.compress(input, codec: .snappy))
        #expect(framed[..<16] == [0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0, 0, 0, 0, 1, 0, 0, 0, 1][...])
        // Three blocks of at most 32 KiB each: unframe them into one raw stream per block and decode each raw.
        var position = 16
        var blocks: [[UInt8]] = []
        while position < framed.count {
            let length =
                Int(framed[position]) << 24 | Int(framed[position + 1]) << 16 | Int(framed[position + 2]) << 8
                | Int(framed[position + 3])
            blocks.append(Array(framed[(position + 4)..<(position + 4 + length)]))
            position += 4 + length
        }
        #expect(blocks.count == 4)
        var joined = ByteBuffer()
        for block in blocks {
            var raw = try Compression.decompress(buffer(block), codec: .snappy, limit: 32 * 1024)
            #expect(raw.readableBytes <= 32 * 1024)
            joined.writeBuffer(&raw)
        }
        #expect(joined == input)
        // Little-endian version/compat words (written by some producers) are accepted.
        var littleEndian = framed
        littleEndian.replaceSubrange(8..<16, with: [1, 0, 0, 0, 1, 0, 0, 0])
        #expect(try Compression.decompress(buffer(littleEndian), codec: .snappy, limit: 1 << 20) == input)
        // A block length that runs past the end is corrupt.
        var overrun = framed
        overrun[19] &+= 1
        #expect(throws: RecordBatchError.self) {
            try Compression.decompress(buffer(overrun), codec: .snappy, limit: 1 << 20)
        }
    }

    /// Streams made of several gzip members / lz4 frames / zstd frames decode to the concatenation.
    @Test("concatenated members and frames", arguments: compressedCodecs)
    func concatenated(codec: CompressionCodec) throws {
        guard codec != .snappy else { return }  // xerial streams have one header; raw snappy is one block
        let first = sample(byteCount: 10_000, compressible: true)
        let second = sample(byteCount: 777, compressible: false)
        var joined = try Compression.compress(first, codec: codec)
        var tail = try Compression.compress(second, codec: codec)
        joined.writeBuffer(&tail)
        var expected = first
        var secondCopy = second
        expected.writeBuffer(&secondCopy)
        #expect(try Compression.decompress(joined, codec: codec, limit: 1 << 20) == expected)
    }

    /// `.none` passes bytes through, still bounded by the limit.
    @Test("no compression passes through")
    func none() throws {
        let input = sample(byteCount: 100, compressible: false)
        #expect(try Compression.compress(input, codec: .none) == input)
        #expect(try Compression.decompress(input, codec: .none, limit: 100) == input)
        #expect(throws: RecordBatchError.self) { try Compression.decompress(input, codec: .none, limit: 99) }
    }
}
