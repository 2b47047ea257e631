import NIOCore

/// The control record that ends a transaction in a partition (Kafka's `EndTransactionMarker`,
/// KIP-98): a RecordBatch v2 with the control and transactional attributes, the producer's id and
/// epoch, no sequence, and exactly one record whose key says COMMIT or ABORT and whose value
/// carries the coordinator epoch.
///
/// Key: `int16 version (0)`, `int16 type (0 = ABORT, 1 = COMMIT)`. Value: `int16 version (0)`,
/// `int32 coordinatorEpoch`. Consumers skip control batches; read_committed consumers use ABORT
/// markers to stop dropping an aborted producer's records.
public struct EndTransactionMarker: Sendable, Equatable {
    /// Kafka's `ControlRecordType` ids of the two markers.
    public enum Kind: Int16, Sendable {
        case abort = 0
        case commit = 1
    }

    public var kind: Kind
    public var coordinatorEpoch: Int32

    static let keyVersion: Int16 = 0
    static let valueVersion: Int16 = 0
    /// A key is version + type; Kafka accepts longer keys of later versions, so only this is required.
    static let keyByteCount = 4
    static let valueByteCount = 6

    public init(kind: Kind, coordinatorEpoch: Int32) {
        self.kind = kind
        self.coordinatorEpoch = coordinatorEpoch
    }

    public var isCommit: Bool { kind == .commit }

    /// The whole control batch (offset 0; the partition assigns the real one when it appends it).
    public func batch(producerId: Int64, producerEpoch: Int16, timestamp: Int64) -> ByteBuffer {
        var builder = RecordBatchBuilder(
            producerId: producerId,
            producerEpoch: producerEpoch,
            baseSequence: -1,
            isTransactional: true,
            isControl: true
        )
        var key = ByteBuffer()
        key.writeInteger(Self.keyVersion)
        key.writeInteger(kind.rawValue)
        var value = ByteBuffer()
        value.writeInteger(Self.valueVersion)
        value.writeInteger(coordinatorEpoch)
        builder.append(key: key, value: value, timestamp: timestamp)
        return builder.build()
    }

    /// The marker a stored control batch holds; nil when `batch` is not a control batch or its
    /// record is not an end-transaction marker (Kafka has other control types, e.g. KRaft's).
    public init?(controlBatch batch: ByteBuffer) {
        guard let header = try? RecordBatchHeader(parsing: batch), header.isControl,
            let record = try? RecordBatchReader.records(of: batch, maxDecompressedBytes: 1 << 16).first,
            let key = record.key, key.readableBytes >= Self.keyByteCount,
            let type = key.getInteger(at: key.readerIndex + 2, as: Int16.self),
            let kind = Kind(rawValue: type)
        else { return nil }
        var epoch: Int32 = -1
        if let value = record.value, value.readableBytes >= Self.valueByteCount {
            epoch = value.getInteger(at: value.readerIndex + 2, as: Int32.self) ?? -1
        }
        self.init(kind: kind, coordinatorEpoch: epoch)
    }
}
