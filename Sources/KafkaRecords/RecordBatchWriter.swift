import NIOCore

/// Offset assignment (DESIGN.md §3.1): the core rewrites only `baseOffset` and `partitionLeaderEpoch`, which lie
/// before the CRC-covered range, so the producer's bytes — and their CRC — are stored and served verbatim.
public enum RecordBatchWriter {
    /// The byte count of the prefix that `rewrittenPrefix` returns: baseOffset, batchLength, partitionLeaderEpoch.
    public static let prefixByteCount = RecordBatchLayout.magic

    /// The 16 bytes that replace bytes 0..<16 of a batch: the new `baseOffset`, the original `batchLength`, the new
    /// `partitionLeaderEpoch`. A backend can write this prefix and then the producer's bytes from offset 16 on.
    public static func rewrittenPrefix(
        of header: RecordBatchHeader,
        baseOffset: Int64,
        partitionLeaderEpoch: Int32
    ) -> ByteBuffer {
        var prefix = ByteBuffer()
        prefix.reserveCapacity(prefixByteCount)
        prefix.writeInteger(baseOffset)
        prefix.writeInteger(header.batchLength)
        prefix.writeInteger(partitionLeaderEpoch)
        assert(prefix.readableBytes == prefixByteCount)
        return prefix
    }

    /// Sets `baseOffset` and `partitionLeaderEpoch` of the batch at `batch.readerIndex` in place.
    /// - Precondition: `batch` holds at least a record batch header (it was validated before).
    public static func assignOffsets(_ batch: inout ByteBuffer, baseOffset: Int64, partitionLeaderEpoch: Int32) {
        precondition(batch.readableBytes >= RecordBatchHeader.byteCount, "assignOffsets needs a whole batch header")
        batch.setInteger(baseOffset, at: batch.readerIndex + RecordBatchLayout.baseOffset)
        batch.setInteger(partitionLeaderEpoch, at: batch.readerIndex + RecordBatchLayout.partitionLeaderEpoch)
    }
}
