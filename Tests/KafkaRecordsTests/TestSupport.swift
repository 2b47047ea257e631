import NIOCore
import Testing

@testable import KafkaRecords

/// A ByteBuffer holding the UTF-8 bytes of `string`.
func buffer(_ string: String) -> ByteBuffer { ByteBuffer(string: string) }

/// A ByteBuffer holding `bytes`.
func buffer(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

/// The readable bytes of `buffer` as an array.
func bytes(of buffer: ByteBuffer) -> [UInt8] { Array(buffer.readableBytesView) }

/// Recomputes the CRC-32C of a (deliberately edited) batch, so a test reaches the check after the CRC.
func fixChecksum(_ batch: inout ByteBuffer) {
    let crc = batch.withUnsafeReadableBytes { bytes in
        CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[RecordBatchLayout.attributes...]))
    }
    batch.setInteger(crc, at: batch.readerIndex + RecordBatchLayout.crc)
}

/// Overwrites a big-endian field of the batch header and, by default, fixes the CRC.
func patch<T: FixedWidthInteger>(_ batch: inout ByteBuffer, at position: Int, _ value: T, fixingChecksum: Bool = true) {
    batch.setInteger(value, at: batch.readerIndex + position)
    if fixingChecksum { fixChecksum(&batch) }
}

/// A policy that accepts any timestamp, with a fixed clock.
let permissivePolicy = RecordBatchValidationPolicy(nowMs: 1_700_000_000_000)

/// Expects `validateProduceRecords` to reject `records` with Kafka error `code`.
func expectRejection(
    _ records: ByteBuffer,
    policy: RecordBatchValidationPolicy = permissivePolicy,
    code: Int16,
    _ comment: Comment? = nil,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    do {
        let validated = try RecordBatchValidator.validateProduceRecords(records, policy: policy)
        Issue.record(
            "expected error \(code), batch was accepted: \(validated.header) \(comment.map { "— \($0)" } ?? "")",
            sourceLocation: sourceLocation
        )
    } catch {
        #expect(
            error.kafkaErrorCode == code,
            "expected \(code), got \(error) \(comment.map { "— \($0)" } ?? "")",
            sourceLocation: sourceLocation
        )
    }
}

/// Record shapes for the round-trip matrix.
enum RecordShape: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case oneRecord
    case thousandRecords
    case nullKeysAndValues
    case headers

    var testDescription: String { rawValue }

    /// Deterministic records of this shape; timestamps wander up and down around `baseTimestamp`.
    func records(baseTimestamp: Int64 = 1_700_000_000_000) -> [Record] {
        let count: Int
        switch self {
        case .oneRecord: count = 1
        case .thousandRecords: count = 1000
        case .nullKeysAndValues, .headers: count = 40
        }
        return (0..<count).map { index in
            let timestamp = baseTimestamp + Int64((index * 7919) % 1009) - 300
            var key: ByteBuffer? = buffer("key-\(index)")
            var value: ByteBuffer? = buffer(String(repeating: "value \(index % 13) ", count: 1 + index % 5))
            var headers: [RecordHeader] = []
            switch self {
            case .nullKeysAndValues:
                if index % 2 == 0 { key = nil }
                if index % 3 == 0 { value = nil }
                if index % 7 == 0 { value = ByteBuffer() }  // empty, not null
            case .headers:
                headers = (0..<(index % 4)).map { h in
                    RecordHeader(key: "h\(h)-ü", value: h == 2 ? nil : buffer("header value \(h)/\(index)"))
                }
            case .oneRecord, .thousandRecords:
                break
            }
            return Record(offsetDelta: Int32(index), timestamp: timestamp, key: key, value: value, headers: headers)
        }
    }
}

extension CompressionCodec: CustomTestStringConvertible {
    public var testDescription: String { "\(self)" }
}

/// A batch of `records` built with `builder`'s settings.
func makeBatch(_ records: [Record], builder: RecordBatchBuilder = RecordBatchBuilder()) -> ByteBuffer {
    var builder = builder
    for record in records { builder.append(record) }
    return builder.build()
}

/// A small uncompressed batch of `count` records "k<i>" → "v<i>" at consecutive timestamps.
func smallBatch(count: Int = 3, compression: CompressionCodec = .none, baseOffset: Int64 = 0) -> ByteBuffer {
    var builder = RecordBatchBuilder(compression: compression, baseOffset: baseOffset)
    for index in 0..<count {
        builder.append(
            key: buffer("k\(index)"),
            value: buffer("v\(index)"),
            timestamp: 1_700_000_000_000 + Int64(index)
        )
    }
    return builder.build()
}
