import NIOCore

// Reading Kafka's primitive types (https://kafka.apache.org/protocol#protocol_types).
//
// Every read either returns a value and moves the reader index past it, or throws a
// `KafkaWireError`; it never traps on client input. Lengths and counts are checked against
// `readableBytes` before anything is allocated, so a forged 2-billion-element count costs nothing.
// On a throw the reader index may have moved; callers discard the buffer.

extension ByteBuffer {
    // MARK: Fixed width

    @inlinable
    mutating func kafkaReadFixed<T: FixedWidthInteger>(_: T.Type) throws(KafkaWireError) -> T {
        guard let value = self.readInteger(endianness: .big, as: T.self) else {
            throw .truncated(neededBytes: MemoryLayout<T>.size, readableBytes: self.readableBytes)
        }
        return value
    }

    @inlinable
    public mutating func readKafkaInt8() throws(KafkaWireError) -> Int8 { try kafkaReadFixed(Int8.self) }

    @inlinable
    public mutating func readKafkaInt16() throws(KafkaWireError) -> Int16 { try kafkaReadFixed(Int16.self) }

    @inlinable
    public mutating func readKafkaInt32() throws(KafkaWireError) -> Int32 { try kafkaReadFixed(Int32.self) }

    @inlinable
    public mutating func readKafkaInt64() throws(KafkaWireError) -> Int64 { try kafkaReadFixed(Int64.self) }

    @inlinable
    public mutating func readKafkaUInt16() throws(KafkaWireError) -> UInt16 { try kafkaReadFixed(UInt16.self) }

    @inlinable
    public mutating func readKafkaUInt32() throws(KafkaWireError) -> UInt32 { try kafkaReadFixed(UInt32.self) }

    /// Kafka's `float64`: an IEEE 754 double, big-endian.
    @inlinable
    public mutating func readKafkaFloat64() throws(KafkaWireError) -> Double {
        Double(bitPattern: try kafkaReadFixed(UInt64.self))
    }

    /// Kafka's `bool`: one byte, any non-zero value is true (as the Java reader does).
    @inlinable
    public mutating func readKafkaBool() throws(KafkaWireError) -> Bool {
        try kafkaReadFixed(UInt8.self) != 0
    }

    // MARK: Varints

    /// An unsigned LEB128 varint of at most 5 bytes. Like Kafka's `ByteUtils.readUnsignedVarint`,
    /// bits above 32 in the fifth byte are dropped and a sixth byte is an error.
    @inlinable
    public mutating func readKafkaUnsignedVarint() throws(KafkaWireError) -> UInt32 {
        var value: UInt32 = 0
        var shift: UInt32 = 0
        var index = self.readerIndex
        let end = self.writerIndex
        while true {
            guard index < end else {
                throw .truncated(neededBytes: index - self.readerIndex + 1, readableBytes: self.readableBytes)
            }
            // Safe: `index` is inside the readable region checked above.
            let byte = self.getInteger(at: index, as: UInt8.self).unsafelyUnwrapped
            index += 1
            value |= UInt32(byte & 0x7F) &<< shift
            if byte & 0x80 == 0 { break }
            shift += 7
            if shift > 28 { throw .varintTooLong }
        }
        self.moveReaderIndex(to: index)
        return value
    }

    /// An unsigned LEB128 varint of at most 10 bytes.
    @inlinable
    public mutating func readKafkaUnsignedVarlong() throws(KafkaWireError) -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        var index = self.readerIndex
        let end = self.writerIndex
        while true {
            guard index < end else {
                throw .truncated(neededBytes: index - self.readerIndex + 1, readableBytes: self.readableBytes)
            }
            let byte = self.getInteger(at: index, as: UInt8.self).unsafelyUnwrapped
            index += 1
            value |= UInt64(byte & 0x7F) &<< shift
            if byte & 0x80 == 0 { break }
            shift += 7
            if shift > 63 { throw .varintTooLong }
        }
        self.moveReaderIndex(to: index)
        return value
    }

    /// Kafka's `varint`: a zigzag-encoded Int32.
    @inlinable
    public mutating func readKafkaVarint() throws(KafkaWireError) -> Int32 {
        let raw = try readKafkaUnsignedVarint()
        return Int32(bitPattern: (raw &>> 1) ^ (0 &- (raw & 1)))
    }

    /// Kafka's `varlong`: a zigzag-encoded Int64.
    @inlinable
    public mutating func readKafkaVarlong() throws(KafkaWireError) -> Int64 {
        let raw = try readKafkaUnsignedVarlong()
        return Int64(bitPattern: (raw &>> 1) ^ (0 &- (raw & 1)))
    }

    // MARK: Length prefixes

    /// Reads a string length: int16 (classic) or uvarint(length + 1) (compact). Returns -1 for null.
    @inlinable
    mutating func kafkaReadStringLength(compact: Bool) throws(KafkaWireError) -> Int {
        if compact {
            return Int(try readKafkaUnsignedVarint()) - 1
        }
        let length = Int(try readKafkaInt16())
        guard length >= -1 else { throw .invalidLength(Int64(length)) }
        return length
    }

    /// Reads a bytes or array length: int32 (classic) or uvarint(length + 1) (compact). Returns -1
    /// for null.
    @inlinable
    mutating func kafkaReadLength(compact: Bool) throws(KafkaWireError) -> Int {
        if compact {
            return Int(try readKafkaUnsignedVarint()) - 1
        }
        let length = Int(try readKafkaInt32())
        guard length >= -1 else { throw .invalidLength(Int64(length)) }
        return length
    }

    @inlinable
    func kafkaCheckReadable(_ length: Int) throws(KafkaWireError) {
        guard length <= self.readableBytes else {
            throw .truncated(neededBytes: length, readableBytes: self.readableBytes)
        }
    }

    // MARK: Strings

    /// A non-nullable `string` (int16 length) or `compact_string`. Invalid UTF-8 is repaired with
    /// U+FFFD, as Java's decoder does.
    @inlinable
    public mutating func readKafkaString(compact: Bool) throws(KafkaWireError) -> String {
        guard let value = try readKafkaNullableString(compact: compact) else { throw .unexpectedNull }
        return value
    }

    /// A `nullable_string` (int16 length, -1 = null) or `compact_nullable_string` (0 = null).
    @inlinable
    public mutating func readKafkaNullableString(compact: Bool) throws(KafkaWireError) -> String? {
        let length = try kafkaReadStringLength(compact: compact)
        if length < 0 { return nil }
        try kafkaCheckReadable(length)
        return self.readString(length: length)
    }

    // MARK: Bytes

    /// Non-nullable `bytes` (int32 length) or `compact_bytes`, copied into an array.
    @inlinable
    public mutating func readKafkaBytes(compact: Bool) throws(KafkaWireError) -> [UInt8] {
        guard let value = try readKafkaNullableBytes(compact: compact) else { throw .unexpectedNull }
        return value
    }

    /// `nullable_bytes` (int32 length, -1 = null) or `compact_nullable_bytes` (0 = null).
    @inlinable
    public mutating func readKafkaNullableBytes(compact: Bool) throws(KafkaWireError) -> [UInt8]? {
        let length = try kafkaReadLength(compact: compact)
        if length < 0 { return nil }
        try kafkaCheckReadable(length)
        return self.readBytes(length: length)
    }

    /// Non-nullable bytes as a zero-copy slice of this buffer (used for `records`).
    @inlinable
    public mutating func readKafkaBytesSlice(compact: Bool) throws(KafkaWireError) -> ByteBuffer {
        guard let value = try readKafkaNullableBytesSlice(compact: compact) else { throw .unexpectedNull }
        return value
    }

    /// Nullable bytes as a zero-copy slice of this buffer (used for `records`).
    @inlinable
    public mutating func readKafkaNullableBytesSlice(compact: Bool) throws(KafkaWireError) -> ByteBuffer? {
        let length = try kafkaReadLength(compact: compact)
        if length < 0 { return nil }
        try kafkaCheckReadable(length)
        return self.readSlice(length: length)
    }

    // MARK: Arrays

    /// A non-nullable array's element count (int32, or uvarint(count + 1) when compact). Throws when
    /// the count exceeds the readable bytes — every element takes at least one byte in practice,
    /// and Kafka's own reader applies the same bound — so callers may `reserveCapacity(count)`.
    @inlinable
    public mutating func readKafkaArrayCount(compact: Bool) throws(KafkaWireError) -> Int {
        guard let count = try readKafkaNullableArrayCount(compact: compact) else { throw .unexpectedNull }
        return count
    }

    /// A nullable array's element count; nil for a null array (-1, or 0 when compact).
    @inlinable
    public mutating func readKafkaNullableArrayCount(compact: Bool) throws(KafkaWireError) -> Int? {
        let count = try kafkaReadLength(compact: compact)
        if count < 0 { return nil }
        guard count <= self.readableBytes else {
            throw .countExceedsReadableBytes(count: Int64(count), readableBytes: self.readableBytes)
        }
        return count
    }

    // MARK: UUID

    /// Kafka's `uuid`: 16 bytes, most significant half first.
    @inlinable
    public mutating func readKafkaUUID() throws(KafkaWireError) -> KafkaUUID {
        guard self.readableBytes >= 16 else {
            throw .truncated(neededBytes: 16, readableBytes: self.readableBytes)
        }
        let most = try kafkaReadFixed(UInt64.self)
        let least = try kafkaReadFixed(UInt64.self)
        return KafkaUUID(mostSignificantBits: most, leastSignificantBits: least)
    }

    // MARK: Tagged fields (KIP-482)

    /// The number of fields in a tagged-field section. The count is bounded by the readable bytes
    /// (each field takes at least two).
    @inlinable
    public mutating func readKafkaTaggedFieldCount() throws(KafkaWireError) -> Int {
        let count = Int(try readKafkaUnsignedVarint())
        guard count <= self.readableBytes else {
            throw .countExceedsReadableBytes(count: Int64(count), readableBytes: self.readableBytes)
        }
        return count
    }

    /// One tagged field: its tag and its value as a zero-copy slice (decode known tags from the
    /// slice; unknown ones are simply dropped, which skips them).
    @inlinable
    public mutating func readKafkaTaggedField() throws(KafkaWireError) -> (tag: UInt32, value: ByteBuffer) {
        let tag = try readKafkaUnsignedVarint()
        let size = Int(try readKafkaUnsignedVarint())
        try kafkaCheckReadable(size)
        // Safe: `size` readable bytes were checked just above.
        let value = self.readSlice(length: size).unsafelyUnwrapped
        return (tag, value)
    }

    /// Skips a whole tagged-field section (count, then each field), for structs with no known tags.
    @inlinable
    public mutating func skipKafkaTaggedFields() throws(KafkaWireError) {
        let count = try readKafkaTaggedFieldCount()
        for _ in 0..<count {
            _ = try readKafkaUnsignedVarint()
            let size = Int(try readKafkaUnsignedVarint())
            try kafkaCheckReadable(size)
            self.moveReaderIndex(forwardBy: size)
        }
    }
}
