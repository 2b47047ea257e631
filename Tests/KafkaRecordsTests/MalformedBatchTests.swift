import NIOCore
import Testing

@testable import KafkaRecords

private let corrupt = RecordBatchError.corruptMessageCode
private let invalidRecord = RecordBatchError.invalidRecordCode
private let invalidTimestamp = RecordBatchError.invalidTimestampCode
private let tooLarge = RecordBatchError.messageTooLargeCode

@Suite("Malformed batches map to the Kafka error a client expects")
struct MalformedBatchTests {
    /// Flipping any one byte covered by the CRC (attributes to the end) or the CRC itself is CORRUPT_MESSAGE.
    @Test("a flipped byte after offset 17 fails the CRC", arguments: [CompressionCodec.none, .zstd])
    func flippedByte(codec: CompressionCodec) {
        let batch = smallBatch(count: 3, compression: codec)
        for position in RecordBatchLayout.crc..<batch.readableBytes {
            var damaged = batch
            damaged.setInteger(damaged.getInteger(at: position, as: UInt8.self)! ^ 0x01, at: position)
            expectRejection(damaged, code: corrupt, "byte \(position)")
        }
    }

    /// baseOffset and partitionLeaderEpoch lie outside the CRC; changing them keeps the batch valid.
    @Test("bytes outside the CRC may change")
    func bytesOutsideChecksum() throws {
        let batch = smallBatch()
        for position in Array(0..<8) + Array(12..<16) {
            var changed = batch
            changed.setInteger(changed.getInteger(at: position, as: UInt8.self)! ^ 0xa5, at: position)
            _ = try RecordBatchValidator.validateProduceRecords(changed, policy: permissivePolicy)
        }
    }

    /// Every strict prefix of a batch is CORRUPT_MESSAGE; nothing at all is INVALID_RECORD (no batch).
    @Test("truncated batches", arguments: [CompressionCodec.none, .gzip])
    func truncated(codec: CompressionCodec) {
        let batch = smallBatch(count: 2, compression: codec)
        expectRejection(ByteBuffer(), code: invalidRecord, "empty records")
        for length in 1..<batch.readableBytes {
            expectRejection(batch.getSlice(at: 0, length: length)!, code: corrupt, "prefix of \(length) bytes")
        }
    }

    /// A batchLength that overruns the bytes, undercuts the header, or is negative is CORRUPT_MESSAGE.
    @Test(
        "inconsistent batchLength",
        arguments: ["one too many", "one too few", "Int32.max", "zero", "48", "-1", "Int32.min"]
    )
    func badBatchLength(change: String) {
        let batch = smallBatch()
        let actual = Int32(batch.readableBytes - 12)
        let value: Int32
        switch change {
        case "one too many": value = actual + 1
        case "one too few": value = actual - 1
        case "Int32.max": value = .max
        case "zero": value = 0
        case "48": value = 48  // one below an empty batch's 49
        case "-1": value = -1
        default: value = .min
        }
        var damaged = batch
        patch(&damaged, at: RecordBatchLayout.batchLength, value, fixingChecksum: false)
        expectRejection(damaged, code: corrupt, "batchLength \(value)")
    }

    /// Magic 0 and 1 (pre-0.11 message sets) and unknown magics are INVALID_RECORD, however short the input.
    @Test("magic other than 2", arguments: [Int8(0), 1, 3, -1])
    func wrongMagic(magic: Int8) {
        var batch = smallBatch()
        patch(&batch, at: RecordBatchLayout.magic, magic, fixingChecksum: false)
        expectRejection(batch, code: invalidRecord)
        // A v0 message set shorter than a v2 header: offset, size, crc, magic 0, attributes, key -1, value -1.
        var legacy = ByteBuffer()
        legacy.writeInteger(Int64(0))
        legacy.writeInteger(Int32(14))
        legacy.writeInteger(UInt32(0))
        legacy.writeInteger(magic)
        legacy.writeInteger(Int8(0))
        legacy.writeInteger(Int32(-1))
        legacy.writeInteger(Int32(-1))
        expectRejection(legacy, code: invalidRecord)
    }

    /// recordCount must equal lastOffsetDelta + 1 and be positive.
    @Test(
        "recordCount disagreeing with lastOffsetDelta",
        arguments: [(4, 2), (2, 2), (0, -1), (-1, -2), (3, .max), (.min, .max)] as [(Int32, Int32)]
    )
    func countMismatch(recordCount: Int32, lastOffsetDelta: Int32) {
        var batch = smallBatch(count: 3)
        patch(&batch, at: RecordBatchLayout.recordCount, recordCount)
        patch(&batch, at: RecordBatchLayout.lastOffsetDelta, lastOffsetDelta)
        expectRejection(batch, code: invalidRecord)
    }

    /// Records whose offsetDelta is not their index (gaps, swaps, duplicates) are INVALID_RECORD.
    @Test(
        "record offsetDelta out of sequence",
        arguments: [[0, 2, 1], [0, 0, 1], [1, 2, 3], [0, 1, 3], [-1, 0, 1]] as [[Int32]],
        [CompressionCodec.none, .snappy]
    )
    func offsetDeltaOutOfSequence(deltas: [Int32], codec: CompressionCodec) {
        var builder = RecordBatchBuilder(compression: codec)
        for (index, delta) in deltas.enumerated() {
            builder.append(key: nil, value: buffer("v\(index)"), timestamp: 1000, offsetDelta: delta)
        }
        expectRejection(builder.build(), code: invalidRecord)
    }

    /// A header claiming more records than the batch holds, or fewer, is INVALID_RECORD (as Kafka's iterator).
    @Test(
        "record count fewer or more than the header says",
        arguments: [Int32(-2), -1, 1, 5],
        CompressionCodec.allCases
    )
    func recordCountDisagreesWithRecords(change: Int32, codec: CompressionCodec) {
        var batch = smallBatch(count: 4, compression: codec)
        patch(&batch, at: RecordBatchLayout.recordCount, 4 + change)
        patch(&batch, at: RecordBatchLayout.lastOffsetDelta, 3 + change)
        expectRejection(batch, code: invalidRecord, "header says \(4 + change) of 4 records")
    }

    /// Bytes after the batch that are not a batch are CORRUPT_MESSAGE; a second whole batch is INVALID_RECORD.
    @Test("trailing garbage and a second batch")
    func trailingBytes() {
        for garbage: [UInt8] in [
            [0], [0xde, 0xad], [UInt8](repeating: 0, count: 100), [UInt8](repeating: 0xff, count: 61),
        ] {
            var batch = smallBatch()
            batch.writeBytes(garbage)
            expectRejection(batch, code: corrupt, "\(garbage.count) trailing bytes")
        }
        var two = smallBatch()
        var second = smallBatch(count: 1)
        two.writeBuffer(&second)
        expectRejection(two, code: invalidRecord, "two batches")
    }

    /// A control batch (transaction marker) from a producer is INVALID_RECORD.
    @Test("control batch from a producer")
    func controlBatch() {
        var builder = RecordBatchBuilder(
            producerId: 5,
            producerEpoch: 0,
            baseSequence: 0,
            isTransactional: true,
            isControl: true
        )
        builder.append(key: buffer([0, 0, 0, 1]), value: buffer([0, 0, 0, 0, 0, 0]), timestamp: 1000)
        expectRejection(builder.build(), code: invalidRecord)
    }

    /// An idempotent batch (producerId ≥ 0) without a base sequence is INVALID_RECORD.
    @Test("producer id without a base sequence")
    func producerIdWithoutSequence() throws {
        var builder = RecordBatchBuilder(producerId: 5, producerEpoch: 0, baseSequence: -1)
        builder.append(key: nil, value: buffer("v"), timestamp: 1000)
        expectRejection(builder.build(), code: invalidRecord)
        builder.baseSequence = 0
        _ = try RecordBatchValidator.validateProduceRecords(builder.build(), policy: permissivePolicy)
    }

    /// Codec ids 5–7 are unassigned: CORRUPT_MESSAGE.
    @Test("unknown codec id", arguments: [Int16(5), 6, 7])
    func unknownCodec(codecId: Int16) throws {
        var batch = smallBatch()
        patch(&batch, at: RecordBatchLayout.attributes, codecId)
        #expect(try RecordBatchHeader(parsing: batch).compression == nil)
        expectRejection(batch, code: corrupt)
        #expect(throws: RecordBatchError.self) {
            try RecordBatchReader.records(of: batch, maxDecompressedBytes: 1 << 20)
        }
    }

    /// A compressed payload that is truncated, garbage, or empty is CORRUPT_MESSAGE.
    @Test(
        "corrupted compressed payload",
        arguments: [CompressionCodec.gzip, .snappy, .lz4, .zstd],
        ["truncated", "garbage", "empty", "zeros"]
    )
    func corruptedPayload(codec: CompressionCodec, damage: String) {
        let good = smallBatch(count: 20, compression: codec)
        var payload = bytes(of: good)[RecordBatchLayout.records...].map { $0 }
        switch damage {
        case "truncated": payload.removeLast(payload.count / 2)
        case "garbage": payload = (0..<payload.count).map { UInt8(truncatingIfNeeded: $0 &* 167 &+ 13) | 0x80 }
        case "zeros": payload = [UInt8](repeating: 0, count: payload.count)
        default: payload = []
        }
        var batch = good.getSlice(at: 0, length: RecordBatchLayout.records)!
        batch.writeBytes(payload)
        patch(&batch, at: RecordBatchLayout.batchLength, Int32(batch.readableBytes - 12))
        expectRejection(batch, code: corrupt, "\(damage) \(codec)")
    }

    /// Records that decompress fine but do not parse are CORRUPT_MESSAGE.
    @Test("compressed records that do not parse", arguments: [CompressionCodec.gzip, .snappy, .lz4, .zstd])
    func unparseableCompressedRecords(codec: CompressionCodec) throws {
        let records = buffer([0x7e, 0, 0, 0, 1, 1, 0])  // record length 63, only 6 bytes follow
        var payload = try Compression.compress(records, codec: codec)
        var batch = smallBatch(count: 1, compression: codec).getSlice(at: 0, length: RecordBatchLayout.records)!
        batch.writeBuffer(&payload)
        patch(&batch, at: RecordBatchLayout.batchLength, Int32(batch.readableBytes - 12))
        expectRejection(batch, code: corrupt)
    }

    /// A payload that inflates beyond maxDecompressedBytes is CORRUPT_MESSAGE; at the limit it is accepted.
    @Test("decompression bomb above the limit", arguments: [CompressionCodec.gzip, .snappy, .lz4, .zstd])
    func decompressionBomb(codec: CompressionCodec) throws {
        // One record whose 4 MiB value is all zeros: a few KiB compressed.
        var builder = RecordBatchBuilder(compression: codec)
        builder.append(key: nil, value: ByteBuffer(repeating: 0, count: 4 << 20), timestamp: 1000)
        let batch = builder.build()
        #expect(batch.readableBytes < 256 << 10)
        let inflated =
            try RecordBatchHeader.byteCount
            + Compression.decompress(
                batch.getSlice(at: 61, length: batch.readableBytes - 61)!,
                codec: codec,
                limit: 8 << 20
            ).readableBytes

        var policy = permissivePolicy
        policy.maxDecompressedBytes = 1 << 20
        expectRejection(batch, policy: policy, code: corrupt)
        policy.maxDecompressedBytes = inflated - RecordBatchHeader.byteCount - 1
        expectRejection(batch, policy: policy, code: corrupt, "one byte below the inflated size")
        policy.maxDecompressedBytes = inflated - RecordBatchHeader.byteCount
        #expect(try RecordBatchValidator.validateProduceRecords(batch, policy: policy).recordCount == 1)
        #expect(throws: RecordBatchError.self) {
            try RecordBatchReader.records(of: batch, maxDecompressedBytes: 1 << 20)
        }
    }

    /// A batch above maxBatchBytes is MESSAGE_TOO_LARGE; one of exactly maxBatchBytes is accepted.
    @Test("oversized batch", arguments: [CompressionCodec.none, .lz4])
    func oversized(codec: CompressionCodec) throws {
        let batch = smallBatch(count: 50, compression: codec)
        var policy = permissivePolicy
        policy.maxBatchBytes = batch.readableBytes - 1
        expectRejection(batch, policy: policy, code: tooLarge)
        policy.maxBatchBytes = batch.readableBytes
        _ = try RecordBatchValidator.validateProduceRecords(batch, policy: policy)
    }

    /// Record timestamps must lie within [now − before.max, now + after.max]; -1 (no timestamp) always passes.
    @Test(
        "timestamp policy",
        arguments: [
            (Int64(1_000_000 - 1000), true), (1_000_000 - 1001, false), (1_000_000 + 500, true),
            (1_000_000 + 501, false), (-1, true), (0, false), (Int64.max, false), (Int64.min, false),
        ] as [(Int64, Bool)]
    )
    func timestampPolicy(timestamp: Int64, accepted: Bool) throws {
        let policy = RecordBatchValidationPolicy(timestampBeforeMaxMs: 1000, timestampAfterMaxMs: 500, nowMs: 1_000_000)
        var builder = RecordBatchBuilder()
        builder.append(key: nil, value: buffer("ok"), timestamp: 1_000_000)
        builder.append(key: nil, value: buffer("tested"), timestamp: timestamp)
        let batch = builder.build()
        if accepted {
            _ = try RecordBatchValidator.validateProduceRecords(batch, policy: policy)
        } else {
            expectRejection(batch, policy: policy, code: invalidTimestamp, "timestamp \(timestamp)")
            do {
                _ = try RecordBatchValidator.validateProduceRecords(batch, policy: policy)
            } catch {
                #expect(error.recordIndex == 1, "the error names the offending record")
            }
        }
        // Unbounded defaults accept anything.
        _ = try RecordBatchValidator.validateProduceRecords(
            batch,
            policy: RecordBatchValidationPolicy(nowMs: 1_000_000)
        )
    }

    /// Producers may not claim LogAppendTime (Kafka's LogValidator): INVALID_TIMESTAMP.
    @Test("LogAppendTime from a producer")
    func logAppendTime() {
        var builder = RecordBatchBuilder(timestampTypeIsLogAppendTime: true)
        builder.append(key: nil, value: buffer("v"), timestamp: 1000)
        expectRejection(builder.build(), code: invalidTimestamp)
    }

    /// Malformed fields inside a record (lengths, header counts) are CORRUPT_MESSAGE.
    @Test(
        "malformed record fields",
        arguments: [
            (61, 0x7f, "negative record length"),
            (61, 0x7e, "record length beyond the batch"),
            (61, 0x0e, "record length shorter than its fields"),
            (61, 0x12, "record length longer than its fields"),
            (65, 0x64, "key length beyond the record"),
            (65, 0x03, "key length -2"),
            (67, 0x03, "value length -2"),
            (69, 0x01, "header count -1"),
            (69, 0x02, "header count 1 without a header"),
            (64, 0x80, "unterminated offsetDelta varint"),
        ] as [(Int, UInt8, String)]
    )
    func malformedRecordFields(position: Int, value: UInt8, what: String) throws {
        var builder = RecordBatchBuilder()
        builder.append(key: buffer("k"), value: buffer("v"), timestamp: 1000)
        var batch = builder.build()
        // length 8 (zig-zag 0x10), attributes, timestamp delta, offset delta, key length 1 (0x02), "k",
        // value length 1 (0x02), "v", header count 0.
        #expect(bytes(of: batch)[61...] == [0x10, 0, 0, 0, 0x02, 0x6b, 0x02, 0x76, 0][...])
        patch(&batch, at: position, value)
        expectRejection(batch, code: corrupt, "\(what)")
    }
}

@Suite("Mutated batches never trap")
struct MutationTests {
    /// Seeded random mutations of valid batches (byte changes, with the CRC fixed so parsing is reached, and
    /// truncations) are either accepted or rejected with one of the four codes; the reader agrees with the validator.
    @Test("seeded random mutations", arguments: CompressionCodec.allCases)
    func randomMutations(codec: CompressionCodec) throws {
        let seed = UInt64(0xF10_7D00) + UInt64(codec.rawValue)
        var generator = SplitMix64(seed: seed)
        let original = makeBatch(RecordShape.headers.records(), builder: RecordBatchBuilder(compression: codec))
        let codes: Set<Int16> = [2, 10, 32, 87]
        for iteration in 0..<1500 {
            var mutated = original
            let changes = 1 + Int(generator.next() % 4)
            for _ in 0..<changes {
                let position = RecordBatchLayout.attributes + Int(generator.next() % UInt64(mutated.readableBytes - 21))
                mutated.setInteger(UInt8(truncatingIfNeeded: generator.next()), at: position)
            }
            if generator.next() % 8 == 0 {
                mutated = mutated.getSlice(at: 0, length: Int(generator.next() % UInt64(mutated.readableBytes)))!
            } else {
                fixChecksum(&mutated)
            }
            do {
                _ = try RecordBatchValidator.validateProduceRecords(mutated, policy: permissivePolicy)
                // Accepted: the reader must be able to read it too.
                _ = try RecordBatchReader.records(of: mutated, maxDecompressedBytes: 1 << 20)
            } catch {
                #expect(codes.contains(error.kafkaErrorCode), "seed \(seed) iteration \(iteration): \(error)")
            }
        }
    }
}
