import CKafkaRecords
import NIOCore

/// Byte positions of a magic 0 or 1 message (Kafka's `LegacyRecord`), all big-endian:
///
///     offset int64, size int32 | crc uint32, magic int8, attributes int8, [timestamp int64 (magic 1)],
///     key bytes (int32 length, -1 null), value bytes (int32 length, -1 null)
///
/// `size` counts every byte after itself; the CRC-32 (IEEE) covers everything after the CRC field.
enum LegacyLayout {
    static let offset = 0
    static let size = 8
    /// offset + size: the "log overhead" in front of every message.
    static let logOverhead = 12
    static let crc = 12
    static let magic = 16
    static let attributes = 17
    static let timestamp = 18

    static let compressionMask: Int8 = 0x07
    static let timestampTypeMask: Int8 = 0x08

    /// The bytes of a message after its log overhead when key and value are empty: crc, magic, attributes,
    /// (timestamp), key length, value length.
    static func recordOverhead(magic: Int8) -> Int { magic == 0 ? 14 : 22 }

    /// Where the key length sits.
    static func keyLength(magic: Int8) -> Int { magic == 0 ? 18 : 26 }
}

/// One message of a magic 0 or 1 message set, with the offset a consumer sees (absolute, also for the inner
/// messages of a compressed wrapper).
public struct LegacyMessage: Sendable, Equatable {
    public var offset: Int64
    public var magic: Int8
    /// CreateTime or LogAppendTime in ms (`-1`, NO_TIMESTAMP, for magic 0).
    public var timestamp: Int64
    public var timestampTypeIsLogAppendTime: Bool
    public var key: ByteBuffer?
    public var value: ByteBuffer?

    public init(
        offset: Int64,
        magic: Int8,
        timestamp: Int64 = -1,
        timestampTypeIsLogAppendTime: Bool = false,
        key: ByteBuffer?,
        value: ByteBuffer?
    ) {
        self.offset = offset
        self.magic = magic
        self.timestamp = timestamp
        self.timestampTypeIsLogAppendTime = timestampTypeIsLogAppendTime
        self.key = key
        self.value = value
    }
}

/// Reading message sets of the formats before Kafka 0.11 (magic 0 and 1), as Produce v0–2 carries them and Fetch
/// v0–3 serves them. Compressed messages are wrappers whose value is a compressed message set.
public enum LegacyMessageSet {
    /// What a message set holds, wrappers unpacked.
    public struct Contents: Sendable {
        /// Every message in order: the plain ones and the inner messages of each wrapper.
        public var messages: [LegacyMessage]
        /// The codec of the last compressed wrapper (`.none` when there is none): Kafka's source codec, which
        /// `compression.type=producer` keeps.
        public var sourceCodec: CompressionCodec
        /// The size of the largest top-level message (a wrapper counts whole), log overhead included.
        public var largestMessageBytes: Int
        /// Inflated bytes of every wrapper together.
        public var decompressedByteCount: Int
    }

    /// The magic byte of the first message or batch in `buffer` (both keep it at byte 16), or nil when too short.
    public static func magic(of buffer: ByteBuffer) -> Int8? {
        buffer.getInteger(at: buffer.readerIndex + LegacyLayout.magic, as: Int8.self)
    }

    /// Parses and checks a whole message set: sizes, CRC-32 of every message (inner ones too), magic 0 or 1
    /// (inner messages the wrapper's), known codec, no compressed message inside a wrapper, no null wrapper
    /// value. Wrappers inflate at most `maxDecompressedBytes` in total. With `allowsPartialTrailingMessage` a
    /// partial last message (a fetch response cut at its byte limit) is ignored, else it is CORRUPT_MESSAGE.
    public static func contents(
        of buffer: ByteBuffer,
        maxDecompressedBytes: Int,
        allowsPartialTrailingMessage: Bool = false
    ) throws(RecordBatchError) -> Contents {
        var contents = Contents(messages: [], sourceCodec: .none, largestMessageBytes: 0, decompressedByteCount: 0)
        var position = buffer.readerIndex
        let end = buffer.writerIndex
        while position < end {
            guard let message = try nextMessage(in: buffer, at: position, end: end) else {
                if allowsPartialTrailingMessage { break }
                throw .corrupt("\(end - position) bytes at the end of the message set are not a whole message")
            }
            position += message.byteCount
            contents.largestMessageBytes = max(contents.largestMessageBytes, message.byteCount)
            guard message.codec != .none else {
                contents.messages.append(message.decoded)
                continue
            }
            contents.sourceCodec = message.codec
            guard let value = message.decoded.value else {
                throw .corrupt("compressed message at offset \(message.decoded.offset) has a null value")
            }
            let remaining = maxDecompressedBytes - contents.decompressedByteCount
            let inner = try decompress(
                value,
                codec: message.codec,
                magic: message.decoded.magic,
                limit: max(0, remaining)
            )
            contents.decompressedByteCount += inner.readableBytes
            try appendInner(inner, of: message.decoded, to: &contents.messages)
        }
        return contents
    }

    /// One top-level message as it lies in the buffer.
    struct RawMessage {
        var decoded: LegacyMessage
        var codec: CompressionCodec
        /// Log overhead included.
        var byteCount: Int
    }

    /// The message at `position`, checked (size, magic, CRC, key and value lengths); nil when the buffer ends
    /// before it does.
    static func nextMessage(in buffer: ByteBuffer, at position: Int, end: Int) throws(RecordBatchError) -> RawMessage? {
        guard end - position > LegacyLayout.magic,
            let offset = buffer.getInteger(at: position, as: Int64.self),
            let size = buffer.getInteger(at: position + LegacyLayout.size, as: Int32.self),
            let magic = buffer.getInteger(at: position + LegacyLayout.magic, as: Int8.self)
        else { return nil }
        guard magic == 0 || magic == 1 else {
            throw .invalidRecord("message at offset \(offset) has magic \(magic) inside a magic 0/1 message set")
        }
        guard size >= LegacyLayout.recordOverhead(magic: magic) else {
            throw .corrupt("message at offset \(offset) has size \(size), below the minimum of its format")
        }
        let byteCount = LegacyLayout.logOverhead + Int(size)
        guard byteCount <= end - position else { return nil }
        return try buffer.withUnsafeReadableBytes { (all) throws(RecordBatchError) -> RawMessage in
            let bytes = UnsafeRawBufferPointer(rebasing: all[(position - buffer.readerIndex)...].prefix(byteCount))
            let crc: UInt32 = bytes.loadBigEndian(at: LegacyLayout.crc)
            let covered = UnsafeRawBufferPointer(rebasing: bytes[LegacyLayout.magic...])
            let computed = fjord_crc32_ieee(covered.baseAddress?.assumingMemoryBound(to: UInt8.self), covered.count)
            guard computed == crc else {
                throw .corrupt("message at offset \(offset) has CRC-32 \(computed), its header says \(crc)")
            }
            let attributes: Int8 = bytes.loadBigEndian(at: LegacyLayout.attributes)
            let codecId = attributes & LegacyLayout.compressionMask
            // zstd (4) exists only in magic 2 batches (KIP-110).
            guard codecId <= 3, let codec = CompressionCodec(rawValue: codecId) else {
                throw .corrupt("message at offset \(offset) has unknown compression codec id \(codecId)")
            }
            var cursor = LegacyLayout.keyLength(magic: magic)
            let timestamp: Int64 = magic == 0 ? -1 : bytes.loadBigEndian(at: LegacyLayout.timestamp)
            let key = try field(bytes, &cursor, buffer: buffer, base: position, offset: offset)
            let value = try field(bytes, &cursor, buffer: buffer, base: position, offset: offset)
            guard cursor == byteCount else {
                throw .corrupt("message at offset \(offset) has \(byteCount - cursor) bytes after its value")
            }
            let message = LegacyMessage(
                offset: offset,
                magic: magic,
                timestamp: timestamp,
                timestampTypeIsLogAppendTime: magic == 1 && attributes & LegacyLayout.timestampTypeMask != 0,
                key: key,
                value: value
            )
            return RawMessage(decoded: message, codec: codec, byteCount: byteCount)
        }
    }

    /// A key or value: int32 length (-1 null) and bytes, as a zero-copy slice of `buffer`.
    private static func field(
        _ bytes: UnsafeRawBufferPointer,
        _ cursor: inout Int,
        buffer: ByteBuffer,
        base: Int,
        offset: Int64
    ) throws(RecordBatchError) -> ByteBuffer? {
        guard bytes.count - cursor >= 4 else {
            throw .corrupt("message at offset \(offset) ends inside a length field")
        }
        let length: Int32 = bytes.loadBigEndian(at: cursor)
        cursor += 4
        if length < 0 {
            guard length == -1 else { throw .corrupt("message at offset \(offset) has length \(length)") }
            return nil
        }
        guard Int(length) <= bytes.count - cursor else {
            throw .corrupt("message at offset \(offset) has a field of \(length) bytes beyond its size")
        }
        defer { cursor += Int(length) }
        return buffer.getSlice(at: base + cursor, length: Int(length))
    }

    /// The inner messages of a wrapper, with the offsets a consumer gives them: magic 0 inner offsets are
    /// absolute; magic 1 ones are relative, the wrapper carrying the last inner message's absolute offset (KIP-31).
    /// A LogAppendTime wrapper's timestamp is every inner message's (KIP-32).
    private static func appendInner(
        _ inner: ByteBuffer,
        of wrapper: LegacyMessage,
        to messages: inout [LegacyMessage]
    ) throws(RecordBatchError) {
        var position = inner.readerIndex
        let end = inner.writerIndex
        var unpacked: [LegacyMessage] = []
        while position < end {
            guard let message = try nextMessage(in: inner, at: position, end: end) else {
                throw .corrupt("compressed message at offset \(wrapper.offset) ends inside an inner message")
            }
            guard message.codec == .none else {
                throw .invalidRecord("compressed message at offset \(wrapper.offset) holds a compressed message")
            }
            guard message.decoded.magic == wrapper.magic else {
                throw .invalidRecord("inner message magic \(message.decoded.magic) differs from its wrapper's")
            }
            unpacked.append(message.decoded)
            position += message.byteCount
        }
        guard let last = unpacked.last else {
            throw .corrupt("compressed message at offset \(wrapper.offset) holds no message")
        }
        let shift = wrapper.magic == 1 ? wrapper.offset &- last.offset : 0
        for var message in unpacked {
            message.offset = message.offset &+ shift
            if wrapper.timestampTypeIsLogAppendTime {
                message.timestamp = wrapper.timestamp
                message.timestampTypeIsLogAppendTime = true
            }
            messages.append(message)
        }
    }

    /// Inflates a wrapper's value; magic 0 lz4 accepts the frame checksum Kafka's old writers got wrong.
    static func decompress(
        _ value: ByteBuffer,
        codec: CompressionCodec,
        magic: Int8,
        limit: Int
    ) throws(RecordBatchError) -> ByteBuffer {
        guard codec == .lz4, magic == 0 else { return try Compression.decompress(value, codec: codec, limit: limit) }
        var output = fjord_codec_output()
        defer { fjord_codec_output_free(&output) }
        let status = value.withUnsafeReadableBytes { bytes in
            fjord_lz4_decompress_magic0(
                bytes.baseAddress?.assumingMemoryBound(to: UInt8.self),
                bytes.count,
                limit,
                &output
            )
        }
        switch Int(status) {
        case FJORD_CODEC_OK:
            return ByteBuffer(bytes: UnsafeRawBufferPointer(start: output.data, count: output.length))
        case FJORD_CODEC_ERROR_LIMIT:
            throw .corrupt("lz4 message inflates beyond the decompression limit of \(limit) bytes")
        default:
            throw .corrupt("lz4 message does not decompress")
        }
    }
}
