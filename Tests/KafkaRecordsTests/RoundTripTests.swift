import NIOCore
import Testing

@testable import KafkaRecords

@Suite("RecordBatch round trips")
struct RoundTripTests {
    /// A built batch validates, reports the records' real max timestamp, and reads back the identical records.
    @Test("builder → validator → reader", arguments: CompressionCodec.allCases, RecordShape.allCases)
    func buildValidateRead(codec: CompressionCodec, shape: RecordShape) throws {
        let records = shape.records()
        let builder = RecordBatchBuilder(
            compression: codec,
            baseOffset: 0,
            producerId: 77,
            producerEpoch: 2,
            baseSequence: 1000
        )
        let batch = makeBatch(records, builder: builder)

        let validated = try RecordBatchValidator.validateProduceRecords(batch, policy: permissivePolicy)
        let maxTimestamp = records.map(\.timestamp).max()!
        #expect(validated.recordCount == Int32(records.count))
        #expect(validated.lastOffsetDelta == Int32(records.count - 1))
        #expect(validated.maxTimestamp == maxTimestamp)
        #expect(validated.offsetDeltaOfMaxTimestamp == Int32(records.firstIndex { $0.timestamp == maxTimestamp }!))
        #expect(validated.byteCount == batch.readableBytes)
        #expect(validated.header.compression == codec)
        #expect(validated.header.producerId == 77)
        #expect(validated.header.producerEpoch == 2)
        #expect(validated.header.baseSequence == 1000)
        #expect(validated.header.baseTimestamp == records[0].timestamp)
        #expect(validated.header.maxTimestamp == maxTimestamp)

        let read = try RecordBatchReader.records(of: batch, maxDecompressedBytes: 64 << 20)
        #expect(read == records)
        #expect(try RecordBatchValidator.validateStoredBatch(batch) == validated.header)
    }

    /// With timestamps out of order, the lookup answers the first record in offset order at or after the time.
    @Test(
        "firstOffset(atOrAfterTimestamp:) on non-monotonic timestamps",
        arguments: CompressionCodec.allCases
    )
    func firstOffsetNonMonotonic(codec: CompressionCodec) throws {
        let timestamps: [Int64] = [50, 10, 70, 30, 70, 20]
        var builder = RecordBatchBuilder(compression: codec, baseOffset: 100)
        for timestamp in timestamps { builder.append(key: nil, value: buffer("x"), timestamp: timestamp) }
        let batch = builder.build()
        let cases: [(Int64, Int64?)] = [
            (Int64.min, 100), (0, 100), (10, 100), (50, 100), (51, 102), (70, 102), (71, nil), (Int64.max, nil),
        ]
        for (timestamp, expected) in cases {
            let found = try RecordBatchReader.firstOffset(
                atOrAfterTimestamp: timestamp,
                in: batch,
                maxDecompressedBytes: 1 << 20
            )
            #expect(found == expected, "timestamp \(timestamp)")
        }
        let max = try #require(try RecordBatchReader.offsetOfMaxTimestamp(in: batch, maxDecompressedBytes: 1 << 20))
        #expect(max.offset == 102 && max.timestamp == 70, "the first record holding the maximum")
    }

    /// Assigning offsets changes only bytes 0..<16; the producer's bytes and CRC stay valid and verbatim.
    @Test("offset assignment keeps the producer's bytes and CRC", arguments: CompressionCodec.allCases)
    func assignOffsetsKeepsBytes(codec: CompressionCodec) throws {
        let original = makeBatch(RecordShape.headers.records(), builder: RecordBatchBuilder(compression: codec))
        let header = try RecordBatchHeader(parsing: original)

        var inPlace = original
        RecordBatchWriter.assignOffsets(&inPlace, baseOffset: 123_456_789_012, partitionLeaderEpoch: 42)
        let rewritten = try RecordBatchHeader(parsing: inPlace)
        #expect(rewritten.baseOffset == 123_456_789_012)
        #expect(rewritten.partitionLeaderEpoch == 42)
        #expect(rewritten.crc == header.crc)
        #expect(bytes(of: inPlace)[16...] == bytes(of: original)[16...])
        #expect(try RecordBatchValidator.validateStoredBatch(inPlace).baseOffset == 123_456_789_012)
        #expect(try RecordBatchValidator.validateProduceRecords(inPlace, policy: permissivePolicy).recordCount > 0)

        var prefixed = RecordBatchWriter.rewrittenPrefix(
            of: header,
            baseOffset: 123_456_789_012,
            partitionLeaderEpoch: 42
        )
        #expect(prefixed.readableBytes == RecordBatchWriter.prefixByteCount)
        var rest = original.getSlice(at: original.readerIndex + 16, length: original.readableBytes - 16)!
        prefixed.writeBuffer(&rest)
        #expect(prefixed == inPlace)

        let records = try RecordBatchReader.records(of: inPlace, maxDecompressedBytes: 1 << 20)
        #expect(records == RecordShape.headers.records())
    }

    /// Concatenated batches split back into the same batches; a partial trailing batch is left out.
    @Test("batches(in:) splits concatenated batches and stops at a partial one")
    func splitBatches() {
        let parts = [
            smallBatch(count: 1), smallBatch(count: 5, compression: .zstd), smallBatch(count: 2, baseOffset: 6),
        ]
        var log = ByteBuffer()
        for var part in parts { log.writeBuffer(&part) }
        let whole = log
        #expect(RecordBatchReader.batches(in: whole) == parts)

        var boundaries = [0]
        for part in parts { boundaries.append(boundaries.last! + part.readableBytes) }
        for length in 0...whole.readableBytes {
            let prefix = whole.getSlice(at: 0, length: length)!
            let complete = boundaries.lastIndex { $0 <= length }!
            #expect(RecordBatchReader.batches(in: prefix) == Array(parts[..<complete]), "prefix of \(length) bytes")
        }
        var withReaderOffset = ByteBuffer(bytes: [1, 2, 3])
        var copy = whole
        withReaderOffset.writeBuffer(&copy)
        withReaderOffset.moveReaderIndex(forwardBy: 3)
        #expect(RecordBatchReader.batches(in: withReaderOffset) == parts)
    }

    /// The header parser reads every field where the layout says, without consuming the buffer.
    @Test("header fields sit at their documented positions")
    func headerLayout() throws {
        var builder = RecordBatchBuilder(
            compression: .lz4,
            baseOffset: 0x0102_0304_0506_0708,
            partitionLeaderEpoch: 9,
            producerId: 11,
            producerEpoch: 12,
            baseSequence: 13,
            isTransactional: true
        )
        builder.append(key: nil, value: buffer("a"), timestamp: 1000)
        builder.append(key: nil, value: buffer("b"), timestamp: 3000)
        builder.append(key: nil, value: buffer("c"), timestamp: 2000)
        let batch = builder.build()
        let header = try RecordBatchHeader(parsing: batch)
        #expect(batch.readerIndex == 0)
        #expect(header.baseOffset == 0x0102_0304_0506_0708)
        #expect(header.totalByteCount == batch.readableBytes)
        #expect(batch.getInteger(at: 8, as: Int32.self) == header.batchLength)
        #expect(header.partitionLeaderEpoch == 9)
        #expect(header.magic == 2)
        #expect(batch.getInteger(at: 17, as: UInt32.self) == header.crc)
        #expect(header.attributes == 0x13)
        #expect(header.compression == .lz4 && header.isTransactional && !header.isControl)
        #expect(!header.timestampTypeIsLogAppendTime)
        #expect(header.lastOffsetDelta == 2 && header.recordCount == 3)
        #expect(header.baseTimestamp == 1000 && header.maxTimestamp == 3000)
        #expect(header.producerId == 11 && header.producerEpoch == 12 && header.baseSequence == 13)
        #expect(header.lastOffset == 0x0102_0304_0506_070A)
        #expect(throws: RecordBatchError.self) {
            try RecordBatchHeader(parsing: batch.getSlice(at: 0, length: 60)!)
        }
    }

    /// Zig-zag varints and varlongs survive a write/read round trip at every size boundary.
    @Test("varint and varlong round trip")
    func varints() {
        var values: [Int64] = [
            0, 1, -1, 63, -64, 64, -65, 8191, -8192, 8192, Int64(Int32.max), Int64(Int32.min), .max, .min,
        ]
        for shift in 0..<63 { values += [Int64(1) << shift, -(Int64(1) << shift), (Int64(1) << shift) - 1] }
        for value in values {
            var encoded = ByteBuffer()
            encoded.writeVarint(value)
            #expect(encoded.readableBytes == Varint.size(of: value))
            encoded.withUnsafeReadableBytes { bytes in
                var cursor = ByteCursor(bytes)
                #expect(cursor.readVarlong() == value)
                #expect(cursor.remaining == 0)
                if let narrow = Int32(exactly: value) {
                    var cursor32 = ByteCursor(bytes)
                    #expect(cursor32.readVarint() == narrow)
                }
            }
        }
    }

    /// Varints longer than 5 bytes (varlongs longer than 10) or cut short are rejected, not misread.
    @Test(
        "overlong or truncated varints are rejected",
        arguments: [
            [0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            [0x80],
            [0xff, 0xff],
            [],
        ] as [[UInt8]]
    )
    func badVarints(encoded: [UInt8]) {
        encoded.withUnsafeBytes { bytes in
            var cursor = ByteCursor(bytes)
            #expect(cursor.readVarint() == nil)
        }
        let longer = [UInt8](repeating: 0xff, count: 10) + [0x01]
        longer.withUnsafeBytes { bytes in
            var cursor = ByteCursor(bytes)
            #expect(cursor.readVarlong() == nil)
        }
    }
}
