import KafkaWire
import NIOCore
import Testing

/// Bytes written by `body` into a fresh buffer.
private func encode(_ body: (inout ByteBuffer) -> Void) -> [UInt8] {
    var buffer = ByteBuffer()
    body(&buffer)
    return Array(buffer.readableBytesView)
}

@Suite("Varints")
struct VarintTests {
    /// Unsigned varints take one byte per started group of 7 bits and decode to the same value.
    @Test(arguments: [
        (UInt32(0), 1), (1, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3),
        (2_097_151, 3), (2_097_152, 4), (268_435_455, 4), (268_435_456, 5), (UInt32.max, 5),
    ])
    func unsignedVarintRoundTrips(value: UInt32, byteCount: Int) throws {
        let bytes = encode { $0.writeKafkaUnsignedVarint(value) }
        #expect(bytes.count == byteCount)
        #expect(ByteBuffer.kafkaUnsignedVarintSize(value) == byteCount)
        var buffer = ByteBuffer(bytes: bytes)
        #expect(try buffer.readKafkaUnsignedVarint() == value)
        #expect(buffer.readableBytes == 0)
    }

    static let zigzagCases: [(value: Int32, expected: [UInt8])] = [
        (0, [0x00]), (-1, [0x01]), (1, [0x02]), (-64, [0x7F]), (64, [0x80, 0x01]),
        (Int32.max, [0xFE, 0xFF, 0xFF, 0xFF, 0x0F]), (Int32.min, [0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
    ]

    /// Zigzag varints match Kafka's encoding at 0, ±1 and the Int32 extremes.
    @Test(arguments: zigzagCases)
    func zigzagVarintMatchesKafka(value: Int32, expected: [UInt8]) throws {
        #expect(encode { $0.writeKafkaVarint(value) } == expected)
        var buffer = ByteBuffer(bytes: expected)
        #expect(try buffer.readKafkaVarint() == value)
    }

    /// Zigzag varlongs round-trip at 0, ±1 and the Int64 extremes (10 bytes at the extremes).
    @Test(arguments: [Int64(0), 1, -1, 300, -300, Int64(Int32.max) + 1, Int64.max, Int64.min])
    func zigzagVarlongRoundTrips(value: Int64) throws {
        let bytes = encode { $0.writeKafkaVarlong(value) }
        if value == .max || value == .min { #expect(bytes.count == 10) }
        var buffer = ByteBuffer(bytes: bytes)
        #expect(try buffer.readKafkaVarlong() == value)
        #expect(buffer.readableBytes == 0)
    }

    /// A varint with a sixth continuation byte (a varlong with an eleventh) is rejected.
    @Test func overlongVarintsThrow() {
        var varint = ByteBuffer(bytes: [0x80, 0x80, 0x80, 0x80, 0x80, 0x01])
        #expect(throws: KafkaWireError.varintTooLong) { try varint.readKafkaUnsignedVarint() }
        var varlong = ByteBuffer(bytes: Array(repeating: 0x80, count: 10) + [0x01])
        #expect(throws: KafkaWireError.varintTooLong) { try varlong.readKafkaVarlong() }
    }
}

@Suite("Fixed-width values")
struct FixedWidthTests {
    /// Integers are big-endian and round-trip at their extremes.
    @Test func integersAreBigEndian() throws {
        let bytes = encode {
            $0.writeKafkaInt8(-2)
            $0.writeKafkaInt16(0x0102)
            $0.writeKafkaInt32(Int32.min)
            $0.writeKafkaInt64(Int64.max)
            $0.writeKafkaUInt16(UInt16.max)
            $0.writeKafkaUInt32(0xDEAD_BEEF)
            $0.writeKafkaBool(true)
            $0.writeKafkaFloat64(-2.5)
        }
        #expect(Array(bytes[0..<3]) == [0xFE, 0x01, 0x02])
        var buffer = ByteBuffer(bytes: bytes)
        #expect(try buffer.readKafkaInt8() == -2)
        #expect(try buffer.readKafkaInt16() == 0x0102)
        #expect(try buffer.readKafkaInt32() == Int32.min)
        #expect(try buffer.readKafkaInt64() == Int64.max)
        #expect(try buffer.readKafkaUInt16() == UInt16.max)
        #expect(try buffer.readKafkaUInt32() == 0xDEAD_BEEF)
        #expect(try buffer.readKafkaBool() == true)
        #expect(try buffer.readKafkaFloat64() == -2.5)
        #expect(buffer.readableBytes == 0)
    }
}

@Suite("Strings, bytes and arrays")
struct LengthPrefixedTests {
    /// Classic strings carry an int16 length (-1 = null); compact ones uvarint(length + 1) (0 = null).
    @Test(arguments: [
        ("kafka" as String?, false, [0x00, 0x05] + Array("kafka".utf8)),
        ("kafka", true, [0x06] + Array("kafka".utf8)),
        ("", false, [0x00, 0x00]),
        ("", true, [0x01]),
        (nil, false, [0xFF, 0xFF]),
        (nil, true, [0x00]),
    ])
    func stringEncodings(value: String?, compact: Bool, expected: [UInt8]) throws {
        #expect(encode { $0.writeKafkaNullableString(value, compact: compact) } == expected)
        var buffer = ByteBuffer(bytes: expected)
        #expect(try buffer.readKafkaNullableString(compact: compact) == value)
        #expect(buffer.readableBytes == 0)
    }

    /// Reading null where a value is required is an error, not an empty value.
    @Test(arguments: [false, true])
    func nullForNonNullableStringThrows(compact: Bool) {
        var buffer = ByteBuffer(bytes: compact ? [0x00] : [0xFF, 0xFF])
        #expect(throws: KafkaWireError.unexpectedNull) { try buffer.readKafkaString(compact: compact) }
    }

    /// A negative length other than -1 is invalid for strings, bytes and arrays.
    @Test func negativeLengthsOtherThanMinusOneThrow() {
        var string = ByteBuffer(bytes: [0xFF, 0xFE, 0x41])
        #expect(throws: KafkaWireError.invalidLength(-2)) { try string.readKafkaNullableString(compact: false) }
        var bytes = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFE])
        #expect(throws: KafkaWireError.invalidLength(-2)) { try bytes.readKafkaNullableBytes(compact: false) }
        var array = ByteBuffer(bytes: [0x80, 0x00, 0x00, 0x00])
        #expect(throws: KafkaWireError.invalidLength(Int64(Int32.min))) {
            try array.readKafkaNullableArrayCount(compact: false)
        }
    }

    /// Bytes and byte slices use int32 / compact lengths; slices share the source's storage.
    @Test(arguments: [false, true])
    func bytesEncodings(compact: Bool) throws {
        let payload: [UInt8] = [1, 2, 3]
        let bytes = encode {
            $0.writeKafkaBytes(payload, compact: compact)
            $0.writeKafkaNullableBytes(nil as [UInt8]?, compact: compact)
            $0.writeKafkaBytes(ByteBuffer(bytes: payload), compact: compact)
            $0.writeKafkaNullableBytes(nil as ByteBuffer?, compact: compact)
        }
        let expectedPrefix: [UInt8] = compact ? [0x04, 1, 2, 3, 0x00] : [0, 0, 0, 3, 1, 2, 3, 0xFF, 0xFF, 0xFF, 0xFF]
        #expect(Array(bytes.prefix(expectedPrefix.count)) == expectedPrefix)
        var buffer = ByteBuffer(bytes: bytes)
        #expect(try buffer.readKafkaBytes(compact: compact) == payload)
        #expect(try buffer.readKafkaNullableBytes(compact: compact) == nil)
        #expect(try buffer.readKafkaBytesSlice(compact: compact) == ByteBuffer(bytes: payload))
        #expect(try buffer.readKafkaNullableBytesSlice(compact: compact) == nil)
        #expect(buffer.readableBytes == 0)
    }

    /// Array counts: int32 (-1 = null) or uvarint(count + 1) (0 = null).
    @Test(arguments: [
        (2 as Int?, false, [UInt8(0), 0, 0, 2]), (2, true, [0x03]), (nil, false, [0xFF, 0xFF, 0xFF, 0xFF]),
        (nil, true, [0x00]), (0, false, [0, 0, 0, 0]), (0, true, [0x01]),
    ])
    func arrayCountEncodings(count: Int?, compact: Bool, expected: [UInt8]) throws {
        #expect(encode { $0.writeKafkaNullableArrayCount(count, compact: compact) } == expected)
        var buffer = ByteBuffer(bytes: expected + [0xAA, 0xBB])
        #expect(try buffer.readKafkaNullableArrayCount(compact: compact) == count)
    }

    /// A huge count or length throws before anything is allocated.
    @Test func hugeCountsThrowWithoutAllocating() {
        var classicCount = ByteBuffer(bytes: [0x7F, 0xFF, 0xFF, 0xFF, 0x00])
        #expect(throws: KafkaWireError.countExceedsReadableBytes(count: Int64(Int32.max), readableBytes: 1)) {
            try classicCount.readKafkaArrayCount(compact: false)
        }
        var compactCount = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF, 0x0F])
        #expect(throws: KafkaWireError.countExceedsReadableBytes(count: Int64(UInt32.max) - 1, readableBytes: 0)) {
            try compactCount.readKafkaArrayCount(compact: true)
        }
        var bytes = ByteBuffer(bytes: [0x77, 0x35, 0x94, 0x00, 0x01])  // 2,000,000,000
        #expect(throws: KafkaWireError.truncated(neededBytes: 2_000_000_000, readableBytes: 1)) {
            try bytes.readKafkaBytes(compact: false)
        }
        var string = ByteBuffer(bytes: [0x7F, 0xFF, 0x41])
        #expect(throws: KafkaWireError.truncated(neededBytes: 32_767, readableBytes: 1)) {
            try string.readKafkaString(compact: false)
        }
        var tagged = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF, 0x0F])
        #expect(throws: KafkaWireError.self) { try tagged.skipKafkaTaggedFields() }
    }

    /// A classic string longer than Int16.max bytes is cut, not trapped on.
    @Test func overlongClassicStringIsCut() throws {
        let long = String(repeating: "x", count: 40_000)
        var buffer = ByteBuffer()
        buffer.writeKafkaString(long, compact: false)
        #expect(buffer.readableBytes == 2 + Int(Int16.max))
        #expect(try buffer.readKafkaString(compact: false).utf8.count == Int(Int16.max))
    }
}

@Suite("UUID")
struct KafkaUUIDTests {
    /// The text form is Kafka's 22-character URL-safe base64 without padding.
    @Test(arguments: [
        (KafkaUUID.zero, "AAAAAAAAAAAAAAAAAAAAAA"),
        (KafkaUUID.metadataTopicId, "AAAAAAAAAAAAAAAAAAAAAQ"),
        (KafkaUUID(mostSignificantBits: .max, leastSignificantBits: .max), "_____________________w"),
        (KafkaUUID(mostSignificantBits: 0xFBFF_0000_0000_0000, leastSignificantBits: 0), "-_8AAAAAAAAAAAAAAAAAAA"),
    ])
    func base64TextMatchesKafka(uuid: KafkaUUID, text: String) {
        #expect(uuid.description == text)
        #expect(KafkaUUID(base64String: text) == uuid)
    }

    /// Random UUIDs are version 4, never zero, never start with "-", and survive text and wire.
    @Test func randomUUIDsRoundTrip() throws {
        for _ in 0..<200 {
            let uuid = KafkaUUID.random()
            #expect(uuid != .zero)
            #expect(!uuid.description.hasPrefix("-"))
            #expect(uuid.description.utf8.count == 22)
            #expect((uuid.mostSignificantBits >> 12) & 0xF == 4)
            #expect(KafkaUUID(base64String: uuid.description) == uuid)
            var buffer = ByteBuffer()
            buffer.writeKafkaUUID(uuid)
            #expect(buffer.readableBytes == 16)
            #expect(try buffer.readKafkaUUID() == uuid)
        }
    }

    /// Text that is not 22 base64url characters is rejected; "==" padding is accepted.
    @Test(arguments: ["", "AAAA", "AAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAA+A"])
    func invalidTextIsRejected(text: String) {
        #expect(KafkaUUID(base64String: text) == nil)
        #expect(KafkaUUID(base64String: "AAAAAAAAAAAAAAAAAAAAAQ==") == .metadataTopicId)
    }
}

@Suite("Tagged fields")
struct TaggedFieldTests {
    /// Fields are written as (tag, size, value); sizes of 128 bytes and more are patched in place.
    @Test(arguments: [0, 1, 127, 128, 300, 20_000])
    func taggedFieldRoundTrips(valueByteCount: Int) throws {
        let value = (0..<valueByteCount).map { UInt8(truncatingIfNeeded: $0) }
        var buffer = ByteBuffer()
        buffer.writeKafkaUnsignedVarint(2)
        buffer.writeKafkaTaggedField(tag: 1) { $0.writeBytes(value) }
        buffer.writeKafkaTaggedField(tag: 300) { $0.writeKafkaInt32(7) }
        buffer.writeKafkaInt8(42)  // what follows the section
        let sizeByteCount = ByteBuffer.kafkaUnsignedVarintSize(UInt32(valueByteCount))
        #expect(buffer.readableBytes == 1 + (1 + sizeByteCount + valueByteCount) + (2 + 1 + 4) + 1)

        var reader = buffer
        #expect(try reader.readKafkaTaggedFieldCount() == 2)
        var first = try reader.readKafkaTaggedField()
        #expect(first.tag == 1)
        #expect(first.value.readBytes(length: first.value.readableBytes) == value)
        var second = try reader.readKafkaTaggedField()
        #expect(second.tag == 300)
        #expect(try second.value.readKafkaInt32() == 7)
        #expect(try reader.readKafkaInt8() == 42)

        var skipper = buffer
        try skipper.skipKafkaTaggedFields()
        #expect(try skipper.readKafkaInt8() == 42)
    }

    /// An empty section is the single byte 0.
    @Test func emptySectionIsOneZeroByte() throws {
        #expect(encode { $0.writeKafkaEmptyTaggedFields() } == [0])
        var buffer = ByteBuffer(bytes: [0])
        #expect(try buffer.readKafkaTaggedFieldCount() == 0)
    }
}

@Suite("Truncated input")
struct TruncationTests {
    /// One encoder/decoder pair per primitive read.
    struct Primitive: Sendable, CustomTestStringConvertible {
        var testDescription: String
        var write: @Sendable (inout ByteBuffer) -> Void
        var read: @Sendable (inout ByteBuffer) throws -> Void
    }

    static let primitives: [Primitive] = [
        Primitive(testDescription: "int8", write: { $0.writeKafkaInt8(1) }, read: { _ = try $0.readKafkaInt8() }),
        Primitive(testDescription: "int16", write: { $0.writeKafkaInt16(1) }, read: { _ = try $0.readKafkaInt16() }),
        Primitive(testDescription: "int32", write: { $0.writeKafkaInt32(1) }, read: { _ = try $0.readKafkaInt32() }),
        Primitive(testDescription: "int64", write: { $0.writeKafkaInt64(1) }, read: { _ = try $0.readKafkaInt64() }),
        Primitive(testDescription: "uint16", write: { $0.writeKafkaUInt16(1) }, read: { _ = try $0.readKafkaUInt16() }),
        Primitive(testDescription: "uint32", write: { $0.writeKafkaUInt32(1) }, read: { _ = try $0.readKafkaUInt32() }),
        Primitive(
            testDescription: "float64",
            write: { $0.writeKafkaFloat64(1) },
            read: { _ = try $0.readKafkaFloat64() }
        ),
        Primitive(testDescription: "bool", write: { $0.writeKafkaBool(true) }, read: { _ = try $0.readKafkaBool() }),
        Primitive(
            testDescription: "uvarint",
            write: { $0.writeKafkaUnsignedVarint(UInt32.max) },
            read: { _ = try $0.readKafkaUnsignedVarint() }
        ),
        Primitive(
            testDescription: "varint",
            write: { $0.writeKafkaVarint(Int32.min) },
            read: { _ = try $0.readKafkaVarint() }
        ),
        Primitive(
            testDescription: "varlong",
            write: { $0.writeKafkaVarlong(Int64.min) },
            read: { _ = try $0.readKafkaVarlong() }
        ),
        Primitive(
            testDescription: "string",
            write: { $0.writeKafkaString("abc", compact: false) },
            read: { _ = try $0.readKafkaString(compact: false) }
        ),
        Primitive(
            testDescription: "compact string",
            write: { $0.writeKafkaString("abc", compact: true) },
            read: { _ = try $0.readKafkaString(compact: true) }
        ),
        Primitive(
            testDescription: "nullable string",
            write: { $0.writeKafkaNullableString("abc", compact: false) },
            read: { _ = try $0.readKafkaNullableString(compact: false) }
        ),
        Primitive(
            testDescription: "bytes",
            write: { $0.writeKafkaBytes([1, 2, 3], compact: false) },
            read: { _ = try $0.readKafkaBytes(compact: false) }
        ),
        Primitive(
            testDescription: "compact bytes slice",
            write: { $0.writeKafkaBytes([1, 2, 3], compact: true) },
            read: { _ = try $0.readKafkaBytesSlice(compact: true) }
        ),
        Primitive(
            testDescription: "nullable bytes slice",
            write: { $0.writeKafkaBytes([1, 2, 3], compact: false) },
            read: { _ = try $0.readKafkaNullableBytesSlice(compact: false) }
        ),
        Primitive(
            testDescription: "array count",
            write: { $0.writeKafkaArrayCount(0, compact: false) },
            read: { _ = try $0.readKafkaArrayCount(compact: false) }
        ),
        Primitive(
            testDescription: "uuid",
            write: { $0.writeKafkaUUID(.metadataTopicId) },
            read: { _ = try $0.readKafkaUUID() }
        ),
        Primitive(
            testDescription: "tagged field",
            write: { $0.writeKafkaTaggedField(tag: 200) { $0.writeKafkaInt64(1) } },
            read: { _ = try $0.readKafkaTaggedField() }
        ),
        Primitive(
            testDescription: "tagged section",
            write: {
                $0.writeKafkaUnsignedVarint(1)
                $0.writeKafkaTaggedField(tag: 3) { $0.writeKafkaInt16(1) }
            },
            read: { try $0.skipKafkaTaggedFields() }
        ),
    ]

    /// Every strict prefix of a valid encoding throws a truncation error (or, once a count has been
    /// read, a count-exceeds-the-bytes error); the full encoding reads.
    @Test(arguments: primitives)
    func everyPrefixThrowsTruncated(primitive: Primitive) throws {
        var full = ByteBuffer()
        primitive.write(&full)
        var complete = full
        try primitive.read(&complete)
        #expect(complete.readableBytes == 0)
        for length in 0..<full.readableBytes {
            var prefix = ByteBuffer(bytes: full.readableBytesView.prefix(length))
            #expect {
                try primitive.read(&prefix)
            } throws: { error in
                guard let error = error as? KafkaWireError else { return false }
                return error.isTruncated || error.isInvalidLength
            }
        }
    }
}
