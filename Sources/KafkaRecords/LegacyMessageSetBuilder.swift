import CKafkaRecords
import NIOCore

/// Builds a magic 0 or 1 message set (Kafka's `MemoryRecordsBuilder` for the old formats): plain messages one
/// after the other, or, with a codec, one wrapper message whose value is the compressed set of inner messages.
/// Inner offsets are absolute for magic 0 and relative to the first message for magic 1, whose wrapper carries
/// the last message's offset and the largest timestamp (or the LogAppendTime).
public struct LegacyMessageSetBuilder: Sendable {
    public let magic: Int8
    public let compression: CompressionCodec
    public let timestampTypeIsLogAppendTime: Bool
    /// The codec level; 0 picks the codec's default.
    public var compressionLevel: Int32 = 0

    private var body = ByteBuffer()
    private var firstOffset: Int64?
    private var lastOffset: Int64 = -1
    private var maxTimestamp: Int64 = -1
    public private(set) var messageCount = 0

    /// - Precondition: `magic` is 0 or 1; `compression` is not zstd, which these formats cannot carry.
    public init(magic: Int8, compression: CompressionCodec = .none, timestampTypeIsLogAppendTime: Bool = false) {
        precondition(magic == 0 || magic == 1, "legacy message sets are magic 0 or 1")
        precondition(compression != .zstd, "zstd exists only in magic 2 batches")
        self.magic = magic
        self.compression = compression
        self.timestampTypeIsLogAppendTime = magic == 1 && timestampTypeIsLogAppendTime
    }

    /// The bytes one message takes, log overhead included.
    public static func messageByteCount(magic: Int8, keyBytes: Int?, valueBytes: Int?) -> Int {
        LegacyLayout.logOverhead + LegacyLayout.recordOverhead(magic: magic) + max(keyBytes ?? 0, 0)
            + max(valueBytes ?? 0, 0)
    }

    /// The bytes built so far (before compression).
    public var uncompressedByteCount: Int { body.readableBytes }

    /// Appends a message with an absolute offset (offsets must grow).
    public mutating func append(offset: Int64, timestamp: Int64, key: ByteBuffer?, value: ByteBuffer?) {
        if firstOffset == nil { firstOffset = offset }
        let innerOffset = compression != .none && magic == 1 ? offset - (firstOffset ?? offset) : offset
        let stamp = magic == 0 ? -1 : timestamp
        Self.write(
            &body,
            offset: innerOffset,
            magic: magic,
            attributes: timestampTypeIsLogAppendTime ? LegacyLayout.timestampTypeMask : 0,
            timestamp: stamp,
            key: key,
            value: value
        )
        lastOffset = offset
        maxTimestamp = max(maxTimestamp, stamp)
        messageCount += 1
    }

    /// The message set; empty when nothing was appended.
    public func build() throws(RecordBatchError) -> ByteBuffer {
        guard compression != .none, messageCount > 0 else { return body }
        let compressed = try Self.compress(body, codec: compression, magic: magic, level: compressionLevel)
        var attributes = Int8(compression.rawValue)
        if timestampTypeIsLogAppendTime { attributes |= LegacyLayout.timestampTypeMask }
        var wrapper = ByteBuffer()
        Self.write(
            &wrapper,
            offset: lastOffset,
            magic: magic,
            attributes: attributes,
            timestamp: maxTimestamp,
            key: nil,
            value: compressed
        )
        return wrapper
    }

    /// One message with its log overhead and CRC-32.
    static func write(
        _ buffer: inout ByteBuffer,
        offset: Int64,
        magic: Int8,
        attributes: Int8,
        timestamp: Int64,
        key: ByteBuffer?,
        value: ByteBuffer?
    ) {
        let size = messageByteCount(magic: magic, keyBytes: key?.readableBytes, valueBytes: value?.readableBytes)
        let start = buffer.writerIndex
        buffer.reserveCapacity(minimumWritableBytes: size)
        buffer.writeInteger(offset)
        buffer.writeInteger(Int32(size - LegacyLayout.logOverhead))
        buffer.writeInteger(UInt32(0))  // CRC, below
        buffer.writeInteger(magic)
        buffer.writeInteger(attributes)
        if magic == 1 { buffer.writeInteger(timestamp) }
        for field in [key, value] {
            if var bytes = field {
                buffer.writeInteger(Int32(bytes.readableBytes))
                buffer.writeBuffer(&bytes)
            } else {
                buffer.writeInteger(Int32(-1))
            }
        }
        let crc = buffer.withUnsafeReadableBytes { bytes in
            let covered = UnsafeRawBufferPointer(rebasing: bytes[(start - buffer.readerIndex + LegacyLayout.magic)...])
            return fjord_crc32_ieee(covered.baseAddress?.assumingMemoryBound(to: UInt8.self), covered.count)
        }
        buffer.setInteger(crc, at: start + LegacyLayout.crc)
    }

    /// Compresses a wrapper's inner messages; lz4 for magic 0 gets the header checksum those readers expect.
    static func compress(
        _ input: ByteBuffer,
        codec: CompressionCodec,
        magic: Int8,
        level: Int32
    ) throws(RecordBatchError) -> ByteBuffer {
        guard codec == .lz4, magic == 0 else { return try Compression.compress(input, codec: codec, level: level) }
        var output = fjord_codec_output()
        defer { fjord_codec_output_free(&output) }
        let status = input.withUnsafeReadableBytes { bytes in
            fjord_lz4_compress_magic0(
                bytes.baseAddress?.assumingMemoryBound(to: UInt8.self),
                bytes.count,
                level,
                &output
            )
        }
        guard Int(status) == FJORD_CODEC_OK else { throw .corrupt("lz4 compression failed") }
        return ByteBuffer(bytes: UnsafeRawBufferPointer(start: output.data, count: output.length))
    }
}
