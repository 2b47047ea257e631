/// A bounds-checked cursor over raw bytes for the record format's zig-zag varints (Kafka's `ByteUtils`).
///
/// Every read returns `nil` instead of reading past `end`, so malformed input becomes an error, never a trap.
/// Lives only inside a `withUnsafe…` closure, like the pointer it holds.
struct ByteCursor {
    let base: UnsafeRawPointer
    var position: Int
    let end: Int

    init(_ bytes: UnsafeRawBufferPointer) {
        // An empty buffer may have no base address; then nothing is ever read (end is 0), so any non-null pointer
        // serves. `bitPattern: 1` is non-zero, so the initializer cannot return nil.
        self.base = bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!
        self.position = 0
        self.end = bytes.count
    }

    init(base: UnsafeRawPointer, position: Int, end: Int) {
        self.base = base
        self.position = position
        self.end = end
    }

    var remaining: Int { end - position }

    @inline(__always)
    mutating func readInt8() -> Int8? {
        guard position < end else { return nil }
        defer { position += 1 }
        return base.load(fromByteOffset: position, as: Int8.self)
    }

    /// Skips `count` bytes if that many remain.
    @inline(__always)
    mutating func skip(_ count: Int) -> Bool {
        guard count <= end - position else { return false }
        position += count
        return true
    }

    /// A zig-zag varint of at most 5 bytes (Kafka rejects longer ones: "Varint is too long").
    @inline(__always)
    mutating func readVarint() -> Int32? {
        guard let raw = readUnsignedVarint(maxByteCount: 5) else { return nil }
        // Bits beyond 32 in a fifth byte are dropped, as Kafka's ByteUtils.readVarint does.
        let value = UInt32(truncatingIfNeeded: raw)
        return Int32(bitPattern: (value >> 1) ^ (0 &- (value & 1)))
    }

    /// A zig-zag varlong of at most 10 bytes.
    @inline(__always)
    mutating func readVarlong() -> Int64? {
        guard let value = readUnsignedVarint(maxByteCount: 10) else { return nil }
        return Int64(bitPattern: (value >> 1) ^ (0 &- (value & 1)))
    }

    /// An unsigned LEB128 value of at most `maxByteCount` bytes.
    ///
    /// Records are mostly one- and two-byte varints (lengths, deltas), which take the first two branches; longer
    /// ones decode from one unaligned 64-bit load without a loop. Only varints of 3+ bytes near the end of the
    /// buffer, or longer than 8 bytes, take the byte-at-a-time path.
    @inline(__always)
    private mutating func readUnsignedVarint(maxByteCount: Int) -> UInt64? {
        guard position < end else { return nil }
        let first = base.load(fromByteOffset: position, as: UInt8.self)
        if first < 0x80 {
            position += 1
            return UInt64(first)
        }
        guard end - position >= 2 else { return nil }
        let second = base.load(fromByteOffset: position + 1, as: UInt8.self)
        if second < 0x80 {  // values up to 16383: most lengths and deltas of a record
            position += 2
            return UInt64(first & 0x7f) | UInt64(second) << 7
        }
        if end - position >= 8 {
            let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: position, as: UInt64.self))
            // The last byte of a varint is the first one whose top bit is clear.
            let stops = ~word & 0x8080_8080_8080_8080
            if stops != 0 {
                let byteCount = (stops.trailingZeroBitCount + 1) / 8
                guard byteCount <= maxByteCount else { return nil }
                let bytes = word & (UInt64.max >> (64 - 8 * byteCount))
                var value = bytes & 0x7f
                value |= (bytes >> 1) & (0x7f << 7)
                value |= (bytes >> 2) & (0x7f << 14)
                value |= (bytes >> 3) & (0x7f << 21)
                value |= (bytes >> 4) & (0x7f << 28)
                value |= (bytes >> 5) & (0x7f << 35)
                value |= (bytes >> 6) & (0x7f << 42)
                value |= (bytes >> 7) & (0x7f << 49)
                position += byteCount
                return value
            }
        }
        guard let (value, next) = Self.readUnsignedVarintSlow(base, position, end, maxByteCount) else { return nil }
        position = next
        return value
    }

    /// The byte-at-a-time decoder. Static and out of line so that the cursor of the caller stays in registers.
    @inline(never)
    private static func readUnsignedVarintSlow(
        _ base: UnsafeRawPointer,
        _ position: Int,
        _ end: Int,
        _ maxByteCount: Int
    ) -> (UInt64, Int)? {
        var value: UInt64 = 0
        var cursor = position
        var byteCount = 0
        while cursor < end && byteCount < maxByteCount {
            let byte = base.load(fromByteOffset: cursor, as: UInt8.self)
            value |= UInt64(byte & 0x7f) << UInt64(7 * byteCount)
            cursor += 1
            byteCount += 1
            if byte < 0x80 {
                return (value, cursor)
            }
        }
        return nil
    }
}

/// Where one record's fields lie in the records region, without copying anything (Kafka's `DefaultRecord` layout).
struct RawRecord {
    var attributes: Int8
    var timestampDelta: Int64
    var offsetDelta: Int32
    /// Position of the key bytes in the region; `keyLength` is -1 for a null key.
    var keyPosition: Int
    var keyLength: Int32
    var valuePosition: Int
    var valueLength: Int32
    /// Position of the first header; each is varint key length, key, varint value length (-1 null), value.
    var headersPosition: Int
    var headerCount: Int32
}

/// Walks the records of an (uncompressed) records region, checking each record's structure.
///
/// Allocates nothing: the validator runs it over every produced batch.
struct RecordScanner {
    private var cursor: ByteCursor
    /// How many records `next()` has returned.
    private(set) var index: Int = 0

    init(_ region: UnsafeRawBufferPointer) {
        cursor = ByteCursor(region)
    }

    /// Bytes not yet consumed.
    var remainingByteCount: Int { cursor.remaining }

    /// The next record, or `nil` at the end of the region.
    /// - Throws: CORRUPT_MESSAGE when the record does not parse or its fields do not fill exactly its length.
    @inline(__always)
    mutating func next() throws(RecordBatchError) -> RawRecord? {
        guard cursor.position < cursor.end else { return nil }
        guard let length = cursor.readVarint() else {
            throw .corrupt("malformed record length varint", recordIndex: index)
        }
        guard length >= 0, Int(length) <= cursor.remaining else {
            throw .corrupt("record length \(length) exceeds the \(cursor.remaining) bytes left", recordIndex: index)
        }
        let recordEnd = cursor.position + Int(length)
        var fields = ByteCursor(base: cursor.base, position: cursor.position, end: recordEnd)
        guard let attributes = fields.readInt8(),
            let timestampDelta = fields.readVarlong(),
            let offsetDelta = fields.readVarint(),
            let keyLength = fields.readVarint()
        else {
            throw .corrupt("record fields overrun the record length \(length)", recordIndex: index)
        }
        let keyPosition = fields.position
        guard keyLength >= -1, fields.skip(max(Int(keyLength), 0)) else {
            throw .corrupt("invalid record key length \(keyLength)", recordIndex: index)
        }
        guard let valueLength = fields.readVarint() else {
            throw .corrupt("record fields overrun the record length \(length)", recordIndex: index)
        }
        let valuePosition = fields.position
        guard valueLength >= -1, fields.skip(max(Int(valueLength), 0)) else {
            throw .corrupt("invalid record value length \(valueLength)", recordIndex: index)
        }
        guard let headerCount = fields.readVarint(), headerCount >= 0 else {
            throw .corrupt("invalid record header count", recordIndex: index)
        }
        let headersPosition = fields.position
        // Each header takes at least two bytes, so this loop ends within the record's bytes.
        var headerIndex: Int32 = 0
        while headerIndex < headerCount {
            guard let headerKeyLength = fields.readVarint(), headerKeyLength >= 0,
                fields.skip(Int(headerKeyLength))
            else {
                throw .corrupt("invalid key of record header \(headerIndex)", recordIndex: index)
            }
            guard let headerValueLength = fields.readVarint(), headerValueLength >= -1,
                fields.skip(max(Int(headerValueLength), 0))
            else {
                throw .corrupt("invalid value of record header \(headerIndex)", recordIndex: index)
            }
            headerIndex += 1
        }
        guard fields.position == recordEnd else {
            throw .corrupt(
                "record length \(length) leaves \(recordEnd - fields.position) bytes after its headers",
                recordIndex: index
            )
        }
        cursor.position = recordEnd
        index += 1
        return RawRecord(
            attributes: attributes,
            timestampDelta: timestampDelta,
            offsetDelta: offsetDelta,
            keyPosition: keyPosition,
            keyLength: keyLength,
            valuePosition: valuePosition,
            valueLength: valueLength,
            headersPosition: headersPosition,
            headerCount: headerCount
        )
    }
}
