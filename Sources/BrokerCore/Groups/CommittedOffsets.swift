import NIOCore

/// A partition of a topic, as committed offsets are keyed.
struct TopicPartition: Hashable, Sendable, Comparable, CustomStringConvertible {
    var topic: String
    var partition: Int32

    static func < (lhs: TopicPartition, rhs: TopicPartition) -> Bool {
        (lhs.topic, lhs.partition) < (rhs.topic, rhs.partition)
    }

    var description: String { "\(topic)-\(partition)" }
}

/// One committed offset (Kafka's `OffsetAndMetadata`).
struct CommittedOffset: Sendable, Equatable {
    var offset: Int64
    /// -1 when the client sent none (OffsetCommit before v6).
    var leaderEpoch: Int32
    /// The client's metadata string; a null from the client is stored as "" (as Kafka does).
    var metadata: String
    var commitTimestampMs: Int64
}

/// The live committed offsets of every group: what OffsetFetch answers from; and the offsets
/// committed inside transactions that are not decided yet (TxnOffsetCommit), per group and
/// producer, which become committed offsets when the transaction commits and vanish when it aborts
/// (Kafka's `pendingTransactionalOffsetCommits`).
struct CommittedOffsets: Sendable, Equatable {
    private(set) var byGroup: [String: [TopicPartition: CommittedOffset]] = [:]
    /// Offsets over all groups.
    private(set) var count = 0
    /// Group → producer id → offsets of that producer's undecided transaction.
    private(set) var pendingByGroup: [String: [Int64: [TopicPartition: CommittedOffset]]] = [:]

    func offsets(of group: String) -> [TopicPartition: CommittedOffset]? { byGroup[group] }
    /// A group with committed or transactional offsets exists (Kafka's `hasOffsets`).
    func hasOffsets(_ group: String) -> Bool { byGroup[group] != nil || pendingByGroup[group] != nil }

    // MARK: Transactional offsets

    mutating func storePending(group: String, producerId: Int64, _ offsets: [TopicPartition: CommittedOffset]) {
        guard !offsets.isEmpty else { return }
        pendingByGroup[group, default: [:]][producerId, default: [:]].merge(offsets) { _, new in new }
    }

    /// The producer's transaction is decided: on commit its offsets become the group's committed
    /// offsets, on abort they are dropped. Returns how many it had.
    @discardableResult
    mutating func completePending(group: String, producerId: Int64, commit: Bool) -> Int {
        guard let pending = pendingByGroup[group]?.removeValue(forKey: producerId) else { return 0 }
        if pendingByGroup[group]?.isEmpty == true { pendingByGroup.removeValue(forKey: group) }
        if commit { store(group: group, pending) }
        return pending.count
    }

    /// Whether an undecided transaction holds an offset of `partition` for `group` (OffsetFetch
    /// with RequireStable answers UNSTABLE_OFFSET_COMMIT for it).
    func hasPending(group: String, partition: TopicPartition) -> Bool {
        pendingByGroup[group]?.values.contains { $0[partition] != nil } ?? false
    }

    /// Every (group, producer id) with offsets in an undecided transaction.
    var pendingProducers: [(group: String, producerId: Int64)] {
        pendingByGroup.keys.sorted().flatMap { group in
            (pendingByGroup[group] ?? [:]).keys.sorted().map { (group, $0) }
        }
    }

    mutating func store(group: String, _ offsets: [TopicPartition: CommittedOffset]) {
        guard !offsets.isEmpty else { return }
        var current = byGroup[group] ?? [:]
        for (partition, committed) in offsets {
            if current.updateValue(committed, forKey: partition) == nil { count += 1 }
        }
        byGroup[group] = current
    }

    /// Removes every group's offsets of a topic (the topic was deleted); returns how many there were.
    @discardableResult
    mutating func removeTopic(_ topic: String) -> Int {
        for (group, producers) in pendingByGroup {
            let kept = producers.mapValues { $0.filter { $0.key.topic != topic } }.filter { !$0.value.isEmpty }
            pendingByGroup[group] = kept.isEmpty ? nil : kept
        }
        var removed = 0
        for (group, offsets) in byGroup {
            let kept = offsets.filter { $0.key.topic != topic }
            guard kept.count != offsets.count else { continue }
            removed += offsets.count - kept.count
            byGroup[group] = kept.isEmpty ? nil : kept
        }
        count -= removed
        return removed
    }

    /// Topics that have committed offsets in any group.
    var topics: Set<String> {
        var topics = Set<String>()
        for offsets in byGroup.values {
            for partition in offsets.keys { topics.insert(partition.topic) }
        }
        return topics
    }

    /// Removes a group's offsets of some partitions (OffsetDelete); returns how many there were.
    @discardableResult
    mutating func remove(group: String, partitions: [TopicPartition]) -> Int {
        guard var offsets = byGroup[group] else { return 0 }
        var removed = 0
        for partition in partitions where offsets.removeValue(forKey: partition) != nil { removed += 1 }
        byGroup[group] = offsets.isEmpty ? nil : offsets
        count -= removed
        return removed
    }

    /// Removes every offset of a group; returns how many there were.
    @discardableResult
    mutating func removeGroup(_ group: String) -> Int {
        pendingByGroup.removeValue(forKey: group)
        let removed = byGroup.removeValue(forKey: group)?.count ?? 0
        count -= removed
        return removed
    }
}

/// Records of the internal offsets log (`__fjord_group_offsets`), written through the storage ABI
/// and replayed at startup — Fjord's `__consumer_offsets`.
///
/// Each log entry is one record with the same framing as the metadata log: `u32 byteCount` (of
/// what follows), `u8 formatVersion` (1), `u8 type`, then the fields (integers big-endian, group
/// and topic names as `u16 length` + UTF-8, metadata as `u32 length` + UTF-8).
///
/// One OffsetCommit request is one `commit` record, so its partitions are stored all or none.
/// Compaction appends a snapshot — `snapshotBegin`, `snapshotChunk`s, `snapshotEnd` — holding the
/// complete live set, then deletes everything before the begin record. Replay applies a snapshot
/// only when its end record (with the right count) is present, and then *replaces* the state with
/// it; the chunks of one snapshot are appended back to back, so a record in between means the
/// snapshot was cut short and it is ignored.
enum OffsetsLogRecord: Sendable, Equatable {
    struct Entry: Sendable, Equatable {
        var topicPartition: TopicPartition
        var committed: CommittedOffset
    }

    struct GroupOffsets: Sendable, Equatable {
        var group: String
        var entries: [Entry]
    }

    case commit(GroupOffsets)
    case groupDeleted(group: String)
    /// The topic was deleted: every group's offsets of it go (Kafka's onPartitionsDeleted).
    case topicDeleted(topic: String)
    case snapshotBegin(id: Int64)
    case snapshotChunk(id: Int64, groups: [GroupOffsets])
    case snapshotEnd(id: Int64, offsetCount: Int64)
    /// OffsetDelete: the group's offsets of these partitions are gone.
    case offsetsDeleted(group: String, partitions: [TopicPartition])
    /// TxnOffsetCommit: offsets of a producer's transaction, pending until its marker.
    case transactionalCommit(GroupOffsets, producerId: Int64, producerEpoch: Int16)
    /// The producer's transaction was decided: its pending offsets of the group are committed or
    /// dropped (the group's end-transaction marker, as in Kafka's `__consumer_offsets`).
    case transactionEnd(group: String, producerId: Int64, committed: Bool)
    /// Part of a snapshot: one producer's pending offsets of one group.
    case snapshotPending(id: Int64, GroupOffsets, producerId: Int64)

    static let formatVersion: UInt8 = 1
    /// Offsets per snapshot chunk: bounds one log entry to a few hundred KiB.
    static let snapshotChunkOffsetsMax = 2000

    private enum Kind: UInt8 {
        case commit = 1, groupDeleted = 2, snapshotBegin = 3, snapshotChunk = 4, snapshotEnd = 5, topicDeleted = 6
        case transactionalCommit = 7, transactionEnd = 8, snapshotPending = 9
        case offsetsDeleted = 10
    }

    struct DecodeError: Error, CustomStringConvertible {
        var description: String
    }

    /// How many offset records this record stands for (drives the compaction threshold).
    var offsetRecordCount: Int {
        switch self {
        case .commit(let group), .transactionalCommit(let group, _, _), .snapshotPending(_, let group, _):
            group.entries.count
        case .groupDeleted, .topicDeleted, .transactionEnd: 1
        case .offsetsDeleted(_, let partitions): partitions.count
        case .snapshotBegin, .snapshotEnd: 0
        case .snapshotChunk(_, let groups): groups.reduce(0) { $0 + $1.entries.count }
        }
    }

    /// The records of a snapshot of `offsets`: begin, chunks of at most `chunkOffsetsMax` offsets, end.
    static func snapshot(
        id: Int64,
        of offsets: CommittedOffsets,
        chunkOffsetsMax: Int = snapshotChunkOffsetsMax
    )
        -> [OffsetsLogRecord]
    {
        precondition(chunkOffsetsMax > 0)
        var records: [OffsetsLogRecord] = [.snapshotBegin(id: id)]
        var chunk: [GroupOffsets] = []
        var chunkCount = 0
        for group in offsets.byGroup.keys.sorted() {
            let partitions = offsets.byGroup[group] ?? [:]
            var entries: [Entry] = []
            for partition in partitions.keys.sorted() {
                entries.append(Entry(topicPartition: partition, committed: partitions[partition]!))  // Safe: own key.
                chunkCount += 1
                if chunkCount == chunkOffsetsMax {
                    chunk.append(GroupOffsets(group: group, entries: entries))
                    records.append(.snapshotChunk(id: id, groups: chunk))
                    entries = []
                    chunk = []
                    chunkCount = 0
                }
            }
            if !entries.isEmpty { chunk.append(GroupOffsets(group: group, entries: entries)) }
        }
        if !chunk.isEmpty { records.append(.snapshotChunk(id: id, groups: chunk)) }
        for (group, producerId) in offsets.pendingProducers {
            let pending = offsets.pendingByGroup[group]?[producerId] ?? [:]
            let entries = pending.keys.sorted().map { Entry(topicPartition: $0, committed: pending[$0]!) }  // Safe: own keys.
            records.append(
                .snapshotPending(id: id, GroupOffsets(group: group, entries: entries), producerId: producerId)
            )
        }
        records.append(.snapshotEnd(id: id, offsetCount: Int64(offsets.count)))
        return records
    }

    // MARK: Encoding

    func encode(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var body = allocator.buffer(capacity: 128)
        body.writeInteger(Self.formatVersion)
        switch self {
        case .commit(let group):
            body.writeInteger(Kind.commit.rawValue)
            Self.write(group, to: &body)
        case .groupDeleted(let group):
            body.writeInteger(Kind.groupDeleted.rawValue)
            body.writeShortString(group)
        case .topicDeleted(let topic):
            body.writeInteger(Kind.topicDeleted.rawValue)
            body.writeShortString(topic)
        case .snapshotBegin(let id):
            body.writeInteger(Kind.snapshotBegin.rawValue)
            body.writeInteger(id)
        case .snapshotChunk(let id, let groups):
            body.writeInteger(Kind.snapshotChunk.rawValue)
            body.writeInteger(id)
            body.writeInteger(UInt32(groups.count))
            for group in groups { Self.write(group, to: &body) }
        case .snapshotEnd(let id, let offsetCount):
            body.writeInteger(Kind.snapshotEnd.rawValue)
            body.writeInteger(id)
            body.writeInteger(offsetCount)
        case .offsetsDeleted(let group, let partitions):
            body.writeInteger(Kind.offsetsDeleted.rawValue)
            body.writeShortString(group)
            body.writeInteger(UInt32(partitions.count))
            for partition in partitions {
                body.writeShortString(partition.topic)
                body.writeInteger(partition.partition)
            }
        case .transactionalCommit(let group, let producerId, let producerEpoch):
            body.writeInteger(Kind.transactionalCommit.rawValue)
            body.writeInteger(producerId)
            body.writeInteger(producerEpoch)
            Self.write(group, to: &body)
        case .transactionEnd(let group, let producerId, let committed):
            body.writeInteger(Kind.transactionEnd.rawValue)
            body.writeShortString(group)
            body.writeInteger(producerId)
            body.writeInteger(UInt8(committed ? 1 : 0))
        case .snapshotPending(let id, let group, let producerId):
            body.writeInteger(Kind.snapshotPending.rawValue)
            body.writeInteger(id)
            body.writeInteger(producerId)
            Self.write(group, to: &body)
        }
        var entry = allocator.buffer(capacity: body.readableBytes + 4)
        entry.writeInteger(UInt32(body.readableBytes))
        entry.writeBuffer(&body)
        return entry
    }

    private static func write(_ group: GroupOffsets, to body: inout ByteBuffer) {
        body.writeShortString(group.group)
        body.writeInteger(UInt32(group.entries.count))
        for entry in group.entries {
            body.writeShortString(entry.topicPartition.topic)
            body.writeInteger(entry.topicPartition.partition)
            body.writeInteger(entry.committed.offset)
            body.writeInteger(entry.committed.leaderEpoch)
            body.writeInteger(entry.committed.commitTimestampMs)
            body.writeInteger(UInt32(entry.committed.metadata.utf8.count))
            body.writeString(entry.committed.metadata)
        }
    }

    /// Decodes every record in a buffer of concatenated entries.
    static func decodeAll(_ buffer: ByteBuffer) throws -> [OffsetsLogRecord] {
        var buffer = buffer
        var records: [OffsetsLogRecord] = []
        while buffer.readableBytes > 0 {
            guard let length = buffer.readInteger(as: UInt32.self), var body = buffer.readSlice(length: Int(length))
            else {
                throw DecodeError(description: "offsets log entry truncated")
            }
            records.append(try decode(&body))
        }
        return records
    }

    private static func decode(_ body: inout ByteBuffer) throws -> OffsetsLogRecord {
        guard let version = body.readInteger(as: UInt8.self), version == formatVersion else {
            throw DecodeError(description: "unknown offsets record format version")
        }
        guard let raw = body.readInteger(as: UInt8.self), let kind = Kind(rawValue: raw) else {
            throw DecodeError(description: "unknown offsets record type")
        }
        let truncated = DecodeError(description: "offsets record of type \(kind) is truncated")
        let record: OffsetsLogRecord
        switch kind {
        case .commit:
            guard let group = readGroup(&body) else { throw truncated }
            record = .commit(group)
        case .groupDeleted:
            guard let group = body.readShortString() else { throw truncated }
            record = .groupDeleted(group: group)
        case .topicDeleted:
            guard let topic = body.readShortString() else { throw truncated }
            record = .topicDeleted(topic: topic)
        case .snapshotBegin:
            guard let id = body.readInteger(as: Int64.self) else { throw truncated }
            record = .snapshotBegin(id: id)
        case .snapshotChunk:
            guard let id = body.readInteger(as: Int64.self), let count = body.readInteger(as: UInt32.self),
                count <= body.readableBytes
            else { throw truncated }
            var groups: [GroupOffsets] = []
            for _ in 0..<count {
                guard let group = readGroup(&body) else { throw truncated }
                groups.append(group)
            }
            record = .snapshotChunk(id: id, groups: groups)
        case .snapshotEnd:
            guard let id = body.readInteger(as: Int64.self), let count = body.readInteger(as: Int64.self) else {
                throw truncated
            }
            record = .snapshotEnd(id: id, offsetCount: count)
        case .offsetsDeleted:
            guard let group = body.readShortString(), let count = body.readInteger(as: UInt32.self),
                count <= body.readableBytes
            else { throw truncated }
            var partitions: [TopicPartition] = []
            for _ in 0..<count {
                guard let topic = body.readShortString(), let partition = body.readInteger(as: Int32.self) else {
                    throw truncated
                }
                partitions.append(TopicPartition(topic: topic, partition: partition))
            }
            record = .offsetsDeleted(group: group, partitions: partitions)
        case .transactionalCommit:
            guard let producerId = body.readInteger(as: Int64.self), let epoch = body.readInteger(as: Int16.self),
                let group = readGroup(&body)
            else { throw truncated }
            record = .transactionalCommit(group, producerId: producerId, producerEpoch: epoch)
        case .transactionEnd:
            guard let group = body.readShortString(), let producerId = body.readInteger(as: Int64.self),
                let committed = body.readInteger(as: UInt8.self)
            else { throw truncated }
            record = .transactionEnd(group: group, producerId: producerId, committed: committed != 0)
        case .snapshotPending:
            guard let id = body.readInteger(as: Int64.self), let producerId = body.readInteger(as: Int64.self),
                let group = readGroup(&body)
            else { throw truncated }
            record = .snapshotPending(id: id, group, producerId: producerId)
        }
        guard body.readableBytes == 0 else {
            throw DecodeError(description: "offsets record of type \(kind) has \(body.readableBytes) trailing bytes")
        }
        return record
    }

    private static func readGroup(_ body: inout ByteBuffer) -> GroupOffsets? {
        guard let group = body.readShortString(), let count = body.readInteger(as: UInt32.self),
            count <= body.readableBytes
        else { return nil }
        var entries: [Entry] = []
        entries.reserveCapacity(Int(count))
        for _ in 0..<count {
            guard let topic = body.readShortString(), let partition = body.readInteger(as: Int32.self),
                let offset = body.readInteger(as: Int64.self), let leaderEpoch = body.readInteger(as: Int32.self),
                let timestamp = body.readInteger(as: Int64.self),
                let metadataLength = body.readInteger(as: UInt32.self),
                let metadata = body.readString(length: Int(metadataLength))
            else { return nil }
            entries.append(
                Entry(
                    topicPartition: TopicPartition(topic: topic, partition: partition),
                    committed: CommittedOffset(
                        offset: offset,
                        leaderEpoch: leaderEpoch,
                        metadata: metadata,
                        commitTimestampMs: timestamp
                    )
                )
            )
        }
        return GroupOffsets(group: group, entries: entries)
    }
}

/// Replays the offsets log: the live offsets, and how many offset records the log holds.
struct OffsetsReplay: Sendable {
    private(set) var offsets = CommittedOffsets()
    /// Offset records in the log since its start (what compaction weighs against the live count).
    private(set) var recordCount = 0
    private var staging: (id: Int64, offsets: CommittedOffsets)?

    mutating func apply(_ record: OffsetsLogRecord) {
        recordCount += record.offsetRecordCount
        switch record {
        case .commit(let group):
            staging = nil
            offsets.store(group: group.group, Self.table(group.entries))
        case .transactionalCommit(let group, let producerId, _):
            staging = nil
            offsets.storePending(group: group.group, producerId: producerId, Self.table(group.entries))
        case .transactionEnd(let group, let producerId, let committed):
            staging = nil
            offsets.completePending(group: group, producerId: producerId, commit: committed)
        case .snapshotPending(let id, let group, let producerId):
            guard var current = staging, current.id == id else {
                staging = nil
                return
            }
            current.offsets.storePending(group: group.group, producerId: producerId, Self.table(group.entries))
            staging = current
        case .groupDeleted(let group):
            staging = nil
            offsets.removeGroup(group)
        case .topicDeleted(let topic):
            staging = nil
            offsets.removeTopic(topic)
        case .offsetsDeleted(let group, let partitions):
            staging = nil
            offsets.remove(group: group, partitions: partitions)
        case .snapshotBegin(let id):
            staging = (id, CommittedOffsets())
        case .snapshotChunk(let id, let groups):
            guard var current = staging, current.id == id else {
                staging = nil
                return
            }
            for group in groups { current.offsets.store(group: group.group, Self.table(group.entries)) }
            staging = current
        case .snapshotEnd(let id, let offsetCount):
            if let complete = staging, complete.id == id, complete.offsets.count == offsetCount {
                offsets = complete.offsets
                recordCount = complete.offsets.count
            }
            staging = nil
        }
    }

    static func table(_ entries: [OffsetsLogRecord.Entry]) -> [TopicPartition: CommittedOffset] {
        var table: [TopicPartition: CommittedOffset] = [:]
        for entry in entries { table[entry.topicPartition] = entry.committed }
        return table
    }
}

extension ByteBuffer {
    fileprivate mutating func writeShortString(_ string: String) {
        writeInteger(UInt16(truncatingIfNeeded: string.utf8.count))
        writeString(string)
    }

    fileprivate mutating func readShortString() -> String? {
        guard let length = readInteger(as: UInt16.self) else { return nil }
        return readString(length: Int(length))
    }
}
