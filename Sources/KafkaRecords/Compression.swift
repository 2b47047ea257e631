import CKafkaRecords
import NIOCore

/// The compression codecs of RecordBatch v2 (gzip, snappy, lz4, zstd), backed by zlib, libsnappy, liblz4 and libzstd.
///
/// Decompression is always bounded by a byte limit: the broker inflates what producers send, and a few KiB of zstd
/// can claim gigabytes.
public enum Compression {
    /// Compresses `input` the way Kafka's Java client does: gzip member, xerial-framed snappy in 32 KiB blocks,
    /// lz4 frame with independent 64 KiB blocks, zstd frame. `.none` returns `input` unchanged.
    /// - Parameter level: the codec's level; 0 picks the codec's default.
    public static func compress(
        _ input: ByteBuffer,
        codec: CompressionCodec,
        level: Int32 = 0
    ) throws(RecordBatchError) -> ByteBuffer {
        if codec == .none { return input }
        var output = fjord_codec_output()
        defer { fjord_codec_output_free(&output) }
        let status = input.withUnsafeReadableBytes { bytes in
            fjord_compress(
                Int32(codec.rawValue),
                bytes.baseAddress?.assumingMemoryBound(to: UInt8.self),
                bytes.count,
                level,
                &output
            )
        }
        guard Int(status) == FJORD_CODEC_OK else {
            throw .corrupt("\(codec) compression failed: \(detail(of: output))")
        }
        return ByteBuffer(bytes: UnsafeRawBufferPointer(start: output.data, count: output.length))
    }

    /// Runs `body` on `input` compressed with `codec` (as `compress` does), freed when `body` returns: the
    /// broker's recompression path, which builds the new batch around the bytes without another copy.
    static func withCompressed<Result>(
        _ input: UnsafeRawBufferPointer,
        codec: CompressionCodec,
        level: Int32,
        _ body: (UnsafeRawBufferPointer) throws(RecordBatchError) -> Result
    ) throws(RecordBatchError) -> Result {
        if codec == .none { return try body(input) }
        var output = fjord_codec_output()
        defer { fjord_codec_output_free(&output) }
        let status = fjord_compress(
            Int32(codec.rawValue),
            input.baseAddress?.assumingMemoryBound(to: UInt8.self),
            input.count,
            level,
            &output
        )
        guard Int(status) == FJORD_CODEC_OK else {
            throw .corrupt("\(codec) compression failed: \(detail(of: output))")
        }
        return try body(UnsafeRawBufferPointer(start: output.data, count: output.length))
    }

    /// Decompresses `input`, failing with CORRUPT_MESSAGE when it is not a valid `codec` stream or would inflate
    /// beyond `limit` bytes.
    public static func decompress(
        _ input: ByteBuffer,
        codec: CompressionCodec,
        limit: Int
    ) throws(RecordBatchError) -> ByteBuffer {
        try input.withUnsafeReadableBytes { (bytes) throws(RecordBatchError) -> ByteBuffer in
            try decompress(bytes, codec: codec, limit: limit)
        }
    }

    /// Decompresses `input`, failing with CORRUPT_MESSAGE when it is not a valid `codec` stream or would inflate
    /// beyond `limit` bytes.
    public static func decompress(
        _ input: UnsafeRawBufferPointer,
        codec: CompressionCodec,
        limit: Int
    ) throws(RecordBatchError) -> ByteBuffer {
        try withDecompressed(input, codec: codec, limit: limit) { (bytes) throws(RecordBatchError) -> ByteBuffer in
            ByteBuffer(bytes: bytes)
        }
    }

    /// Runs `body` on the decompressed bytes of `input`, freed when `body` returns: the validator's path, which
    /// parses them in place instead of copying them into a `ByteBuffer`.
    static func withDecompressed<Result>(
        _ input: UnsafeRawBufferPointer,
        codec: CompressionCodec,
        limit: Int,
        _ body: (UnsafeRawBufferPointer) throws(RecordBatchError) -> Result
    ) throws(RecordBatchError) -> Result {
        precondition(limit >= 0, "decompression limit must not be negative")
        if codec == .none {
            guard input.count <= limit else {
                throw .corrupt("uncompressed records are \(input.count) bytes, above the limit \(limit)")
            }
            return try body(input)
        }
        var output = fjord_codec_output()
        defer { fjord_codec_output_free(&output) }
        let status = fjord_decompress(
            Int32(codec.rawValue),
            input.baseAddress?.assumingMemoryBound(to: UInt8.self),
            input.count,
            limit,
            &output
        )
        switch Int(status) {
        case FJORD_CODEC_OK:
            return try body(UnsafeRawBufferPointer(start: output.data, count: output.length))
        case FJORD_CODEC_ERROR_LIMIT:
            throw .corrupt("\(codec) records inflate beyond the decompression limit of \(limit) bytes")
        default:
            throw .corrupt("\(codec) records do not decompress: \(detail(of: output))")
        }
    }

    private static func detail(of output: fjord_codec_output) -> String {
        guard let detail = output.detail else { return "unknown error" }
        return String(cString: detail)
    }
}
