import KafkaMessages
import NIOCore

/// Records of the transaction state log (`__fjord_transaction_state`), written through the storage
/// ABI and replayed at startup — Fjord's `__transaction_state`.
///
/// Framing as `InternalLogEntry` (format version 1). Two types:
/// - `1 metadata`: the whole state of one transactional id — `string transactionalId, i64
///   producerId, i64 lastProducerId, i16 producerEpoch, i16 lastProducerEpoch, i32 timeoutMs, u8
///   state (Kafka's TransactionState ids), i64 startTimestampMs, i64 lastUpdateTimestampMs, u32
///   partitionCount × (string topic, i32 partition, i64 logEndOffsetWhenAdded), u32 groupCount ×
///   string group`;
/// - `2 tombstone`: `string transactionalId`, the id expired.
///
/// Each record supersedes every earlier one of its id, so replay keeps the last, and compaction
/// is simply: write the live state of every id again, then delete the log before that.
enum TransactionLogRecord: Sendable, Equatable {
    case metadata(TransactionMetadata)
    case tombstone(transactionalId: String)

    static let logName = "__fjord_transaction_state"
    static let formatVersion: UInt8 = 1

    private enum Kind: UInt8 {
        case metadata = 1, tombstone = 2
    }

    func encode() -> ByteBuffer {
        switch self {
        case .metadata(let metadata):
            return InternalLogEntry.encode(version: Self.formatVersion, type: Kind.metadata.rawValue) { body in
                body.writeEntryString(metadata.transactionalId)
                body.writeInteger(metadata.producerId)
                body.writeInteger(metadata.lastProducerId)
                body.writeInteger(metadata.producerEpoch)
                body.writeInteger(metadata.lastProducerEpoch)
                body.writeInteger(metadata.timeoutMs)
                body.writeInteger(metadata.phase.rawValue)
                body.writeInteger(metadata.startTimestampMs)
                body.writeInteger(metadata.lastUpdateTimestampMs)
                body.writeInteger(UInt32(metadata.partitions.count))
                for partition in metadata.partitions.keys.sorted() {
                    body.writeEntryString(partition.topic)
                    body.writeInteger(partition.partition)
                    body.writeInteger(metadata.partitions[partition] ?? 0)
                }
                body.writeInteger(UInt32(metadata.groups.count))
                for group in metadata.groups.sorted() { body.writeEntryString(group) }
            }
        case .tombstone(let transactionalId):
            return InternalLogEntry.encode(version: Self.formatVersion, type: Kind.tombstone.rawValue) { body in
                body.writeEntryString(transactionalId)
            }
        }
    }

    static func decodeAll(_ buffer: ByteBuffer) throws -> [TransactionLogRecord] {
        try InternalLogEntry.decodeAll(buffer, log: logName, version: formatVersion) { type, body in
            let truncated = InternalLogEntry.DecodeError(description: "\(logName) record of type \(type) is truncated")
            switch Kind(rawValue: type) {
            case .metadata:
                guard let metadata = readMetadata(&body) else { throw truncated }
                return .metadata(metadata)
            case .tombstone:
                guard let transactionalId = body.readEntryString() else { throw truncated }
                return .tombstone(transactionalId: transactionalId)
            case nil:
                throw InternalLogEntry.DecodeError(description: "unknown \(logName) record type \(type)")
            }
        }
    }

    private static func readMetadata(_ body: inout ByteBuffer) -> TransactionMetadata? {
        guard let transactionalId = body.readEntryString(),
            let producerId = body.readInteger(as: Int64.self),
            let lastProducerId = body.readInteger(as: Int64.self),
            let producerEpoch = body.readInteger(as: Int16.self),
            let lastProducerEpoch = body.readInteger(as: Int16.self),
            let timeoutMs = body.readInteger(as: Int32.self),
            let rawPhase = body.readInteger(as: UInt8.self), let phase = TransactionPhase(rawValue: rawPhase),
            let startTimestampMs = body.readInteger(as: Int64.self),
            let lastUpdateTimestampMs = body.readInteger(as: Int64.self),
            let partitionCount = body.readInteger(as: UInt32.self), partitionCount <= body.readableBytes
        else { return nil }
        var partitions: [TopicPartition: Int64] = [:]
        for _ in 0..<partitionCount {
            guard let topic = body.readEntryString(), let partition = body.readInteger(as: Int32.self),
                let since = body.readInteger(as: Int64.self)
            else { return nil }
            partitions[TopicPartition(topic: topic, partition: partition)] = since
        }
        guard let groupCount = body.readInteger(as: UInt32.self), groupCount <= body.readableBytes else { return nil }
        var groups: Set<String> = []
        for _ in 0..<groupCount {
            guard let group = body.readEntryString() else { return nil }
            groups.insert(group)
        }
        return TransactionMetadata(
            transactionalId: transactionalId,
            producerId: producerId,
            lastProducerId: lastProducerId,
            producerEpoch: producerEpoch,
            lastProducerEpoch: lastProducerEpoch,
            timeoutMs: timeoutMs,
            phase: phase,
            partitions: partitions,
            groups: groups,
            startTimestampMs: startTimestampMs,
            lastUpdateTimestampMs: lastUpdateTimestampMs
        )
    }
}

/// Records of the aborted-transactions index log (`__fjord_aborted_transactions`): Fjord's
/// `.txnindex` files, one log for every partition of the broker.
///
/// Framing as `InternalLogEntry` (format version 1), one type: `1 aborted` — `uuid topicId, i32
/// partition, i64 producerId, i64 firstOffset, i64 lastOffset` (the ABORT marker's offset). An
/// entry is written once its marker is durable and before the transaction is CompleteAbort, so an
/// aborted transaction whose completion is durable always has its entries. Entries are a set (a
/// repeat is harmless); they are checked against the partition at startup; compaction writes the
/// live ones again (markers still in their log, topics that still exist) and deletes the rest.
struct AbortedTransactionRecord: Sendable, Hashable {
    var topicId: KafkaUUID
    var partition: Int32
    var transaction: AbortedTransaction

    static let logName = "__fjord_aborted_transactions"
    static let formatVersion: UInt8 = 1
    private static let abortedType: UInt8 = 1

    func encode() -> ByteBuffer {
        InternalLogEntry.encode(version: Self.formatVersion, type: Self.abortedType) { body in
            body.writeEntryUUID(topicId)
            body.writeInteger(partition)
            body.writeInteger(transaction.producerId)
            body.writeInteger(transaction.firstOffset)
            body.writeInteger(transaction.lastOffset)
        }
    }

    static func decodeAll(_ buffer: ByteBuffer) throws -> [AbortedTransactionRecord] {
        try InternalLogEntry.decodeAll(buffer, log: logName, version: formatVersion) { type, body in
            guard type == abortedType else {
                throw InternalLogEntry.DecodeError(description: "unknown \(logName) record type \(type)")
            }
            guard let topicId = body.readEntryUUID(), let partition = body.readInteger(as: Int32.self),
                let producerId = body.readInteger(as: Int64.self), let firstOffset = body.readInteger(as: Int64.self),
                let lastOffset = body.readInteger(as: Int64.self)
            else { throw InternalLogEntry.DecodeError(description: "\(logName) record is truncated") }
            return AbortedTransactionRecord(
                topicId: topicId,
                partition: partition,
                transaction: AbortedTransaction(
                    producerId: producerId,
                    firstOffset: firstOffset,
                    lastOffset: lastOffset
                )
            )
        }
    }
}
