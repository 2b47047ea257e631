import NIOCore

/// Conversion between the message formats before Kafka 0.11 (magic 0 and 1) and RecordBatch v2, which is all
/// Fjord stores (Kafka's `LogValidator` up-conversion and `RecordsUtil.downConvert`).
public enum LegacyRecordsConverter {
    /// A v2 batch made from a produced magic 0/1 message set.
    public struct UpConverted: Sendable {
        /// One uncompressed-offset (base 0) RecordBatch v2 holding every message, CRC-32C computed.
        public var batch: ByteBuffer
        /// Bytes the producer's wrappers inflated to (what a request's recompression budget counts).
        public var decompressedByteCount: Int
        public var messageCount: Int
    }

    /// Up-converts a produced message set (Produce v0–2) to one RecordBatch v2, as Kafka's `LogValidator` does:
    /// every message, inner messages of compressed wrappers included, becomes a record of one batch, with its
    /// key, value and (magic 1) timestamp; magic 0 messages have none (-1). The batch is compressed with
    /// `compression` (the topic's `compression.type`), or with the producer's codec when nil. It carries no
    /// producer id: idempotence does not exist before magic 2. The broker assigns its offsets.
    ///
    /// - Throws: MESSAGE_TOO_LARGE for a message above `maxMessageBytes`, CORRUPT_MESSAGE for what does not parse
    ///   or check, INVALID_TIMESTAMP for a LogAppendTime set by the producer, INVALID_RECORD for an empty set.
    public static func upConvert(
        _ messageSet: ByteBuffer,
        compression: CompressionCodec?,
        compressionLevel: Int32 = 0,
        maxMessageBytes: Int,
        maxDecompressedBytes: Int
    ) throws(RecordBatchError) -> UpConverted {
        let contents = try LegacyMessageSet.contents(of: messageSet, maxDecompressedBytes: maxDecompressedBytes)
        guard contents.largestMessageBytes <= maxMessageBytes else {
            throw .tooLarge(
                "message is \(contents.largestMessageBytes) bytes, above the limit of \(maxMessageBytes)"
            )
        }
        guard !contents.messages.isEmpty else { throw .invalidRecord("produce request partition has no message") }
        var builder = RecordBatchBuilder(
            compression: compression ?? contents.sourceCodec,
            compressionLevel: compressionLevel
        )
        for message in contents.messages {
            guard !message.timestampTypeIsLogAppendTime else {
                throw .invalidTimestamp("producers must not set the timestamp type to LogAppendTime")
            }
            builder.append(key: message.key, value: message.value, timestamp: message.timestamp)
        }
        return UpConverted(
            batch: builder.build(),
            decompressedByteCount: contents.decompressedByteCount,
            messageCount: contents.messages.count
        )
    }

    /// Down-converts stored v2 batches (as the log returns them) to a magic 0 or 1 message set for Fetch v0–3, as
    /// Kafka's `RecordsUtil.downConvert` does: control batches are left out (old readers cannot parse them),
    /// record headers and producer ids are dropped, an uncompressed batch becomes plain messages from
    /// `fromOffset` on, a compressed one a wrapper of its codec holding all its records (the reader skips those
    /// before its offset). What is stored does not change.
    ///
    /// Stops before the message or wrapper that would take the output beyond `maxBytes`, except that with
    /// `minimumOneMessage` the first always goes out (KIP-74), so a consumer can make progress.
    ///
    /// - Throws: UNSUPPORTED_COMPRESSION_TYPE when the first batch to convert is zstd (which the old formats
    ///   cannot carry; a zstd batch after converted ones ends the output instead); CORRUPT_MESSAGE for a stored
    ///   batch that does not check or inflates beyond `maxDecompressedBytes`.
    public static func downConvert(
        _ stored: ByteBuffer,
        toMagic magic: Int8,
        fromOffset: Int64,
        maxBytes: Int,
        minimumOneMessage: Bool,
        maxDecompressedBytes: Int
    ) throws(RecordBatchError) -> ByteBuffer {
        precondition(magic == 0 || magic == 1, "down-conversion is to magic 0 or 1")
        var output = ByteBuffer()
        func fits(_ byteCount: Int) -> Bool {
            output.readableBytes + byteCount <= maxBytes || (output.readableBytes == 0 && minimumOneMessage)
        }
        for batch in RecordBatchReader.batches(in: stored) {
            let header = try RecordBatchValidator.validateStoredBatch(batch)
            // Batches wholly before the fetch offset (the log may return them) and control batches stay out.
            if header.isControl || header.baseOffset + Int64(header.lastOffsetDelta) < fromOffset { continue }
            guard let codec = header.compression, codec != .zstd else {
                if output.readableBytes > 0 { break }
                throw .unsupportedCompression("zstd batches cannot be down-converted to magic \(magic) (KIP-110)")
            }
            let records = try RecordBatchReader.records(of: batch, maxDecompressedBytes: maxDecompressedBytes)
            if codec == .none {
                for record in records where header.baseOffset + Int64(record.offsetDelta) >= fromOffset {
                    let size = LegacyMessageSetBuilder.messageByteCount(
                        magic: magic,
                        keyBytes: record.key?.readableBytes,
                        valueBytes: record.value?.readableBytes
                    )
                    guard fits(size) else { return output }
                    LegacyMessageSetBuilder.write(
                        &output,
                        offset: header.baseOffset + Int64(record.offsetDelta),
                        magic: magic,
                        attributes: magic == 1 && header.timestampTypeIsLogAppendTime
                            ? LegacyLayout.timestampTypeMask : 0,
                        timestamp: record.timestamp,
                        key: record.key,
                        value: record.value
                    )
                }
                continue
            }
            var builder = LegacyMessageSetBuilder(
                magic: magic,
                compression: codec,
                timestampTypeIsLogAppendTime: header.timestampTypeIsLogAppendTime
            )
            for record in records {
                builder.append(
                    offset: header.baseOffset + Int64(record.offsetDelta),
                    timestamp: record.timestamp,
                    key: record.key,
                    value: record.value
                )
            }
            var wrapper = try builder.build()
            guard wrapper.readableBytes > 0 else { continue }
            guard fits(wrapper.readableBytes) else { return output }
            output.writeBuffer(&wrapper)
        }
        return output
    }
}
