import Synchronization

/// One broker config Fjord knows, by its Kafka name: how to check a value, where it lives in
/// `BrokerConfiguration`, and whether it may change while the broker runs (Kafka's dynamic
/// broker configs, KIP-226).
struct BrokerConfigDefinition: Sendable {
    var name: String
    var type: ConfigType
    var documentation: String
    /// Dynamic configs may be set per broker and cluster-wide by AlterConfigs and take effect at
    /// once; the others are read-only (static: command line, later a properties file).
    var isDynamic: Bool
    /// Returns an error message for an unacceptable value.
    var validate: @Sendable (String) -> String?
    /// The value in a configuration; nil when it has none (Kafka's null).
    var read: @Sendable (BrokerConfiguration) -> String?
    /// Sets a validated value.
    var write: @Sendable (inout BrokerConfiguration, String) -> Void
}

extension BrokerConfigDefinition {
    /// A config backed by a typed field of `BrokerConfiguration`.
    static func typed<T: LosslessStringConvertible>(
        _ name: String,
        _ type: ConfigType,
        dynamic: Bool = false,
        _ documentation: String,
        validate: @escaping @Sendable (String) -> String?,
        get: @escaping @Sendable (BrokerConfiguration) -> T,
        set: @escaping @Sendable (inout BrokerConfiguration, T) -> Void
    ) -> BrokerConfigDefinition {
        BrokerConfigDefinition(
            name: name,
            type: type,
            documentation: documentation,
            isDynamic: dynamic,
            validate: validate,
            read: { String(get($0)) },
            write: { configuration, value in
                // Booleans are validated case-insensitively, as Kafka parses them.
                if let parsed = T(value) ?? T(value.lowercased()) { set(&configuration, parsed) }
            }
        )
    }

    /// A config without a typed field: its value is kept as a string (`BrokerConfiguration.untypedConfigs`),
    /// read where it is used (topic defaults) or only reported.
    static func stored(
        _ name: String,
        _ type: ConfigType,
        dynamic: Bool = false,
        default defaultValue: String?,
        _ documentation: String,
        validate: @escaping @Sendable (String) -> String? = ConfigValidation.any
    ) -> BrokerConfigDefinition {
        BrokerConfigDefinition(
            name: name,
            type: type,
            documentation: documentation,
            isDynamic: dynamic,
            validate: validate,
            read: { $0.untypedConfigs[name] ?? defaultValue },
            write: { $0.untypedConfigs[name] = $1 }
        )
    }
}

/// Why a broker config cannot be set.
public struct BrokerConfigError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// The broker configs Fjord knows: Kafka's common keys, in the order DescribeConfigs lists them.
/// Every topic config's broker synonym is here (dynamic, as in Kafka), so a broker-level change
/// becomes the default of every topic that does not set the config itself.
enum BrokerConfigs {
    typealias V = ConfigValidation

    static let definitions: [BrokerConfigDefinition] = (serverDefinitions + topicDefaultDefinitions).sorted {
        $0.name < $1.name
    }

    static let byName: [String: BrokerConfigDefinition] = Dictionary(
        uniqueKeysWithValues: definitions.map { ($0.name, $0) }
    )

    /// Read-only settings of the broker itself.
    static let serverDefinitions: [BrokerConfigDefinition] = [
        .typed(
            "broker.id",
            .int,
            "This broker's id (the same as node.id).",
            validate: V.int(min: 0),
            get: { $0.nodeId },
            set: { $0.nodeId = $1 }
        ),
        .typed(
            "node.id",
            .int,
            "This broker's node id.",
            validate: V.int(min: 0),
            get: { $0.nodeId },
            set: { $0.nodeId = $1 }
        ),
        advertisedListeners,
        .stored("listeners", .list, default: "PLAINTEXT://127.0.0.1:9092", "Address the broker accepts clients on."),
        .stored("log.dirs", .list, default: "./data", "The directory the storage backend keeps its data in."),
        .stored(
            "process.roles",
            .list,
            default: "broker,controller",
            "Fjord is a single broker and its own controller."
        ),
        .typed(
            "auto.create.topics.enable",
            .boolean,
            "Create unknown topics on Metadata and Produce.",
            validate: V.boolean,
            get: { $0.autoCreateTopics },
            set: { $0.autoCreateTopics = $1 }
        ),
        .typed(
            "num.partitions",
            .int,
            "Partitions of auto-created topics.",
            validate: V.int(min: 1),
            get: { $0.defaultPartitions },
            set: { $0.defaultPartitions = $1 }
        ),
        .stored("default.replication.factor", .int, default: "1", "Fjord keeps one replica per partition."),
        .stored("offsets.topic.replication.factor", .short, default: "1", "Fjord keeps one replica per partition."),
        .stored(
            "transaction.state.log.replication.factor",
            .short,
            default: "1",
            "Fjord keeps one replica per partition."
        ),
        .typed(
            "fetch.max.bytes",
            .int,
            "Largest number of record bytes in one Fetch response.",
            validate: V.int(min: 1024),
            get: { $0.fetchMaxBytes },
            set: { $0.fetchMaxBytes = $1 }
        ),
        .typed(
            "log.retention.check.interval.ms",
            .long,
            "How often retention is applied.",
            validate: V.long(min: 1),
            get: { $0.retentionCheckIntervalMs },
            set: { $0.retentionCheckIntervalMs = $1 }
        ),
        .typed(
            "producer.id.expiration.ms",
            .int,
            dynamic: true,
            "Idle idempotent producers are forgotten after this.",
            validate: V.int(min: 1),
            get: { Int32(clamping: $0.producerIdExpirationMs) },
            set: { $0.producerIdExpirationMs = Int64($1) }
        ),
        .typed(
            "group.initial.rebalance.delay.ms",
            .int,
            "How long the first rebalance of a new group waits for more members.",
            validate: V.int(min: 0),
            get: { $0.groupInitialRebalanceDelayMs },
            set: { $0.groupInitialRebalanceDelayMs = $1 }
        ),
        .typed(
            "group.min.session.timeout.ms",
            .int,
            "Smallest consumer session timeout accepted.",
            validate: V.int(min: 1),
            get: { $0.groupMinSessionTimeoutMs },
            set: { $0.groupMinSessionTimeoutMs = $1 }
        ),
        .typed(
            "group.max.session.timeout.ms",
            .int,
            "Largest consumer session timeout accepted.",
            validate: V.int(min: 1),
            get: { $0.groupMaxSessionTimeoutMs },
            set: { $0.groupMaxSessionTimeoutMs = $1 }
        ),
        .typed(
            "group.max.size",
            .int,
            "Members per consumer group.",
            validate: V.int(min: 1),
            get: { $0.groupMaxSize },
            set: { $0.groupMaxSize = $1 }
        ),
        .typed(
            "offset.metadata.max.bytes",
            .int,
            "The longest metadata string an offset commit may carry.",
            validate: V.int(min: 0),
            get: { $0.offsetMetadataMaxBytes },
            set: { $0.offsetMetadataMaxBytes = $1 }
        ),
        .stored(
            "num.io.threads",
            .int,
            default: "32",
            "Storage threads for backends that block on I/O (file).",
            validate: V.int(min: 1, max: 1024)
        ),
        .stored(
            "socket.request.max.bytes",
            .int,
            default: "104857600",
            "Largest request frame accepted.",
            validate: V.int(min: 1)
        ),
        .stored(
            "connections.max.idle.ms",
            .long,
            default: "600000",
            "Idle connections are closed after this.",
            validate: V.long(min: 1)
        ),
        .stored(
            "max.connections",
            .int,
            default: String(Int32.max),
            "Open connections allowed at once.",
            validate: V.int(min: 1)
        ),
        .stored(
            "max.connections.per.ip",
            .int,
            default: String(Int32.max),
            "Open connections allowed from one address.",
            validate: V.int(min: 1)
        ),
        .stored(
            "queued.max.request.bytes",
            .long,
            default: "-1",
            "Bytes of requests read but not answered, over all connections.",
            validate: V.long(min: -1)
        ),
    ]

    /// `advertised.listeners`: one PLAINTEXT listener, `PLAINTEXT://host:port` (Fjord has no TLS or SASL).
    static let advertisedListeners = BrokerConfigDefinition(
        name: "advertised.listeners",
        type: .list,
        documentation: "Address clients are told to connect to (Metadata).",
        isDynamic: false,
        validate: { parseListener($0) == nil ? "\($0) is not PLAINTEXT://host:port" : nil },
        read: { "PLAINTEXT://\($0.advertisedHost):\($0.advertisedPort)" },
        write: { configuration, value in
            guard let (host, port) = parseListener(value) else { return }
            configuration.advertisedHost = host
            configuration.advertisedPort = port
        }
    )

    static func parseListener(_ value: String) -> (host: String, port: Int32)? {
        let address = value.hasPrefix("PLAINTEXT://") ? value.dropFirst("PLAINTEXT://".count) : Substring(value)
        guard let colon = address.lastIndex(of: ":"), let port = Int32(address[address.index(after: colon)...]),
            (1...65535).contains(port), colon > address.startIndex
        else { return nil }
        return (String(address[..<colon]), port)
    }

    /// The broker synonyms of topic configs (Kafka's `LogConfig` synonyms): dynamic, and the
    /// default of every topic that does not set the topic config.
    static let topicDefaultDefinitions: [BrokerConfigDefinition] = [
        .typed(
            "message.max.bytes",
            .int,
            dynamic: true,
            "Largest record batch accepted (topics: max.message.bytes).",
            validate: V.int(min: 0),
            get: { $0.messageMaxBytes },
            set: { $0.messageMaxBytes = $1 }
        ),
        .typed(
            "log.retention.ms",
            .long,
            dynamic: true,
            "Default retention.ms of topics.",
            validate: V.long(min: -1),
            get: { $0.retentionMs },
            set: { $0.retentionMs = $1 }
        ),
        .typed(
            "log.retention.bytes",
            .long,
            dynamic: true,
            "Default retention.bytes of topics.",
            validate: V.long(min: -1),
            get: { $0.retentionBytes },
            set: { $0.retentionBytes = $1 }
        ),
        .typed(
            "log.segment.bytes",
            .int,
            dynamic: true,
            "Default segment.bytes of topics (a change reaches existing partitions when their log is next opened).",
            validate: V.int(min: 14),
            get: { $0.segmentBytes },
            set: { $0.segmentBytes = $1 }
        ),
        .typed(
            "log.roll.ms",
            .long,
            dynamic: true,
            "Default segment.ms of topics (a change reaches existing partitions when their log is next opened).",
            validate: V.long(min: 1),
            get: { $0.segmentMs },
            set: { $0.segmentMs = $1 }
        ),
        .stored(
            "compression.type",
            .string,
            dynamic: true,
            default: "producer",
            "Default compression.type of topics: producer keeps the producer's codec, others recompress.",
            validate: V.oneOf(TopicCompression.names)
        ),
        .stored(
            "compression.gzip.level",
            .int,
            dynamic: true,
            default: "-1",
            "Default compression.gzip.level of topics.",
            validate: V.gzipLevel
        ),
        .stored(
            "compression.lz4.level",
            .int,
            dynamic: true,
            default: "9",
            "Default compression.lz4.level of topics.",
            validate: V.int(min: 1, max: 17)
        ),
        .stored(
            "compression.zstd.level",
            .int,
            dynamic: true,
            default: "3",
            "Default compression.zstd.level of topics.",
            validate: V.int(min: -131_072, max: 22)
        ),
        .stored(
            "log.cleanup.policy",
            .list,
            dynamic: true,
            default: "delete",
            "Default cleanup.policy of topics (compaction is not supported).",
            validate: TopicConfigs.cleanupPolicy
        ),
        .stored(
            "log.message.timestamp.type",
            .string,
            dynamic: true,
            default: "CreateTime",
            "Default message.timestamp.type of topics.",
            validate: V.oneOf(["CreateTime", "LogAppendTime"])
        ),
        .stored(
            "log.message.timestamp.before.max.ms",
            .long,
            dynamic: true,
            default: String(Int64.max),
            "Default message.timestamp.before.max.ms of topics.",
            validate: V.long(min: 0)
        ),
        .stored(
            "log.message.timestamp.after.max.ms",
            .long,
            dynamic: true,
            default: String(Int64.max),
            "Default message.timestamp.after.max.ms of topics.",
            validate: V.long(min: 0)
        ),
        .stored(
            "log.message.timestamp.difference.max.ms",
            .long,
            dynamic: true,
            default: String(Int64.max),
            "Deprecated in Kafka; accepted for compatibility.",
            validate: V.long(min: 0)
        ),
        .stored(
            "min.insync.replicas",
            .int,
            dynamic: true,
            default: "1",
            "Default min.insync.replicas of topics (Fjord keeps one replica).",
            validate: V.int(min: 1)
        ),
        .stored(
            "log.cleaner.delete.retention.ms",
            .long,
            dynamic: true,
            default: "86400000",
            "Accepted for compatibility; applies to compaction.",
            validate: V.long(min: 0)
        ),
        .stored(
            "log.cleaner.min.compaction.lag.ms",
            .long,
            dynamic: true,
            default: "0",
            "Accepted for compatibility.",
            validate: V.long(min: 0)
        ),
        .stored(
            "log.cleaner.max.compaction.lag.ms",
            .long,
            dynamic: true,
            default: String(Int64.max),
            "Accepted for compatibility.",
            validate: V.long(min: 1)
        ),
        .stored(
            "log.cleaner.min.cleanable.ratio",
            .double,
            dynamic: true,
            default: "0.5",
            "Accepted for compatibility.",
            validate: V.ratio
        ),
        .stored(
            "log.segment.delete.delay.ms",
            .long,
            dynamic: true,
            default: "60000",
            "Accepted for compatibility.",
            validate: V.long(min: 0)
        ),
        .stored(
            "log.flush.interval.messages",
            .long,
            dynamic: true,
            default: String(Int64.max),
            "Accepted for compatibility; durability follows acks.",
            validate: V.long(min: 1)
        ),
        .stored(
            "log.flush.interval.ms",
            .long,
            dynamic: true,
            default: nil,
            "Accepted for compatibility; durability follows acks.",
            validate: V.long(min: 0)
        ),
        .stored(
            "log.index.interval.bytes",
            .int,
            dynamic: true,
            default: "4096",
            "Accepted for compatibility.",
            validate: V.int(min: 0)
        ),
        .stored(
            "log.index.size.max.bytes",
            .int,
            dynamic: true,
            default: "10485760",
            "Accepted for compatibility.",
            validate: V.int(min: 4)
        ),
        .stored(
            "log.roll.jitter.ms",
            .long,
            dynamic: true,
            default: "0",
            "Accepted for compatibility.",
            validate: V.long(min: 0)
        ),
        .stored(
            "log.preallocate",
            .boolean,
            dynamic: true,
            default: "false",
            "Accepted for compatibility.",
            validate: V.boolean
        ),
        .stored(
            "log.message.downconversion.enable",
            .boolean,
            dynamic: true,
            default: "true",
            "Accepted for compatibility; Fjord serves only RecordBatch v2.",
            validate: V.boolean
        ),
        .stored(
            "unclean.leader.election.enable",
            .boolean,
            dynamic: true,
            default: "false",
            "Accepted for compatibility; Fjord has one replica per partition.",
            validate: V.boolean
        ),
    ]

    /// Checks one config for AlterConfigs: known, dynamic, with a valid value. Returns Kafka's
    /// message (INVALID_REQUEST for broker resources, as Kafka's ConfigAdminManager answers).
    static func problem(setting name: String, to value: String) -> String? {
        guard let definition = byName[name] else {
            return "Unknown broker config name: \(name)"
        }
        guard definition.isDynamic else {
            return "Cannot update these configs dynamically: Set(\(name))"
        }
        if let problem = definition.validate(value) {
            return "Invalid value \(value) for configuration \(name): \(problem)"
        }
        return nil
    }
}

extension BrokerConfiguration {
    /// Sets static broker configs by their Kafka names: the operator's settings (the command line;
    /// a properties file can feed the same entry point). Each is validated, written to its typed
    /// field, and reported by DescribeConfigs as STATIC_BROKER_CONFIG.
    /// Whether DescribeConfigs knows `name` as a broker config (so `setStatic` accepts it).
    public static func isBrokerConfig(_ name: String) -> Bool {
        BrokerConfigs.byName[name] != nil
    }

    public mutating func setStatic(_ configs: [String: String]) throws(BrokerConfigError) {
        for name in configs.keys.sorted() {
            let value = configs[name] ?? ""
            guard let definition = BrokerConfigs.byName[name] else {
                throw BrokerConfigError(description: "unknown broker config \(name)")
            }
            if let problem = definition.validate(value) {
                throw BrokerConfigError(description: "invalid value \(value) for broker config \(name): \(problem)")
            }
            definition.write(&self, value)
            staticConfigNames.insert(name)
        }
    }
}

/// The dynamic broker configs (KIP-226), as stored in the metadata log: this broker's own and the
/// cluster-wide defaults (resource name "" in AlterConfigs).
struct DynamicBrokerConfigs: Sendable, Equatable {
    var perBroker: [String: String] = [:]
    var clusterDefault: [String: String] = [:]
}

/// The broker's configuration in its layers (Kafka's `DynamicBrokerConfig`): the static one the
/// broker started with, under the cluster-wide dynamic defaults, under this broker's dynamic
/// configs. `effective` is the typed configuration with every layer applied.
struct BrokerConfigView: Sendable {
    let staticConfiguration: BrokerConfiguration
    let dynamic: DynamicBrokerConfigs
    let effective: BrokerConfiguration

    init(staticConfiguration: BrokerConfiguration, dynamic: DynamicBrokerConfigs = DynamicBrokerConfigs()) {
        self.staticConfiguration = staticConfiguration
        self.dynamic = dynamic
        var effective = staticConfiguration
        for layer in [dynamic.clusterDefault, dynamic.perBroker] {
            for (name, value) in layer {
                // Replayed layers hold only values that were valid when they were set.
                guard let definition = BrokerConfigs.byName[name], definition.validate(value) == nil else { continue }
                definition.write(&effective, value)
            }
        }
        self.effective = effective
    }

    /// The effective value of a broker config; nil for an unknown name or a null value.
    func value(_ name: String) -> String? {
        BrokerConfigs.byName[name]?.read(effective)
    }

    /// Every layer that sets `name`, top first, ending with the default (Kafka's synonyms).
    func layers(_ name: String) -> [(value: String?, source: ConfigSource)] {
        guard let definition = BrokerConfigs.byName[name] else { return [] }
        var layers: [(value: String?, source: ConfigSource)] = []
        if let value = dynamic.perBroker[name] { layers.append((value, .dynamicBrokerConfig)) }
        if let value = dynamic.clusterDefault[name] { layers.append((value, .dynamicDefaultBrokerConfig)) }
        if staticConfiguration.staticConfigNames.contains(name) {
            layers.append((definition.read(staticConfiguration), .staticBrokerConfig))
        }
        layers.append((definition.read(BrokerConfiguration.kafkaDefaults), .defaultConfig))
        return layers
    }

    /// Where the effective value of `name` comes from.
    func source(_ name: String) -> ConfigSource { layers(name).first?.source ?? .unknown }
}

extension BrokerConfiguration {
    /// Every config at its default: the DEFAULT_CONFIG layer.
    static let kafkaDefaults = BrokerConfiguration()
}

/// The broker's current configuration view, read by every handler and replaced by the metadata
/// manager when dynamic configs change (after the change is durable).
final class BrokerConfigStore: Sendable {
    private let view: Mutex<BrokerConfigView>

    init(_ configuration: BrokerConfiguration) {
        view = Mutex(BrokerConfigView(staticConfiguration: configuration))
    }

    var current: BrokerConfigView { view.withLock { $0 } }

    @discardableResult
    func replace(dynamic: DynamicBrokerConfigs) -> BrokerConfigView {
        view.withLock { view in
            view = BrokerConfigView(staticConfiguration: view.staticConfiguration, dynamic: dynamic)
            return view
        }
    }
}
