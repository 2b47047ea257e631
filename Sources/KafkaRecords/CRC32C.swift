import CKafkaRecords
import NIOCore

/// CRC-32C (Castagnoli), the checksum RecordBatch v2 stores in its `crc` field (KIP-98).
///
/// Backed by C: the CPU's `crc32` instruction (SSE4.2) where the machine has it, chosen once at load time, and a
/// slicing-by-8 table otherwise. Seeds chain: `checksum(b, seed: checksum(a))` is the checksum of `a` followed by `b`.
public enum CRC32C {
    /// Whether `checksum` runs on the CPU's crc32 instruction on this machine.
    public static var isHardwareAccelerated: Bool { fjord_crc32c_hardware_available() != 0 }

    /// The CRC-32C of `bytes`, continuing from `seed` (0 to start, or the result for the bytes before these).
    @inlinable
    public static func checksum(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        fjord_crc32c(seed, bytes.baseAddress, bytes.count)
    }

    /// The CRC-32C of the readable bytes of `buffer`, continuing from `seed`.
    @inlinable
    public static func checksum(_ buffer: ByteBuffer, seed: UInt32 = 0) -> UInt32 {
        buffer.withUnsafeReadableBytes { checksum($0, seed: seed) }
    }

    /// The CRC-32C computed with the portable table, whatever the CPU offers (tests compare both paths).
    static func portableChecksum(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        fjord_crc32c_portable(seed, bytes.baseAddress, bytes.count)
    }

    /// The CRC-32C computed with the crc32 instruction, or `nil` when this CPU has none.
    static func hardwareChecksum(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32? {
        guard isHardwareAccelerated else { return nil }
        return fjord_crc32c_hardware(seed, bytes.baseAddress, bytes.count)
    }
}
