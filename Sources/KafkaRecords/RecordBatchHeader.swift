import NIOCore

/// The compression codec of a batch: bits 0–2 of its `attributes`.
public enum CompressionCodec: Int8, Sendable, CaseIterable {
    case none = 0
    case gzip = 1
    case snappy = 2
    case lz4 = 3
    case zstd = 4
}

/// Byte positions of the RecordBatch v2 fields (Kafka's `DefaultRecordBatch`), all big-endian.
enum RecordBatchLayout {
    static let baseOffset = 0
    static let batchLength = 8
    static let partitionLeaderEpoch = 12
    static let magic = 16
    static let crc = 17
    static let attributes = 21
    static let lastOffsetDelta = 23
    static let baseTimestamp = 27
    static let maxTimestamp = 35
    static let producerId = 43
    static let producerEpoch = 51
    static let baseSequence = 53
    static let recordCount = 57
    static let records = 61

    /// `batchLength` counts every byte after itself: the batch is `batchLength + 12` bytes long.
    static let batchLengthOverhead = 12
    /// The smallest possible `batchLength`: a header with no records.
    static let minimumBatchLength = Int32(records - batchLengthOverhead)

    static let compressionMask: Int16 = 0x07
    static let timestampTypeMask: Int16 = 0x08
    static let transactionalMask: Int16 = 0x10
    static let controlMask: Int16 = 0x20
    static let deleteHorizonMask: Int16 = 0x40

    /// The only record batch format Fjord stores (magic 0 and 1 are pre-0.11 message sets).
    static let currentMagic: Int8 = 2
}

/// The fixed 61-byte header of a RecordBatch v2.
public struct RecordBatchHeader: Sendable, Equatable {
    /// The size of the header; the records start right after it.
    public static let byteCount = RecordBatchLayout.records

    public var baseOffset: Int64
    /// The number of bytes after this field: the whole batch is `batchLength + 12` bytes.
    public var batchLength: Int32
    public var partitionLeaderEpoch: Int32
    public var magic: Int8
    /// CRC-32C of every byte from `attributes` to the end of the batch.
    public var crc: UInt32
    public var attributes: Int16
    public var lastOffsetDelta: Int32
    public var baseTimestamp: Int64
    public var maxTimestamp: Int64
    public var producerId: Int64
    public var producerEpoch: Int16
    public var baseSequence: Int32
    public var recordCount: Int32

    /// The codec of the records, or `nil` for the unassigned codec ids 5–7.
    public var compression: CompressionCodec? {
        CompressionCodec(rawValue: Int8(truncatingIfNeeded: attributes & RecordBatchLayout.compressionMask))
    }

    /// The raw codec id (0–7), for error messages about unknown codecs.
    public var compressionId: Int8 { Int8(truncatingIfNeeded: attributes & RecordBatchLayout.compressionMask) }

    public var timestampTypeIsLogAppendTime: Bool { attributes & RecordBatchLayout.timestampTypeMask != 0 }
    public var isTransactional: Bool { attributes & RecordBatchLayout.transactionalMask != 0 }
    public var isControl: Bool { attributes & RecordBatchLayout.controlMask != 0 }
    public var hasDeleteHorizon: Bool { attributes & RecordBatchLayout.deleteHorizonMask != 0 }

    /// The size of the whole batch in bytes (`batchLength + 12`).
    public var totalByteCount: Int { Int(batchLength) + RecordBatchLayout.batchLengthOverhead }

    /// The offset of the last record: `baseOffset + lastOffsetDelta`.
    public var lastOffset: Int64 { baseOffset &+ Int64(lastOffsetDelta) }

    /// Reads the header at `buffer.readerIndex` without consuming anything.
    ///
    /// Checks only that 61 bytes are readable; what the fields say (magic, lengths, CRC) is for
    /// `RecordBatchValidator` to judge.
    public init(parsing buffer: ByteBuffer) throws(RecordBatchError) {
        let readable = buffer.readableBytes
        guard readable >= Self.byteCount else {
            throw .corrupt("record batch header needs \(Self.byteCount) bytes, only \(readable) present")
        }
        let parsed = buffer.withUnsafeReadableBytes { RecordBatchHeader(unchecked: $0) }
        self = parsed
    }

    /// Reads the header from the first 61 bytes of `bytes`; the caller has checked the count.
    init(unchecked bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count >= RecordBatchLayout.records)
        baseOffset = bytes.loadBigEndian(at: RecordBatchLayout.baseOffset)
        batchLength = bytes.loadBigEndian(at: RecordBatchLayout.batchLength)
        partitionLeaderEpoch = bytes.loadBigEndian(at: RecordBatchLayout.partitionLeaderEpoch)
        magic = bytes.loadBigEndian(at: RecordBatchLayout.magic)
        crc = bytes.loadBigEndian(at: RecordBatchLayout.crc)
        attributes = bytes.loadBigEndian(at: RecordBatchLayout.attributes)
        lastOffsetDelta = bytes.loadBigEndian(at: RecordBatchLayout.lastOffsetDelta)
        baseTimestamp = bytes.loadBigEndian(at: RecordBatchLayout.baseTimestamp)
        maxTimestamp = bytes.loadBigEndian(at: RecordBatchLayout.maxTimestamp)
        producerId = bytes.loadBigEndian(at: RecordBatchLayout.producerId)
        producerEpoch = bytes.loadBigEndian(at: RecordBatchLayout.producerEpoch)
        baseSequence = bytes.loadBigEndian(at: RecordBatchLayout.baseSequence)
        recordCount = bytes.loadBigEndian(at: RecordBatchLayout.recordCount)
    }
}

extension UnsafeRawBufferPointer {
    /// A big-endian integer at `position`, which need not be aligned. Bounds are the caller's to check.
    @inline(__always)
    func loadBigEndian<T: FixedWidthInteger>(at position: Int, as: T.Type = T.self) -> T {
        T(bigEndian: self.loadUnaligned(fromByteOffset: position, as: T.self))
    }
}
