import NIOCore

/// What the broker changes in a produced batch before storing it, for a topic whose `compression.type` is not
/// `producer` or whose `message.timestamp.type` is `LogAppendTime` (Kafka's `LogValidator`). Only the codec, the
/// timestamp type and the max timestamp change; the producer id, epoch, base sequence, record count and the records
/// themselves stay the producer's, so idempotence bookkeeping sees the same batch.
public struct BatchRewrite: Sendable, Equatable {
    /// The codec batches are stored with; nil keeps each producer's codec.
    public var compression: CompressionCodec?
    /// The level for that codec: zlib's (0: its default), liblz4's (0: fast mode, 3+: LZ4HC), libzstd's (0: 3).
    public var compressionLevel: Int32
    /// Stamps each batch with this time as LogAppendTime; nil keeps the producer's CreateTime.
    public var logAppendTimeMs: Int64?

    public init(compression: CompressionCodec?, compressionLevel: Int32 = 0, logAppendTimeMs: Int64? = nil) {
        self.compression = compression
        self.compressionLevel = compressionLevel
        self.logAppendTimeMs = logAppendTimeMs
    }
}

/// A validated batch and what to store for it.
public struct RewrittenBatch: Sendable {
    /// What the partition needs to append the stored batch (its header, size, max timestamp).
    public var validated: ValidatedBatch
    /// The new batch; nil when the producer's bytes are stored as sent (same codec, CreateTime).
    public var bytes: ByteBuffer?
    /// Uncompressed record bytes that went through a codec change (0 when none did): what a request's
    /// recompression budget counts.
    public var recompressedByteCount: Int
}

extension RecordBatchValidator {
    /// Validates a produced batch (as `validateProduceRecords` does) and rewrites it as `rewrite` says, inflating
    /// it at most once: decompressed with the producer's codec (bounded by `policy.maxDecompressedBytes`, also for
    /// uncompressed records that are to be compressed), recompressed with the topic's, or stamped with the append
    /// time in place, the CRC-32C computed again. A batch whose codec is already the topic's and whose topic keeps
    /// CreateTime is not copied. A rewritten batch above `policy.maxBatchBytes` is MESSAGE_TOO_LARGE, as in Kafka.
    public static func validate(
        _ records: ByteBuffer,
        policy: RecordBatchValidationPolicy,
        rewrite: BatchRewrite
    ) throws(RecordBatchError) -> RewrittenBatch {
        try records.withUnsafeReadableBytes { (bytes) throws(RecordBatchError) -> RewrittenBatch in
            let (header, codec) = try checkProduceHeader(bytes, policy: policy)
            let target = rewrite.compression ?? codec
            let region = UnsafeRawBufferPointer(rebasing: bytes[RecordBatchLayout.records..<header.totalByteCount])
            guard target != codec else {
                let validated = try validateProduceRecords(bytes, policy: policy)
                guard let appendTime = rewrite.logAppendTimeMs else {
                    return RewrittenBatch(validated: validated, bytes: nil, recompressedByteCount: 0)
                }
                // Kafka's in-place path: only the timestamp type and max timestamp change.
                let batch = build(header, codec: codec, maxTimestamp: appendTime, logAppendTime: true, payload: region)
                return RewrittenBatch(
                    validated: try stored(batch, maxTimestamp: appendTime, offsetDelta: header.lastOffsetDelta),
                    bytes: batch,
                    recompressedByteCount: 0
                )
            }
            return try Compression.withDecompressed(region, codec: codec, limit: policy.maxDecompressedBytes) {
                (plain) throws(RecordBatchError) -> RewrittenBatch in
                let summary = try checkRecords(plain, header: header, policy: policy)
                let appendTime = rewrite.logAppendTimeMs
                let maxTimestamp = appendTime ?? summary.maxTimestamp
                let batch = try Compression.withCompressed(plain, codec: target, level: rewrite.compressionLevel) {
                    (payload) throws(RecordBatchError) -> ByteBuffer in
                    build(
                        header,
                        codec: target,
                        maxTimestamp: maxTimestamp,
                        logAppendTime: appendTime != nil,
                        payload: payload
                    )
                }
                guard batch.readableBytes <= policy.maxBatchBytes else {
                    throw .tooLarge(
                        "record batch is \(batch.readableBytes) bytes as \(target), above the limit of \(policy.maxBatchBytes)"
                    )
                }
                return RewrittenBatch(
                    validated: try stored(
                        batch,
                        maxTimestamp: maxTimestamp,
                        offsetDelta: appendTime == nil ? summary.offsetDeltaOfMaxTimestamp : header.lastOffsetDelta
                    ),
                    bytes: batch,
                    recompressedByteCount: plain.count
                )
            }
        }
    }

    /// A v2 batch with the producer's header fields around `payload` (records encoded with `codec`); the CRC-32C
    /// covers the new attributes, max timestamp and payload.
    static func build(
        _ header: RecordBatchHeader,
        codec: CompressionCodec,
        maxTimestamp: Int64,
        logAppendTime: Bool,
        payload: UnsafeRawBufferPointer
    ) -> ByteBuffer {
        var attributes = header.attributes & ~RecordBatchLayout.compressionMask | Int16(codec.rawValue)
        if logAppendTime { attributes |= RecordBatchLayout.timestampTypeMask }
        var batch = ByteBuffer()
        batch.reserveCapacity(RecordBatchHeader.byteCount + payload.count)
        batch.writeInteger(header.baseOffset)
        batch.writeInteger(Int32(RecordBatchHeader.byteCount - RecordBatchLayout.batchLengthOverhead + payload.count))
        batch.writeInteger(header.partitionLeaderEpoch)
        batch.writeInteger(RecordBatchLayout.currentMagic)
        batch.writeInteger(UInt32(0))  // CRC, computed below
        batch.writeInteger(attributes)
        batch.writeInteger(header.lastOffsetDelta)
        batch.writeInteger(header.baseTimestamp)
        batch.writeInteger(maxTimestamp)
        batch.writeInteger(header.producerId)
        batch.writeInteger(header.producerEpoch)
        batch.writeInteger(header.baseSequence)
        batch.writeInteger(header.recordCount)
        batch.writeBytes(payload)
        let crc = batch.withUnsafeReadableBytes { bytes in
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[RecordBatchLayout.attributes...]))
        }
        batch.setInteger(crc, at: batch.readerIndex + RecordBatchLayout.crc)
        return batch
    }

    private static func stored(
        _ batch: ByteBuffer,
        maxTimestamp: Int64,
        offsetDelta: Int32
    ) throws(RecordBatchError)
        -> ValidatedBatch
    {
        let header = try RecordBatchHeader(parsing: batch)
        return ValidatedBatch(
            header: header,
            recordCount: header.recordCount,
            maxTimestamp: maxTimestamp,
            offsetDeltaOfMaxTimestamp: offsetDelta,
            lastOffsetDelta: header.lastOffsetDelta,
            byteCount: batch.readableBytes
        )
    }
}
