import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The limits a produced batch is checked against (Kafka's topic/broker configs of the same meaning).
public struct RecordBatchValidationPolicy: Sendable {
    /// The largest batch accepted, in bytes (`max.message.bytes` / `message.max.bytes`); above it MESSAGE_TOO_LARGE.
    public var maxBatchBytes: Int
    /// The most a compressed batch's records may inflate to; beyond it the batch is CORRUPT_MESSAGE. Bounds the
    /// memory one produce request can make the broker allocate.
    public var maxDecompressedBytes: Int
    /// How far in the past a record's CreateTime may lie (`message.timestamp.before.max.ms`); `Int64.max` = unbounded.
    public var timestampBeforeMaxMs: Int64
    /// How far in the future a record's CreateTime may lie (`message.timestamp.after.max.ms`); `Int64.max` = unbounded.
    public var timestampAfterMaxMs: Int64
    /// The broker's wall clock, in milliseconds since the epoch, that timestamps are judged against.
    public var nowMs: Int64

    /// Kafka's default `message.max.bytes`: 1 MiB plus the 12-byte log overhead.
    public static let defaultMaxBatchBytes = 1_048_588
    /// 256 MiB.
    public static let defaultMaxDecompressedBytes = 256 * 1024 * 1024

    public init(
        maxBatchBytes: Int = defaultMaxBatchBytes,
        maxDecompressedBytes: Int = defaultMaxDecompressedBytes,
        timestampBeforeMaxMs: Int64 = .max,
        timestampAfterMaxMs: Int64 = .max,
        nowMs: Int64 = RecordBatchValidationPolicy.currentTimeMs()
    ) {
        precondition(maxBatchBytes >= 0 && maxDecompressedBytes >= 0, "limits must not be negative")
        precondition(timestampBeforeMaxMs >= 0 && timestampAfterMaxMs >= 0, "timestamp bounds must not be negative")
        self.maxBatchBytes = maxBatchBytes
        self.maxDecompressedBytes = maxDecompressedBytes
        self.timestampBeforeMaxMs = timestampBeforeMaxMs
        self.timestampAfterMaxMs = timestampAfterMaxMs
        self.nowMs = nowMs
    }

    /// The system's wall clock in milliseconds since the Unix epoch.
    public static func currentTimeMs() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }
}

/// What the validator learned about an accepted batch: what the partition needs to append and index it.
public struct ValidatedBatch: Sendable {
    public var header: RecordBatchHeader
    public var recordCount: Int32
    /// The largest record timestamp (computed from the records, not trusted from the header); -1 when no record has
    /// a timestamp.
    public var maxTimestamp: Int64
    /// The offset delta of the first record carrying `maxTimestamp` (0 when no record has a timestamp).
    public var offsetDeltaOfMaxTimestamp: Int32
    public var lastOffsetDelta: Int32
    /// The size of the batch, as it will be stored.
    public var byteCount: Int
}

/// Validation of what producers send, before append (DESIGN.md §4; Kafka's `LogValidator`).
public enum RecordBatchValidator {
    /// Validates the `records` of one partition of a ProduceRequest (v3+): exactly one batch, whole, magic 2,
    /// CRC-32C, attributes, `lastOffsetDelta + 1 == recordCount > 0`, records parse (decompressing compressed batches:
    /// gzip, snappy raw and xerial-framed, lz4 frame, zstd) with `offsetDelta == index`, no trailing bytes inside or
    /// after the batch, timestamps within policy, not a control batch, size ≤ `maxBatchBytes`.
    ///
    /// Allocates nothing for uncompressed batches; compressed ones cost one buffer for the inflated records.
    public static func validateProduceRecords(
        _ records: ByteBuffer,
        policy: RecordBatchValidationPolicy
    ) throws(RecordBatchError) -> ValidatedBatch {
        try records.withUnsafeReadableBytes { (bytes) throws(RecordBatchError) -> ValidatedBatch in
            try validateProduceRecords(bytes, policy: policy)
        }
    }

    /// The same checks over raw bytes.
    public static func validateProduceRecords(
        _ bytes: UnsafeRawBufferPointer,
        policy: RecordBatchValidationPolicy
    ) throws(RecordBatchError) -> ValidatedBatch {
        let (header, codec) = try checkProduceHeader(bytes, policy: policy)
        let byteCount = header.totalByteCount
        let region = UnsafeRawBufferPointer(rebasing: bytes[RecordBatchLayout.records..<byteCount])
        let summary: RecordsSummary
        if codec == .none {
            // Already bounded by maxBatchBytes; maxDecompressedBytes is about inflation only.
            summary = try checkRecords(region, header: header, policy: policy)
        } else {
            summary = try Compression.withDecompressed(region, codec: codec, limit: policy.maxDecompressedBytes) {
                (records) throws(RecordBatchError) -> RecordsSummary in
                try checkRecords(records, header: header, policy: policy)
            }
        }
        return ValidatedBatch(
            header: header,
            recordCount: header.recordCount,
            maxTimestamp: summary.maxTimestamp,
            offsetDeltaOfMaxTimestamp: summary.offsetDeltaOfMaxTimestamp,
            lastOffsetDelta: header.lastOffsetDelta,
            byteCount: byteCount
        )
    }

    /// Everything but the records: framing, size, CRC-32C, codec, attributes, counts, producer fields.
    static func checkProduceHeader(
        _ bytes: UnsafeRawBufferPointer,
        policy: RecordBatchValidationPolicy
    ) throws(RecordBatchError) -> (RecordBatchHeader, CompressionCodec) {
        let header = try checkFraming(bytes, requireExact: true)
        let byteCount = header.totalByteCount
        guard byteCount <= policy.maxBatchBytes else {
            throw .tooLarge("record batch is \(byteCount) bytes, above the limit of \(policy.maxBatchBytes)")
        }
        try checkChecksum(bytes, header: header)
        guard let codec = header.compression else {
            throw .corrupt("unknown compression codec id \(header.compressionId)")
        }
        guard !header.isControl else {
            throw .invalidRecord("clients are not allowed to write control records")
        }
        guard !header.timestampTypeIsLogAppendTime else {
            throw .invalidTimestamp("producers must not set the timestamp type to LogAppendTime")
        }
        guard header.recordCount > 0 else {
            throw .invalidRecord("invalid record count \(header.recordCount)")
        }
        guard Int64(header.lastOffsetDelta) + 1 == Int64(header.recordCount) else {
            throw .invalidRecord(
                "lastOffsetDelta \(header.lastOffsetDelta) does not match record count \(header.recordCount)"
            )
        }
        if header.producerId >= 0 && header.baseSequence < 0 {
            throw .invalidRecord("invalid base sequence \(header.baseSequence) for producer id \(header.producerId)")
        }
        return (header, codec)
    }

    /// Checks a batch read back from storage or recovered from disk: whole, magic 2, known codec, CRC-32C.
    /// Cheap (no record parsing); the pair of the produce-side validation at the disk boundary (STYLE.md rule 11).
    /// Bytes after the batch are ignored.
    public static func validateStoredBatch(_ batch: ByteBuffer) throws(RecordBatchError) -> RecordBatchHeader {
        try batch.withUnsafeReadableBytes { (bytes) throws(RecordBatchError) -> RecordBatchHeader in
            let header = try checkFraming(bytes, requireExact: false)
            try checkChecksum(bytes, header: header)
            guard header.compression != nil else {
                throw .corrupt("unknown compression codec id \(header.compressionId)")
            }
            return header
        }
    }

    // MARK: - Pieces

    /// Sizes and magic: the buffer holds a whole v2 batch (and, with `requireExact`, nothing else).
    static func checkFraming(
        _ bytes: UnsafeRawBufferPointer,
        requireExact: Bool
    ) throws(RecordBatchError)
        -> RecordBatchHeader
    {
        let readable = bytes.count
        guard readable > 0 else {
            throw .invalidRecord("produce request partition has no record batch")
        }
        // The magic byte sits at 16; read it before insisting on a v2-sized header so a short v0/v1 message set is
        // reported as the wrong format rather than as truncated.
        guard readable > RecordBatchLayout.magic else {
            throw .corrupt("truncated record batch: \(readable) bytes")
        }
        let batchLength: Int32 = bytes.loadBigEndian(at: RecordBatchLayout.batchLength)
        guard batchLength >= 0 else {
            throw .corrupt("negative batchLength \(batchLength)")
        }
        let magic: Int8 = bytes.loadBigEndian(at: RecordBatchLayout.magic)
        guard magic == RecordBatchLayout.currentMagic else {
            throw .invalidRecord("unsupported record batch magic \(magic); only magic 2 (Kafka 0.11+) is accepted")
        }
        guard readable >= RecordBatchLayout.records else {
            throw .corrupt("truncated record batch: \(readable) bytes, header needs \(RecordBatchLayout.records)")
        }
        guard batchLength >= RecordBatchLayout.minimumBatchLength else {
            throw .corrupt("batchLength \(batchLength) is below the minimum \(RecordBatchLayout.minimumBatchLength)")
        }
        let header = RecordBatchHeader(unchecked: bytes)
        let total = header.totalByteCount
        guard total <= readable else {
            throw .corrupt("truncated record batch: batchLength says \(total) bytes, \(readable) present")
        }
        if requireExact && total < readable {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[total...])
            if looksLikeBatch(rest) {
                throw .invalidRecord("produce request partition holds more than one record batch")
            }
            throw .corrupt("\(readable - total) trailing bytes after the record batch")
        }
        return header
    }

    /// Whether `bytes` starts with something shaped like another whole v2 batch (to tell two batches from garbage).
    private static func looksLikeBatch(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count >= RecordBatchLayout.records else { return false }
        let batchLength: Int32 = bytes.loadBigEndian(at: RecordBatchLayout.batchLength)
        let magic: Int8 = bytes.loadBigEndian(at: RecordBatchLayout.magic)
        return magic == RecordBatchLayout.currentMagic && batchLength >= RecordBatchLayout.minimumBatchLength
            && Int(batchLength) + RecordBatchLayout.batchLengthOverhead <= bytes.count
    }

    static func checkChecksum(_ bytes: UnsafeRawBufferPointer, header: RecordBatchHeader) throws(RecordBatchError) {
        let covered = UnsafeRawBufferPointer(rebasing: bytes[RecordBatchLayout.attributes..<header.totalByteCount])
        let computed = CRC32C.checksum(covered)
        guard computed == header.crc else {
            throw .corrupt(
                "record batch CRC-32C is \(hex(computed)), header says \(hex(header.crc))"
            )
        }
    }

    private static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }

    struct RecordsSummary {
        var maxTimestamp: Int64
        var offsetDeltaOfMaxTimestamp: Int32
    }

    /// Walks every record: structure, `offsetDelta == index`, count, timestamps. No allocation.
    static func checkRecords(
        _ records: UnsafeRawBufferPointer,
        header: RecordBatchHeader,
        policy: RecordBatchValidationPolicy
    ) throws(RecordBatchError) -> RecordsSummary {
        // A record timestamp ts is accepted when earliest <= ts <= latest (Kafka: now - ts <= before.max,
        // ts - now <= after.max), or when it is -1 (NO_TIMESTAMP). Int64.max means unbounded; other bounds
        // saturate instead of overflowing.
        let (earliest, earliestOverflow) = policy.nowMs.subtractingReportingOverflow(policy.timestampBeforeMaxMs)
        let earliestMs = earliestOverflow || policy.timestampBeforeMaxMs == .max ? Int64.min : earliest
        let (latest, latestOverflow) = policy.nowMs.addingReportingOverflow(policy.timestampAfterMaxMs)
        let latestMs = latestOverflow || policy.timestampAfterMaxMs == .max ? Int64.max : latest

        var scanner = RecordScanner(records)
        var maxTimestamp: Int64 = -1
        var offsetDeltaOfMaxTimestamp: Int32 = 0
        var index: Int32 = 0
        var timestampErrors: [RecordBatchError.RecordError] = []
        let recordCount = header.recordCount
        let baseTimestamp = header.baseTimestamp
        while index < recordCount {
            guard let record = try scanner.next() else {
                throw .invalidRecord("batch declares \(recordCount) records but holds only \(index)")
            }
            guard record.offsetDelta == index else {
                throw .invalidRecords([
                    .init(
                        batchIndex: index,
                        message: "record offsetDelta \(record.offsetDelta) out of sequence, expected \(index)"
                    )
                ])
            }
            let timestamp = baseTimestamp &+ record.timestampDelta
            if timestamp != -1 && (timestamp < earliestMs || timestamp > latestMs) {
                // Kafka's LogValidator checks every record and names each one out of range.
                if timestampErrors.count < RecordBatchError.recordErrorsMax {
                    timestampErrors.append(
                        .init(
                            batchIndex: index,
                            message:
                                "Timestamp \(timestamp) of message with offset \(header.baseOffset &+ Int64(index)) is out of "
                                + "range. The timestamp should be within [\(earliestMs), \(latestMs)]"
                        )
                    )
                }
            }
            if timestamp > maxTimestamp {
                maxTimestamp = timestamp
                offsetDeltaOfMaxTimestamp = index
            }
            index += 1
        }
        guard scanner.remainingByteCount == 0 else {
            throw .invalidRecord(
                "\(scanner.remainingByteCount) bytes remain after the \(recordCount) records the batch declares"
            )
        }
        if !timestampErrors.isEmpty { throw .invalidTimestamps(timestampErrors) }
        return RecordsSummary(maxTimestamp: maxTimestamp, offsetDeltaOfMaxTimestamp: offsetDeltaOfMaxTimestamp)
    }
}
