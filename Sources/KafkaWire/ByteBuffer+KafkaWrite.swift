import NIOCore

// Writing Kafka's primitive types. Writes never fail: the broker encodes values it built itself.
// Where a value cannot be represented (a classic string longer than Int16.max bytes) the write is
// lenient and documented rather than a trap.

extension ByteBuffer {
    // MARK: Fixed width

    @inlinable
    public mutating func writeKafkaInt8(_ value: Int8) { self.writeInteger(value, endianness: .big) }

    @inlinable
    public mutating func writeKafkaInt16(_ value: Int16) { self.writeInteger(value, endianness: .big) }

    @inlinable
    public mutating func writeKafkaInt32(_ value: Int32) { self.writeInteger(value, endianness: .big) }

    @inlinable
    public mutating func writeKafkaInt64(_ value: Int64) { self.writeInteger(value, endianness: .big) }

    @inlinable
    public mutating func writeKafkaUInt16(_ value: UInt16) { self.writeInteger(value, endianness: .big) }

    @inlinable
    public mutating func writeKafkaUInt32(_ value: UInt32) { self.writeInteger(value, endianness: .big) }

    @inlinable
    public mutating func writeKafkaFloat64(_ value: Double) {
        self.writeInteger(value.bitPattern, endianness: .big)
    }

    @inlinable
    public mutating func writeKafkaBool(_ value: Bool) { self.writeInteger(value ? 1 : 0, as: UInt8.self) }

    // MARK: Varints

    @inlinable
    public mutating func writeKafkaUnsignedVarint(_ value: UInt32) {
        var remaining = value
        while remaining >= 0x80 {
            self.writeInteger(UInt8(truncatingIfNeeded: remaining) | 0x80)
            remaining &>>= 7
        }
        self.writeInteger(UInt8(truncatingIfNeeded: remaining))
    }

    @inlinable
    public mutating func writeKafkaUnsignedVarlong(_ value: UInt64) {
        var remaining = value
        while remaining >= 0x80 {
            self.writeInteger(UInt8(truncatingIfNeeded: remaining) | 0x80)
            remaining &>>= 7
        }
        self.writeInteger(UInt8(truncatingIfNeeded: remaining))
    }

    /// Kafka's `varint`: zigzag, then unsigned varint.
    @inlinable
    public mutating func writeKafkaVarint(_ value: Int32) {
        writeKafkaUnsignedVarint(UInt32(bitPattern: (value &<< 1) ^ (value &>> 31)))
    }

    /// Kafka's `varlong`: zigzag, then unsigned varlong.
    @inlinable
    public mutating func writeKafkaVarlong(_ value: Int64) {
        writeKafkaUnsignedVarlong(UInt64(bitPattern: (value &<< 1) ^ (value &>> 63)))
    }

    /// The number of bytes `writeKafkaUnsignedVarint(value)` writes.
    @inlinable
    public static func kafkaUnsignedVarintSize(_ value: UInt32) -> Int {
        // 1 byte per started group of 7 significant bits, at least one.
        let bits = 32 - (value | 1).leadingZeroBitCount
        return (bits + 6) / 7
    }

    // MARK: Length prefixes

    /// Writes a bytes/array length: int32 (classic) or uvarint(length + 1) (compact); -1 is null.
    @inlinable
    mutating func kafkaWriteLength(_ length: Int, compact: Bool) {
        if compact {
            writeKafkaUnsignedVarint(UInt32(truncatingIfNeeded: length + 1))
        } else {
            writeKafkaInt32(Int32(truncatingIfNeeded: length))
        }
    }

    // MARK: Strings

    /// A `string` or `compact_string`. A classic string is limited to Int16.max UTF-8 bytes; a
    /// longer one is cut to that many bytes (an error message the broker composed, never a name a
    /// client sent, which Kafka bounds far lower).
    @inlinable
    public mutating func writeKafkaString(_ value: String, compact: Bool) {
        let utf8 = value.utf8
        let byteCount = utf8.count
        if compact {
            writeKafkaUnsignedVarint(UInt32(truncatingIfNeeded: byteCount + 1))
            self.writeString(value)
        } else if byteCount <= Int(Int16.max) {
            writeKafkaInt16(Int16(truncatingIfNeeded: byteCount))
            self.writeString(value)
        } else {
            writeKafkaInt16(Int16.max)
            self.writeBytes(utf8.prefix(Int(Int16.max)))
        }
    }

    /// A `nullable_string` (-1 = null) or `compact_nullable_string` (0 = null).
    @inlinable
    public mutating func writeKafkaNullableString(_ value: String?, compact: Bool) {
        if let value {
            writeKafkaString(value, compact: compact)
        } else if compact {
            writeKafkaUnsignedVarint(0)
        } else {
            writeKafkaInt16(-1)
        }
    }

    // MARK: Bytes

    @inlinable
    public mutating func writeKafkaBytes(_ value: [UInt8], compact: Bool) {
        kafkaWriteLength(value.count, compact: compact)
        self.writeBytes(value)
    }

    @inlinable
    public mutating func writeKafkaNullableBytes(_ value: [UInt8]?, compact: Bool) {
        if let value {
            writeKafkaBytes(value, compact: compact)
        } else {
            kafkaWriteLength(-1, compact: compact)
        }
    }

    /// Bytes from a buffer's readable region (used for `records`); the source is not consumed.
    @inlinable
    public mutating func writeKafkaBytes(_ value: ByteBuffer, compact: Bool) {
        kafkaWriteLength(value.readableBytes, compact: compact)
        self.writeImmutableBuffer(value)
    }

    @inlinable
    public mutating func writeKafkaNullableBytes(_ value: ByteBuffer?, compact: Bool) {
        if let value {
            writeKafkaBytes(value, compact: compact)
        } else {
            kafkaWriteLength(-1, compact: compact)
        }
    }

    // MARK: Arrays

    /// An array's element count (int32, or uvarint(count + 1) when compact); the caller then
    /// writes the elements.
    @inlinable
    public mutating func writeKafkaArrayCount(_ count: Int, compact: Bool) {
        kafkaWriteLength(count, compact: compact)
    }

    /// A nullable array's count; nil writes a null array (-1, or 0 when compact).
    @inlinable
    public mutating func writeKafkaNullableArrayCount(_ count: Int?, compact: Bool) {
        kafkaWriteLength(count ?? -1, compact: compact)
    }

    // MARK: UUID

    @inlinable
    public mutating func writeKafkaUUID(_ value: KafkaUUID) {
        writeInteger(value.mostSignificantBits, endianness: .big)
        writeInteger(value.leastSignificantBits, endianness: .big)
    }

    // MARK: Tagged fields (KIP-482)

    /// Writes one tagged field: uvarint tag, uvarint size, then whatever `body` writes. The body
    /// writes straight into this buffer; the size is patched in afterwards (moving the value when
    /// it is 128 bytes or longer), so no scratch buffer is allocated.
    @inlinable
    public mutating func writeKafkaTaggedField(tag: UInt32, _ body: (inout ByteBuffer) -> Void) {
        writeKafkaUnsignedVarint(tag)
        let sizeIndex = self.writerIndex
        self.writeInteger(0, as: UInt8.self)
        body(&self)
        let valueByteCount = self.writerIndex - sizeIndex - 1
        let size = UInt32(truncatingIfNeeded: valueByteCount)
        let sizeByteCount = ByteBuffer.kafkaUnsignedVarintSize(size)
        if sizeByteCount > 1 {
            // Grow by the extra size bytes, then slide the value right to make room.
            self.writeRepeatingByte(0, count: sizeByteCount - 1)
            // Cannot throw: both ranges end at or before the new writer index, which was just grown
            // to sizeIndex + sizeByteCount + valueByteCount.
            _ = try! self.copyBytes(at: sizeIndex + 1, to: sizeIndex + sizeByteCount, length: valueByteCount)
        }
        var remaining = size
        var index = sizeIndex
        while remaining >= 0x80 {
            self.setInteger(UInt8(truncatingIfNeeded: remaining) | 0x80, at: index)
            remaining &>>= 7
            index += 1
        }
        self.setInteger(UInt8(truncatingIfNeeded: remaining), at: index)
    }

    /// An empty tagged-field section (count 0).
    @inlinable
    public mutating func writeKafkaEmptyTaggedFields() {
        self.writeInteger(0, as: UInt8.self)
    }
}
