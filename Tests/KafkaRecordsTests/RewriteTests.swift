import NIOCore
import Testing

@testable import KafkaRecords

private let allCodecs: [CompressionCodec] = [.none, .gzip, .snappy, .lz4, .zstd]

/// A batch of an idempotent producer holding `records`, compressed with `codec`.
private func producerBatch(_ records: [Record], codec: CompressionCodec) -> ByteBuffer {
    var builder = RecordBatchBuilder(compression: codec, producerId: 77, producerEpoch: 2, baseSequence: 40)
    for record in records { builder.append(record) }
    return builder.build()
}

private func records(count: Int, valueBytes: Int = 50) -> [Record] {
    (0..<count).map { index in
        Record(
            offsetDelta: Int32(index),
            timestamp: 1_700_000_000_000 + Int64(index % 17),
            key: buffer("key-\(index)"),
            value: buffer(String(repeating: "v\(index % 7)", count: valueBytes / 2)),
            headers: index % 3 == 0 ? [RecordHeader(key: "h", value: buffer("x"))] : []
        )
    }
}

@Suite("Recompression and LogAppendTime (the broker's batch rewrite)")
struct RewriteTests {
    /// Every codec pair: a changed codec gives a new batch with the producer's header fields, a valid
    /// CRC and the same records; the same codec stores the producer's bytes untouched.
    @Test(arguments: allCodecs, allCodecs)
    func recompressionKeepsRecordsAndProducerFields(source: CompressionCodec, target: CompressionCodec) throws {
        let original = records(count: 300)
        let batch = producerBatch(original, codec: source)
        let result = try RecordBatchValidator.validate(
            batch,
            policy: permissivePolicy,
            rewrite: BatchRewrite(compression: target)
        )
        if source == target {
            #expect(result.bytes == nil, "the producer's bytes are stored as sent")
            #expect(result.recompressedByteCount == 0)
            return
        }
        let stored = try #require(result.bytes)
        let header = try RecordBatchValidator.validateStoredBatch(stored)
        #expect(header.compression == target)
        #expect(header.producerId == 77)
        #expect(header.producerEpoch == 2)
        #expect(header.baseSequence == 40)
        #expect(header.recordCount == 300)
        #expect(header.lastOffsetDelta == 299)
        #expect(header.timestampTypeIsLogAppendTime == false)
        #expect(header.maxTimestamp == original.map(\.timestamp).max())
        #expect(result.validated.byteCount == stored.readableBytes)
        #expect(result.validated.header == header)
        #expect(result.recompressedByteCount > 0)
        #expect(try RecordBatchReader.records(of: stored, maxDecompressedBytes: 1 << 24) == original)
        // What the broker stores validates as a produced batch would.
        _ = try RecordBatchValidator.validateProduceRecords(stored, policy: permissivePolicy)
    }

    /// Batches a real client built (kafka-python: every codec, raw and xerial snappy) recompress to
    /// every codec and read back the client's records.
    @Test(arguments: ["none", "gzip", "snappy", "snappy-raw", "lz4", "zstd", "zstd-no-content-size"], allCodecs)
    func realClientBatchesRecompress(golden: String, target: CompressionCodec) throws {
        let batch = try loadGoldenBatch(golden)
        let (_, expected) = try expectedRecords()
        let result = try RecordBatchValidator.validate(
            batch,
            policy: permissivePolicy,
            rewrite: BatchRewrite(compression: target)
        )
        let stored = result.bytes ?? batch
        #expect(try RecordBatchValidator.validateStoredBatch(stored).compression == target)
        #expect(try RecordBatchReader.records(of: stored, maxDecompressedBytes: 1 << 20) == expected)
    }

    /// LogAppendTime without a codec change: timestamp type and max timestamp change in place, the
    /// CRC is recomputed, the records are the producer's bytes.
    @Test(arguments: allCodecs)
    func logAppendTimeStampsTheBatch(codec: CompressionCodec) throws {
        let batch = producerBatch(records(count: 20), codec: codec)
        let rewrite = BatchRewrite(compression: nil, logAppendTimeMs: 1_800_000_000_000)
        let result = try RecordBatchValidator.validate(batch, policy: permissivePolicy, rewrite: rewrite)
        let stored = try #require(result.bytes)
        let header = try RecordBatchValidator.validateStoredBatch(stored)
        #expect(header.timestampTypeIsLogAppendTime)
        #expect(header.maxTimestamp == 1_800_000_000_000)
        #expect(header.compression == codec)
        #expect(result.validated.maxTimestamp == 1_800_000_000_000)
        #expect(result.validated.offsetDeltaOfMaxTimestamp == 19)
        #expect(stored.readableBytes == batch.readableBytes)
        // Every record of a LogAppendTime batch reads with the append time (as Kafka's reader gives it).
        #expect(
            try RecordBatchReader.records(of: stored, maxDecompressedBytes: 1 << 20).allSatisfy {
                $0.timestamp == 1_800_000_000_000
            }
        )
        let records = RecordBatchLayout.records
        #expect(
            stored.getBytes(at: records, length: stored.readableBytes - records)
                == batch.getBytes(at: records, length: batch.readableBytes - records)
        )
    }

    /// lz4 frames are written as Kafka's Lz4BlockOutputStream writes them: magic, FLG 0x60 (version 1,
    /// independent blocks, no checksums, no content size), BD 0x40 (64 KiB blocks), header checksum
    /// 0x82, blocks, end mark; several blocks for inputs above 64 KiB.
    @Test(arguments: [100, 64 * 1024, 300 * 1024])
    func lz4FramesAreKafkas(byteCount: Int) throws {
        let input = ByteBuffer(repeating: 0x61, count: byteCount)
        let frame = bytes(of: try Compression.compress(input, codec: .lz4))
        #expect(Array(frame.prefix(7)) == [0x04, 0x22, 0x4D, 0x18, 0x60, 0x40, 0x82])
        #expect(Array(frame.suffix(4)) == [0, 0, 0, 0])
        // Walk the blocks: each at most 64 KiB of output, the stream ends exactly at the end mark.
        var position = 7
        var blocks = 0
        while true {
            let size =
                UInt32(frame[position]) | UInt32(frame[position + 1]) << 8 | UInt32(frame[position + 2]) << 16
                | UInt32(frame[position + 3]) << 24
            position += 4
            if size == 0 { break }
            position += Int(size & 0x7FFF_FFFF)
            blocks += 1
        }
        #expect(position == frame.count)
        #expect(blocks == (byteCount + 65535) / 65536)
    }

    /// snappy is written in Kafka's xerial framing; gzip as a gzip member.
    @Test func snappyAndGzipFraming() throws {
        let input = ByteBuffer(repeating: 0x62, count: 40_000)
        let snappy = bytes(of: try Compression.compress(input, codec: .snappy))
        #expect(Array(snappy.prefix(16)) == [0x82, 0x53, 0x4E, 0x41, 0x50, 0x50, 0x59, 0, 0, 0, 0, 1, 0, 0, 0, 1])
        let gzip = bytes(of: try Compression.compress(input, codec: .gzip))
        #expect(Array(gzip.prefix(3)) == [0x1F, 0x8B, 0x08])
    }

    /// A compressed payload that does not decode (with a CRC that matches it) is CORRUPT_MESSAGE.
    @Test(arguments: [CompressionCodec.gzip, .snappy, .lz4, .zstd])
    func undecodableBatchIsCorrupt(codec: CompressionCodec) throws {
        var batch = producerBatch(records(count: 50), codec: codec)
        let middle = RecordBatchLayout.records + (batch.readableBytes - RecordBatchLayout.records) / 2
        batch.setInteger(UInt32(0xDEAD_BEEF), at: middle)
        batch.setInteger(UInt32(0xDEAD_BEEF), at: RecordBatchLayout.records)
        fixChecksum(&batch)
        #expect(throws: RecordBatchError.self) {
            try RecordBatchValidator.validate(
                batch,
                policy: permissivePolicy,
                rewrite: BatchRewrite(compression: CompressionCodec.none)
            )
        }
        do {
            _ = try RecordBatchValidator.validate(
                batch,
                policy: permissivePolicy,
                rewrite: BatchRewrite(compression: .zstd)
            )
        } catch {
            #expect(error.kafkaErrorCode == RecordBatchError.corruptMessageCode)
        }
    }

    /// Inflation beyond the limit is CORRUPT_MESSAGE before anything is recompressed; so is an
    /// uncompressed batch above the limit that would be compressed (the request's budget).
    @Test func decompressionAndRecompressionAreBounded() throws {
        let batch = producerBatch(records(count: 2000, valueBytes: 500), codec: .zstd)
        var policy = permissivePolicy
        policy.maxDecompressedBytes = 100_000
        do {
            _ = try RecordBatchValidator.validate(batch, policy: policy, rewrite: BatchRewrite(compression: .lz4))
            Issue.record("a batch inflating beyond the limit was accepted")
        } catch {
            #expect(error.kafkaErrorCode == RecordBatchError.corruptMessageCode)
        }
        let plain = producerBatch(records(count: 2000, valueBytes: 500), codec: .none)
        do {
            _ = try RecordBatchValidator.validate(plain, policy: policy, rewrite: BatchRewrite(compression: .lz4))
            Issue.record("an uncompressed batch beyond the budget was recompressed")
        } catch {
            #expect(error.kafkaErrorCode == RecordBatchError.corruptMessageCode)
        }
    }

    /// A batch that grows beyond max.message.bytes when stored with the topic's codec is MESSAGE_TOO_LARGE.
    @Test func recompressedBatchAboveTheLimitIsTooLarge() throws {
        let batch = producerBatch(records(count: 500, valueBytes: 400), codec: .zstd)
        var policy = permissivePolicy
        policy.maxBatchBytes = batch.readableBytes * 2
        do {
            _ = try RecordBatchValidator.validate(
                batch,
                policy: policy,
                rewrite: BatchRewrite(compression: CompressionCodec.none)
            )
            Issue.record("a batch above the limit after decompression was accepted")
        } catch {
            #expect(error.kafkaErrorCode == RecordBatchError.messageTooLargeCode)
        }
    }

    /// Every record with a timestamp out of range is named (Kafka's record_errors), with Kafka's messages.
    @Test func timestampErrorsNameEveryRecord() throws {
        var builder = RecordBatchBuilder()
        for (index, timestamp) in [1_000_000, 5, 1_000_000, 7].enumerated() {
            builder.append(key: nil, value: buffer("v\(index)"), timestamp: Int64(timestamp))
        }
        let policy = RecordBatchValidationPolicy(
            timestampBeforeMaxMs: 1000,
            timestampAfterMaxMs: 1000,
            nowMs: 1_000_000
        )
        do {
            _ = try RecordBatchValidator.validateProduceRecords(builder.build(), policy: policy)
            Issue.record("out-of-range timestamps were accepted")
        } catch {
            #expect(error.kafkaErrorCode == RecordBatchError.invalidTimestampCode)
            #expect(error.message == "One or more records have been rejected due to invalid timestamp")
            #expect(error.recordErrors.map(\.batchIndex) == [1, 3])
            #expect(
                error.recordErrors.first?.message
                    == "Timestamp 5 of message with offset 1 is out of range. The timestamp should be within [999000, 1001000]"
            )
        }
    }
}
