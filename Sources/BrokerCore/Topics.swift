import KafkaMessages
import NIOCore
import Synchronization

/// A topic, as an immutable snapshot: CreatePartitions and AlterConfigs replace it in the registry
/// with a new snapshot sharing its partitions, so a handler holding one across a suspension point
/// sees a consistent topic (and looks it up again when it needs the latest).
final class Topic: Sendable {
    let name: String
    let id: KafkaUUID
    let partitions: [Partition]
    /// Configs set explicitly (at creation or by AlterConfigs); everything else takes the broker's.
    let configs: [String: String]
    let settings: TopicSettings

    init(name: String, id: KafkaUUID, partitions: [Partition], configs: [String: String], settings: TopicSettings) {
        self.name = name
        self.id = id
        self.partitions = partitions
        self.configs = configs
        self.settings = settings
    }

    /// The same topic with more partitions (CreatePartitions), or other configs and settings.
    func with(partitions: [Partition]? = nil, configs: [String: String]? = nil, settings: TopicSettings? = nil) -> Topic
    {
        Topic(
            name: name,
            id: id,
            partitions: partitions ?? self.partitions,
            configs: configs ?? self.configs,
            settings: settings ?? self.settings
        )
    }

    /// Kafka's internal topics (`Topic.isInternal`): Metadata marks them so clients' regex
    /// subscriptions skip them (`exclude.internal.topics`).
    static let internalNames: Set<String> = ["__consumer_offsets", "__transaction_state"]

    var isInternal: Bool { Self.internalNames.contains(name) }

    func partition(_ index: Int32) -> Partition? {
        index >= 0 && Int(index) < partitions.count ? partitions[Int(index)] : nil
    }

    static func logName(topic: String, partition: Int32) -> String { "\(topic)-\(partition)" }
}

/// The live topics, read on every request; changed only by the metadata manager.
final class TopicRegistry: Sendable {
    private struct State {
        var byName: [String: Topic] = [:]
        var byId: [KafkaUUID: Topic] = [:]
    }
    private let state = Mutex(State())

    func topic(named name: String) -> Topic? { state.withLock { $0.byName[name] } }
    func topic(id: KafkaUUID) -> Topic? { state.withLock { $0.byId[id] } }

    /// All topics, sorted by name (Metadata lists them in a stable order).
    var all: [Topic] { state.withLock { $0.byName.values.sorted { $0.name < $1.name } } }

    /// Adds a topic, or replaces the snapshot of one with the same name and id.
    func insert(_ topic: Topic) {
        state.withLock {
            $0.byName[topic.name] = topic
            $0.byId[topic.id] = topic
        }
    }

    func remove(_ topic: Topic) {
        state.withLock {
            $0.byName.removeValue(forKey: topic.name)
            $0.byId.removeValue(forKey: topic.id)
        }
    }
}

/// Kafka's topic-name rules (`org.apache.kafka.common.internals.Topic.validate`).
enum TopicName {
    static let lengthMax = 249

    static func problem(with name: String) -> String? {
        if name.isEmpty { return "Topic name is illegal, it can't be empty" }
        if name == "." || name == ".." { return "Topic name cannot be \".\" or \"..\"" }
        if name.utf8.count > lengthMax {
            return "Topic name is illegal, it can't be longer than \(lengthMax) characters, topic name: \(name)"
        }
        let legal = name.utf8.allSatisfy { byte in
            (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: ".")
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
        }
        if !legal {
            return
                "Topic name \(name) is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        }
        return nil
    }
}

/// Records of the internal metadata log (`__fjord_metadata`), written through the storage ABI
/// and replayed at startup, the way Kafka keeps cluster metadata in a log.
///
/// Each log entry is one record: `u32 byteCount` (of what follows), `u8 formatVersion` (1),
/// `u8 type`, then the type's fields (integers big-endian, strings as `u16 length` + UTF-8).
/// The length prefix makes entries self-delimiting, because a read returns entries concatenated.
enum MetadataRecord: Sendable, Equatable {
    case clusterId(String)
    case topicCreated(name: String, id: KafkaUUID, partitionCount: Int32, configs: [String: String])
    case topicDeleted(name: String, id: KafkaUUID)
    /// Producer ids below this value are reserved (allocated in blocks, so restarts never reuse one).
    case producerIdBlock(end: Int64)
    /// The topic's explicit configs are now exactly `configs` (AlterConfigs, IncrementalAlterConfigs).
    case topicConfigsChanged(name: String, id: KafkaUUID, configs: [String: String])
    /// The dynamic broker configs of one broker (`brokerId`) or, with `brokerId` nil, the
    /// cluster-wide defaults are now exactly `configs`.
    case brokerConfigsChanged(brokerId: Int32?, configs: [String: String])
    /// The topic now has `partitionCount` partitions (CreatePartitions); the new logs exist.
    case partitionsAdded(name: String, id: KafkaUUID, partitionCount: Int32)

    /// Kinds were only added (never changed) since version 1, so every older log still decodes.
    static let formatVersion: UInt8 = 1

    private enum Kind: UInt8 {
        case clusterId = 1, topicCreated = 2, topicDeleted = 3, producerIdBlock = 4
        case topicConfigsChanged = 5, brokerConfigsChanged = 6, partitionsAdded = 7
    }

    struct DecodeError: Error, CustomStringConvertible {
        var description: String
    }

    func encode(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var body = allocator.buffer(capacity: 64)
        body.writeInteger(Self.formatVersion)
        switch self {
        case .clusterId(let id):
            body.writeInteger(Kind.clusterId.rawValue)
            body.writeShortString(id)
        case .topicCreated(let name, let id, let partitionCount, let configs):
            body.writeInteger(Kind.topicCreated.rawValue)
            body.writeShortString(name)
            body.writeUUID(id)
            body.writeInteger(partitionCount)
            body.writeConfigs(configs)
        case .topicConfigsChanged(let name, let id, let configs):
            body.writeInteger(Kind.topicConfigsChanged.rawValue)
            body.writeShortString(name)
            body.writeUUID(id)
            body.writeConfigs(configs)
        case .brokerConfigsChanged(let brokerId, let configs):
            body.writeInteger(Kind.brokerConfigsChanged.rawValue)
            body.writeInteger(brokerId ?? -1)
            body.writeConfigs(configs)
        case .partitionsAdded(let name, let id, let partitionCount):
            body.writeInteger(Kind.partitionsAdded.rawValue)
            body.writeShortString(name)
            body.writeUUID(id)
            body.writeInteger(partitionCount)
        case .topicDeleted(let name, let id):
            body.writeInteger(Kind.topicDeleted.rawValue)
            body.writeShortString(name)
            body.writeUUID(id)
        case .producerIdBlock(let end):
            body.writeInteger(Kind.producerIdBlock.rawValue)
            body.writeInteger(end)
        }
        var entry = allocator.buffer(capacity: body.readableBytes + 4)
        entry.writeInteger(UInt32(body.readableBytes))
        entry.writeBuffer(&body)
        return entry
    }

    /// Decodes every record in a buffer of concatenated entries.
    static func decodeAll(_ buffer: ByteBuffer) throws -> [MetadataRecord] {
        var buffer = buffer
        var records: [MetadataRecord] = []
        while buffer.readableBytes > 0 {
            guard let length = buffer.readInteger(as: UInt32.self), var body = buffer.readSlice(length: Int(length))
            else {
                throw DecodeError(description: "metadata log entry truncated")
            }
            records.append(try decode(&body))
        }
        return records
    }

    private static func decode(_ body: inout ByteBuffer) throws -> MetadataRecord {
        guard let version = body.readInteger(as: UInt8.self), version == formatVersion else {
            throw DecodeError(description: "unknown metadata record format version")
        }
        guard let raw = body.readInteger(as: UInt8.self), let kind = Kind(rawValue: raw) else {
            throw DecodeError(description: "unknown metadata record type")
        }
        func fail() -> DecodeError { DecodeError(description: "metadata record of type \(kind) is truncated") }
        switch kind {
        case .clusterId:
            guard let id = body.readShortString() else { throw fail() }
            return .clusterId(id)
        case .topicCreated:
            guard let name = body.readShortString(), let id = body.readUUID(),
                let partitionCount = body.readInteger(as: Int32.self), let configs = body.readConfigs()
            else { throw fail() }
            return .topicCreated(name: name, id: id, partitionCount: partitionCount, configs: configs)
        case .topicConfigsChanged:
            guard let name = body.readShortString(), let id = body.readUUID(), let configs = body.readConfigs() else {
                throw fail()
            }
            return .topicConfigsChanged(name: name, id: id, configs: configs)
        case .brokerConfigsChanged:
            guard let brokerId = body.readInteger(as: Int32.self), let configs = body.readConfigs() else {
                throw fail()
            }
            return .brokerConfigsChanged(brokerId: brokerId < 0 ? nil : brokerId, configs: configs)
        case .partitionsAdded:
            guard let name = body.readShortString(), let id = body.readUUID(),
                let partitionCount = body.readInteger(as: Int32.self)
            else { throw fail() }
            return .partitionsAdded(name: name, id: id, partitionCount: partitionCount)
        case .topicDeleted:
            guard let name = body.readShortString(), let id = body.readUUID() else { throw fail() }
            return .topicDeleted(name: name, id: id)
        case .producerIdBlock:
            guard let end = body.readInteger(as: Int64.self) else { throw fail() }
            return .producerIdBlock(end: end)
        }
    }
}

extension ByteBuffer {
    fileprivate mutating func writeShortString(_ string: String) {
        writeInteger(UInt16(string.utf8.count))
        writeString(string)
    }

    fileprivate mutating func readShortString() -> String? {
        guard let length = readInteger(as: UInt16.self) else { return nil }
        return readString(length: Int(length))
    }

    /// A config map: `u16 count`, then name and value strings, sorted by name (deterministic bytes).
    fileprivate mutating func writeConfigs(_ configs: [String: String]) {
        writeInteger(UInt16(configs.count))
        for key in configs.keys.sorted() {
            writeShortString(key)
            writeShortString(configs[key] ?? "")
        }
    }

    fileprivate mutating func readConfigs() -> [String: String]? {
        guard let count = readInteger(as: UInt16.self) else { return nil }
        var configs: [String: String] = [:]
        for _ in 0..<count {
            guard let key = readShortString(), let value = readShortString() else { return nil }
            configs[key] = value
        }
        return configs
    }

    fileprivate mutating func writeUUID(_ id: KafkaUUID) {
        writeInteger(id.mostSignificantBits)
        writeInteger(id.leastSignificantBits)
    }

    fileprivate mutating func readUUID() -> KafkaUUID? {
        guard let high = readInteger(as: UInt64.self), let low = readInteger(as: UInt64.self) else { return nil }
        return KafkaUUID(mostSignificantBits: high, leastSignificantBits: low)
    }
}
