import NIOCore
import Testing

@testable import KafkaRecords

/// Stored v2 batches of `samples` (offsets must be contiguous within a batch: `samples[i].offset` is
/// `baseOffset + i`), `perBatch` records each.
func storedBatches(
    _ samples: [LegacySample],
    codec: CompressionCodec,
    perBatch: Int,
    headers: [RecordHeader] = []
) -> ByteBuffer {
    var log = ByteBuffer()
    var index = 0
    while index < samples.count {
        let chunk = samples[index..<min(samples.count, index + perBatch)]
        var builder = RecordBatchBuilder(compression: codec, baseOffset: chunk.first!.offset)
        for sample in chunk {
            builder.append(key: sample.key, value: sample.value, headers: headers, timestamp: sample.timestamp)
        }
        var batch = builder.build()
        log.writeBuffer(&batch)
        index += chunk.count
    }
    return log
}

/// Contiguous random samples from `firstOffset` on.
func contiguousSamples(count: Int, firstOffset: Int64, using generator: inout SplitMix64) -> [LegacySample] {
    LegacySample.random(count: count, firstOffset: 0, using: &generator).enumerated().map { index, sample in
        var sample = sample
        sample.offset = firstOffset + Int64(index)
        return sample
    }
}

func downConvert(
    _ stored: ByteBuffer,
    magic: Int8,
    fromOffset: Int64 = 0,
    maxBytes: Int = .max,
    minimumOneMessage: Bool = true
) throws(RecordBatchError) -> [LegacyMessage] {
    let set = try LegacyRecordsConverter.downConvert(
        stored,
        toMagic: magic,
        fromOffset: fromOffset,
        maxBytes: maxBytes,
        minimumOneMessage: minimumOneMessage,
        maxDecompressedBytes: 64 << 20
    )
    return try LegacyMessageSet.contents(of: set, maxDecompressedBytes: 64 << 20).messages
}

@Suite("Up- and down-conversion between magic 0/1 and RecordBatch v2")
struct LegacyRecordsConverterTests {
    /// Property: a random produced message set becomes one valid v2 batch with the same keys, values and timestamps,
    /// in the topic's codec or the producer's; down-converted back, the messages and their offsets return.
    @Test("random message sets up-convert and down-convert back", arguments: legacyCodecs)
    func upAndBack(codec: CompressionCodec) throws {
        var generator = SplitMix64(seed: 0x5117 &+ UInt64(codec.rawValue))
        for round in 0..<50 {
            let magic = Int8.random(in: 0...1, using: &generator)
            let samples = LegacySample.random(
                count: Int.random(in: 1...40, using: &generator),
                firstOffset: 0,
                using: &generator
            )
            let set = try legacySet(
                samples,
                magic: magic,
                codec: codec,
                wrapperSize: Int.random(in: 1...15, using: &generator)
            )
            let topicCodec: CompressionCodec? = round % 3 == 0 ? nil : legacyCodecs.randomElement(using: &generator)
            let converted = try LegacyRecordsConverter.upConvert(
                set,
                compression: topicCodec,
                maxMessageBytes: 1 << 20,
                maxDecompressedBytes: 64 << 20
            )
            #expect(converted.messageCount == samples.count)
            let validated = try RecordBatchValidator.validateProduceRecords(converted.batch, policy: permissivePolicy)
            #expect(validated.header.compression == (topicCodec ?? codec))
            #expect(validated.header.producerId == -1)
            #expect(validated.recordCount == Int32(samples.count))
            let records = try RecordBatchReader.records(of: converted.batch, maxDecompressedBytes: 64 << 20)
            let timestamps = samples.map { magic == 0 ? Int64(-1) : $0.timestamp }
            #expect(records.map(\.key) == samples.map(\.key))
            #expect(records.map(\.value) == samples.map(\.value))
            #expect(records.map(\.timestamp) == timestamps)

            // The broker assigns offsets: store the batch at base 1000 and read it as an old consumer would.
            var stored = converted.batch
            stored.setInteger(Int64(1000), at: stored.readerIndex)
            let back = try downConvert(stored, magic: magic)
            #expect(back.map(\.offset) == (0..<samples.count).map { 1000 + Int64($0) })
            #expect(back.map(\.key) == samples.map(\.key))
            #expect(back.map(\.value) == samples.map(\.value))
            #expect(back.map(\.timestamp) == timestamps)
        }
    }

    /// Property: random stored v2 logs down-convert to either magic with every record's offset, key, value and
    /// (magic 1) timestamp, uncompressed batches from the fetch offset on, compressed ones whole; the stored bytes
    /// stay as they were.
    @Test("random stored batches down-convert from a fetch offset", arguments: legacyCodecs)
    func downFromOffset(codec: CompressionCodec) throws {
        var generator = SplitMix64(seed: 0xD0D0 &+ UInt64(codec.rawValue))
        for _ in 0..<40 {
            let samples = contiguousSamples(
                count: Int.random(in: 1...60, using: &generator),
                firstOffset: 500,
                using: &generator
            )
            let perBatch = Int.random(in: 1...20, using: &generator)
            let stored = storedBatches(
                samples,
                codec: codec,
                perBatch: perBatch,
                headers: [RecordHeader(key: "h", value: buffer("v"))]
            )
            let before = bytes(of: stored)
            let fromIndex = Int.random(in: 0..<samples.count, using: &generator)
            for magic: Int8 in [0, 1] {
                let back = try downConvert(stored, magic: magic, fromOffset: 500 + Int64(fromIndex))
                // A compressed batch goes out whole: the reader skips what lies before its offset.
                let firstIndex = codec == .none ? fromIndex : (fromIndex / perBatch) * perBatch
                let expected = samples[firstIndex...]
                #expect(back.map(\.offset) == expected.map(\.offset))
                #expect(back.map(\.key) == expected.map(\.key))
                #expect(back.map(\.value) == expected.map(\.value))
                #expect(back.map(\.timestamp) == expected.map { magic == 0 ? -1 : $0.timestamp })
            }
            #expect(bytes(of: stored) == before)
        }
    }

    @Test("control batches are left out of down-converted fetches")
    func controlBatchesLeftOut() throws {
        var log = storedBatches(
            [LegacySample(offset: 0, timestamp: 1, key: nil, value: buffer("a"))],
            codec: .none,
            perBatch: 1
        )
        var control = RecordBatchBuilder(
            baseOffset: 1,
            producerId: 9,
            producerEpoch: 0,
            isTransactional: true,
            isControl: true
        )
        control.append(key: buffer([0, 0, 0, 1]), value: buffer([0, 0, 0, 0, 0, 0]), timestamp: 2)
        var marker = control.build()
        log.writeBuffer(&marker)
        var after = storedBatches(
            [LegacySample(offset: 2, timestamp: 3, key: nil, value: buffer("c"))],
            codec: .gzip,
            perBatch: 1
        )
        log.writeBuffer(&after)
        let back = try downConvert(log, magic: 1)
        #expect(back.map(\.offset) == [0, 2])
        #expect(back.map(\.value) == [buffer("a"), buffer("c")])
    }

    @Test("the output stops at maxBytes, except for the first message or wrapper")
    func byteBound() throws {
        var generator = SplitMix64(seed: 42)
        let samples = contiguousSamples(count: 30, firstOffset: 0, using: &generator)
        for codec in legacyCodecs {
            let stored = storedBatches(samples, codec: codec, perBatch: 5)
            let whole = try LegacyRecordsConverter.downConvert(
                stored,
                toMagic: 1,
                fromOffset: 0,
                maxBytes: .max,
                minimumOneMessage: true,
                maxDecompressedBytes: 1 << 24
            )
            for limit in [1, whole.readableBytes / 3, whole.readableBytes - 1] {
                let bounded = try LegacyRecordsConverter.downConvert(
                    stored,
                    toMagic: 1,
                    fromOffset: 0,
                    maxBytes: limit,
                    minimumOneMessage: true,
                    maxDecompressedBytes: 1 << 24
                )
                let count = try LegacyMessageSet.contents(of: bounded, maxDecompressedBytes: 1 << 24).messages.count
                #expect(count >= 1, "\(codec) limit \(limit)")
                #expect(count < samples.count, "\(codec) limit \(limit)")
                #expect(bounded.readableBytes <= limit || count == (codec == .none ? 1 : 5), "\(codec) limit \(limit)")
                // A prefix of the whole conversion.
                #expect(Array(bytes(of: whole).prefix(bounded.readableBytes)) == bytes(of: bounded), "\(codec)")
            }
            let none = try LegacyRecordsConverter.downConvert(
                stored,
                toMagic: 1,
                fromOffset: 0,
                maxBytes: 1,
                minimumOneMessage: false,
                maxDecompressedBytes: 1 << 24
            )
            #expect(none.readableBytes == 0)
        }
    }

    @Test("zstd batches cannot be down-converted: UNSUPPORTED_COMPRESSION_TYPE first, the end of the output later")
    func zstdBatches() throws {
        let zstd = storedBatches(
            [LegacySample(offset: 1, timestamp: 1, key: nil, value: buffer("z"))],
            codec: .zstd,
            perBatch: 1
        )
        expectError(code: 76) { () throws(RecordBatchError) in try downConvert(zstd, magic: 1) }
        var log = storedBatches(
            [LegacySample(offset: 0, timestamp: 1, key: nil, value: buffer("a"))],
            codec: .none,
            perBatch: 1
        )
        var tail = zstd
        log.writeBuffer(&tail)
        #expect(try downConvert(log, magic: 0).map(\.offset) == [0])
    }

    @Test("up-conversion rejects oversized messages, LogAppendTime from producers and empty sets")
    func upConversionErrors() throws {
        let big = try legacySet(
            [LegacySample(offset: 0, timestamp: 0, key: nil, value: ByteBuffer(repeating: 1, count: 2000))],
            magic: 1,
            codec: .none
        )
        expectError(code: 10) { () throws(RecordBatchError) in
            try LegacyRecordsConverter.upConvert(
                big,
                compression: nil,
                maxMessageBytes: 1000,
                maxDecompressedBytes: 1 << 20
            )
        }
        var logAppend = LegacyMessageSetBuilder(magic: 1, compression: .gzip, timestampTypeIsLogAppendTime: true)
        logAppend.append(offset: 0, timestamp: 5, key: nil, value: buffer("x"))
        let stamped = try logAppend.build()
        expectError(code: 32) { () throws(RecordBatchError) in
            try LegacyRecordsConverter.upConvert(
                stamped,
                compression: nil,
                maxMessageBytes: 1 << 20,
                maxDecompressedBytes: 1 << 20
            )
        }
        expectError(code: 87) { () throws(RecordBatchError) in
            try LegacyRecordsConverter.upConvert(
                ByteBuffer(),
                compression: nil,
                maxMessageBytes: 1 << 20,
                maxDecompressedBytes: 1 << 20
            )
        }
    }
}
