import KafkaMessages
import NIOCore

/// The framing of the entries of the transaction logs (`__fjord_transaction_state`,
/// `__fjord_aborted_transactions`), the same as the metadata and group offsets logs: `u32
/// byteCount` of what follows, `u8 formatVersion`, `u8 type`, then the fields (integers
/// big-endian, strings as `u16 length` + UTF-8).
enum InternalLogEntry {
    struct DecodeError: Error, CustomStringConvertible {
        var description: String
    }

    /// One entry: the length prefix, the version and type bytes, then `fields`.
    static func encode(version: UInt8, type: UInt8, _ fields: (inout ByteBuffer) -> Void) -> ByteBuffer {
        var body = ByteBuffer()
        body.writeInteger(version)
        body.writeInteger(type)
        fields(&body)
        var entry = ByteBuffer()
        entry.reserveCapacity(body.readableBytes + 4)
        entry.writeInteger(UInt32(body.readableBytes))
        entry.writeBuffer(&body)
        return entry
    }

    /// Splits what a log read returned into entry bodies, each positioned after its version
    /// byte (checked against `version`) and handed to `decode` with its type byte.
    static func decodeAll<Record>(
        _ buffer: ByteBuffer,
        log: String,
        version: UInt8,
        _ decode: (UInt8, inout ByteBuffer) throws -> Record
    ) throws -> [Record] {
        var buffer = buffer
        var records: [Record] = []
        while buffer.readableBytes > 0 {
            guard let length = buffer.readInteger(as: UInt32.self), var body = buffer.readSlice(length: Int(length))
            else {
                throw DecodeError(description: "\(log) entry truncated")
            }
            guard body.readInteger(as: UInt8.self) == version else {
                throw DecodeError(description: "\(log) entry of an unknown format version")
            }
            guard let type = body.readInteger(as: UInt8.self) else {
                throw DecodeError(description: "\(log) entry without a type")
            }
            let record = try decode(type, &body)
            guard body.readableBytes == 0 else {
                throw DecodeError(description: "\(log) entry of type \(type) has \(body.readableBytes) trailing bytes")
            }
            records.append(record)
        }
        return records
    }
}

extension ByteBuffer {
    /// A `u16 length` + UTF-8 string of an internal log entry (names are at most 32,767 bytes).
    mutating func writeEntryString(_ string: String) {
        writeInteger(UInt16(truncatingIfNeeded: string.utf8.count))
        writeString(string)
    }

    mutating func readEntryString() -> String? {
        guard let length = readInteger(as: UInt16.self) else { return nil }
        return readString(length: Int(length))
    }

    mutating func writeEntryUUID(_ id: KafkaUUID) {
        writeInteger(id.mostSignificantBits)
        writeInteger(id.leastSignificantBits)
    }

    mutating func readEntryUUID() -> KafkaUUID? {
        guard let high = readInteger(as: UInt64.self), let low = readInteger(as: UInt64.self) else { return nil }
        return KafkaUUID(mostSignificantBits: high, leastSignificantBits: low)
    }
}
