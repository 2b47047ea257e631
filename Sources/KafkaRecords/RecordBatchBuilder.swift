import NIOCore

/// Builds RecordBatch v2 bytes: for tests, benchmarks, and the broker's internal logs (metadata, group offsets).
///
/// Computes `lastOffsetDelta`, `baseTimestamp` (the first record's, as Kafka's Java client does), `maxTimestamp`,
/// the compressed payload and the CRC-32C.
public struct RecordBatchBuilder: Sendable {
    public var compression: CompressionCodec
    /// The codec level; 0 picks the codec's default.
    public var compressionLevel: Int32
    public var baseOffset: Int64
    public var partitionLeaderEpoch: Int32
    public var producerId: Int64
    public var producerEpoch: Int16
    public var baseSequence: Int32
    public var isTransactional: Bool
    public var isControl: Bool
    public var timestampTypeIsLogAppendTime: Bool

    /// How many records were appended.
    public private(set) var recordCount: Int32 = 0
    private var body = ByteBuffer()
    private var baseTimestamp: Int64? = nil
    private var maxTimestamp: Int64 = -1

    public init(
        compression: CompressionCodec = .none,
        compressionLevel: Int32 = 0,
        baseOffset: Int64 = 0,
        partitionLeaderEpoch: Int32 = -1,
        producerId: Int64 = -1,
        producerEpoch: Int16 = -1,
        baseSequence: Int32 = -1,
        isTransactional: Bool = false,
        isControl: Bool = false,
        timestampTypeIsLogAppendTime: Bool = false
    ) {
        self.compression = compression
        self.compressionLevel = compressionLevel
        self.baseOffset = baseOffset
        self.partitionLeaderEpoch = partitionLeaderEpoch
        self.producerId = producerId
        self.producerEpoch = producerEpoch
        self.baseSequence = baseSequence
        self.isTransactional = isTransactional
        self.isControl = isControl
        self.timestampTypeIsLogAppendTime = timestampTypeIsLogAppendTime
    }

    /// Appends a record. `offsetDelta` defaults to the record's index; tests pass others to build invalid batches.
    public mutating func append(
        key: ByteBuffer?,
        value: ByteBuffer?,
        headers: [RecordHeader] = [],
        timestamp: Int64,
        offsetDelta: Int32? = nil
    ) {
        let base: Int64
        if let baseTimestamp {
            base = baseTimestamp
        } else {
            base = timestamp
            baseTimestamp = timestamp
        }
        let timestampDelta = timestamp &- base
        let delta = offsetDelta ?? recordCount

        var size = 1 + Varint.size(of: timestampDelta) + Varint.size(of: delta)
        size += Varint.bytesFieldSize(key?.readableBytes) + Varint.bytesFieldSize(value?.readableBytes)
        size += Varint.size(of: Int32(headers.count))
        for header in headers {
            size += Varint.bytesFieldSize(header.key.utf8.count) + Varint.bytesFieldSize(header.value?.readableBytes)
        }

        body.writeVarint(Int64(size))
        body.writeInteger(Int8(0))  // record attributes: unused
        body.writeVarint(timestampDelta)
        body.writeVarint(Int64(delta))
        body.writeBytesField(key)
        body.writeBytesField(value)
        body.writeVarint(Int64(headers.count))
        for header in headers {
            body.writeVarint(Int64(header.key.utf8.count))
            body.writeString(header.key)
            body.writeBytesField(header.value)
        }
        recordCount += 1
        maxTimestamp = Swift.max(maxTimestamp, timestamp)
    }

    /// Appends `record`'s timestamp, key, value and headers; its `offsetDelta` is assigned in append order.
    public mutating func append(_ record: Record) {
        append(key: record.key, value: record.value, headers: record.headers, timestamp: record.timestamp)
    }

    /// The batch bytes.
    public func build() -> ByteBuffer {
        let payload: ByteBuffer
        do {
            payload = try Compression.compress(body, codec: compression, level: compressionLevel)
        } catch {
            // Compressing an in-memory buffer with valid parameters fails only when memory runs out.
            fatalError("record batch compression failed: \(error)")
        }
        var attributes = Int16(compression.rawValue)
        if timestampTypeIsLogAppendTime { attributes |= RecordBatchLayout.timestampTypeMask }
        if isTransactional { attributes |= RecordBatchLayout.transactionalMask }
        if isControl { attributes |= RecordBatchLayout.controlMask }

        var batch = ByteBuffer()
        batch.reserveCapacity(RecordBatchHeader.byteCount + payload.readableBytes)
        batch.writeInteger(baseOffset)
        batch.writeInteger(
            Int32(RecordBatchHeader.byteCount - RecordBatchLayout.batchLengthOverhead + payload.readableBytes)
        )
        batch.writeInteger(partitionLeaderEpoch)
        batch.writeInteger(RecordBatchLayout.currentMagic)
        batch.writeInteger(UInt32(0))  // CRC, computed below over everything after it
        batch.writeInteger(attributes)
        batch.writeInteger(recordCount - 1)  // lastOffsetDelta
        batch.writeInteger(baseTimestamp ?? -1)
        batch.writeInteger(maxTimestamp)
        batch.writeInteger(producerId)
        batch.writeInteger(producerEpoch)
        batch.writeInteger(baseSequence)
        batch.writeInteger(recordCount)
        var records = payload
        batch.writeBuffer(&records)
        let crc = batch.withUnsafeReadableBytes { bytes in
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[RecordBatchLayout.attributes...]))
        }
        batch.setInteger(crc, at: batch.readerIndex + RecordBatchLayout.crc)
        return batch
    }
}

/// Zig-zag varint sizes for the record format.
enum Varint {
    static func size(of value: Int64) -> Int {
        var unsigned = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        var count = 1
        while unsigned >= 0x80 {
            unsigned >>= 7
            count += 1
        }
        return count
    }

    static func size(of value: Int32) -> Int { size(of: Int64(value)) }

    /// A varint length followed by that many bytes; `nil` (a null field) is the single varint -1.
    static func bytesFieldSize(_ byteCount: Int?) -> Int {
        guard let byteCount else { return size(of: Int64(-1)) }
        return size(of: Int64(byteCount)) + byteCount
    }
}

extension ByteBuffer {
    /// Writes a zig-zag varint (for 32-bit fields the encoding is the same, just never longer than 5 bytes).
    mutating func writeVarint(_ value: Int64) {
        var unsigned = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        while unsigned >= 0x80 {
            writeInteger(UInt8(truncatingIfNeeded: unsigned) | 0x80)
            unsigned >>= 7
        }
        writeInteger(UInt8(unsigned))
    }

    mutating func writeBytesField(_ bytes: ByteBuffer?) {
        guard var bytes else {
            writeVarint(-1)
            return
        }
        writeVarint(Int64(bytes.readableBytes))
        writeBuffer(&bytes)
    }
}
