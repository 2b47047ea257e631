/// Kafka's config types as DescribeConfigs v3+ reports them (`ConfigType` in
/// DescribeConfigsResponse.json).
public enum ConfigType: Int8, Sendable {
    case unknown = 0, boolean = 1, string = 2, int = 3, short = 4, long = 5, double = 6, list = 7
}

/// Where a config value comes from (`ConfigSource` in DescribeConfigsResponse.json).
enum ConfigSource: Int8, Sendable {
    case unknown = 0
    case dynamicTopicConfig = 1
    case staticBrokerConfig = 4
    case defaultConfig = 5
}

/// One topic-level config Fjord knows: its Kafka name, type, broker-level synonym and default,
/// and whether Fjord enforces it or only stores it (a single-broker setting such as
/// `min.insync.replicas` = 1, or compaction settings for the `delete` policy).
struct TopicConfigDefinition: Sendable {
    var name: String
    var type: ConfigType
    var brokerSynonym: String
    var documentation: String
    /// Returns an error message for an unacceptable value.
    var validate: @Sendable (String) -> String?
    var defaultValue: @Sendable (BrokerConfiguration) -> String
}

enum TopicConfigs {
    static let longMax = String(Int64.max)

    static func long(min: Int64) -> @Sendable (String) -> String? {
        { value in
            guard let number = Int64(value) else { return "\(value) is not a valid long" }
            return number < min ? "value \(value) must be at least \(min)" : nil
        }
    }

    static func int(min: Int32) -> @Sendable (String) -> String? {
        { value in
            guard let number = Int32(value) else { return "\(value) is not a valid int" }
            return number < min ? "value \(value) must be at least \(min)" : nil
        }
    }

    static let boolean: @Sendable (String) -> String? = { value in
        ["true", "false"].contains(value.lowercased()) ? nil : "\(value) is not a valid boolean"
    }

    static func oneOf(_ allowed: [String], unsupported: [String: String] = [:]) -> @Sendable (String) -> String? {
        { value in
            if let reason = unsupported[value] { return reason }
            return allowed.contains(value) ? nil : "\(value) is not one of \(allowed.joined(separator: ", "))"
        }
    }

    static let any: @Sendable (String) -> String? = { _ in nil }

    /// The topic configs Fjord accepts, in the order DescribeConfigs lists them.
    static let definitions: [TopicConfigDefinition] = [
        .init(
            name: "cleanup.policy",
            type: .list,
            brokerSynonym: "log.cleanup.policy",
            documentation: "Retention policy; Fjord supports delete (log compaction is not supported).",
            validate: oneOf(
                ["delete"],
                unsupported: [
                    "compact": "log compaction is not supported by Fjord",
                    "compact,delete": "log compaction is not supported by Fjord",
                    "delete,compact": "log compaction is not supported by Fjord",
                ]
            ),
            defaultValue: { _ in "delete" }
        ),
        .init(
            name: "compression.type",
            type: .string,
            brokerSynonym: "compression.type",
            documentation: "Fjord stores batches as the producer compressed them (producer).",
            validate: oneOf(
                ["producer"],
                unsupported: Dictionary(
                    uniqueKeysWithValues: ["uncompressed", "gzip", "snappy", "lz4", "zstd"].map {
                        ($0, "recompressing batches is not supported by Fjord; use compression.type=producer")
                    }
                )
            ),
            defaultValue: { _ in "producer" }
        ),
        .init(
            name: "delete.retention.ms",
            type: .long,
            brokerSynonym: "log.cleaner.delete.retention.ms",
            documentation: "Accepted for compatibility; applies to compaction, which Fjord does not do.",
            validate: long(min: 0),
            defaultValue: { _ in "86400000" }
        ),
        .init(
            name: "file.delete.delay.ms",
            type: .long,
            brokerSynonym: "log.segment.delete.delay.ms",
            documentation: "Accepted for compatibility.",
            validate: long(min: 0),
            defaultValue: { _ in "60000" }
        ),
        .init(
            name: "flush.messages",
            type: .long,
            brokerSynonym: "log.flush.interval.messages",
            documentation: "Accepted for compatibility; durability follows acks (see README).",
            validate: long(min: 1),
            defaultValue: { _ in longMax }
        ),
        .init(
            name: "flush.ms",
            type: .long,
            brokerSynonym: "log.flush.interval.ms",
            documentation: "Accepted for compatibility; durability follows acks (see README).",
            validate: long(min: 0),
            defaultValue: { _ in longMax }
        ),
        .init(
            name: "index.interval.bytes",
            type: .int,
            brokerSynonym: "log.index.interval.bytes",
            documentation: "Accepted for compatibility.",
            validate: int(min: 0),
            defaultValue: { _ in "4096" }
        ),
        .init(
            name: "max.compaction.lag.ms",
            type: .long,
            brokerSynonym: "log.cleaner.max.compaction.lag.ms",
            documentation: "Accepted for compatibility.",
            validate: long(min: 1),
            defaultValue: { _ in longMax }
        ),
        .init(
            name: "max.message.bytes",
            type: .int,
            brokerSynonym: "message.max.bytes",
            documentation: "The largest record batch size allowed for this topic.",
            validate: int(min: 0),
            defaultValue: { String($0.messageMaxBytes) }
        ),
        .init(
            name: "message.downconversion.enable",
            type: .boolean,
            brokerSynonym: "log.message.downconversion.enable",
            documentation: "Accepted for compatibility; Fjord serves only RecordBatch v2.",
            validate: boolean,
            defaultValue: { _ in "true" }
        ),
        .init(
            name: "message.timestamp.after.max.ms",
            type: .long,
            brokerSynonym: "log.message.timestamp.after.max.ms",
            documentation: "How far a record timestamp may lie in the future of the broker's clock.",
            validate: long(min: 0),
            defaultValue: { _ in longMax }
        ),
        .init(
            name: "message.timestamp.before.max.ms",
            type: .long,
            brokerSynonym: "log.message.timestamp.before.max.ms",
            documentation: "How far a record timestamp may lie in the past of the broker's clock.",
            validate: long(min: 0),
            defaultValue: { _ in longMax }
        ),
        .init(
            name: "message.timestamp.difference.max.ms",
            type: .long,
            brokerSynonym: "log.message.timestamp.difference.max.ms",
            documentation: "Deprecated in Kafka; accepted for compatibility.",
            validate: long(min: 0),
            defaultValue: { _ in longMax }
        ),
        .init(
            name: "message.timestamp.type",
            type: .string,
            brokerSynonym: "log.message.timestamp.type",
            documentation: "Fjord keeps the producer's CreateTime (LogAppendTime would rewrite batches).",
            validate: oneOf(
                ["CreateTime"],
                unsupported: ["LogAppendTime": "LogAppendTime is not supported by Fjord: batches are stored verbatim"]
            ),
            defaultValue: { _ in "CreateTime" }
        ),
        .init(
            name: "min.cleanable.dirty.ratio",
            type: .double,
            brokerSynonym: "log.cleaner.min.cleanable.ratio",
            documentation: "Accepted for compatibility.",
            validate: { value in
                guard let ratio = Double(value), (0...1).contains(ratio) else { return "\(value) is not in [0, 1]" }
                return nil
            },
            defaultValue: { _ in "0.5" }
        ),
        .init(
            name: "min.compaction.lag.ms",
            type: .long,
            brokerSynonym: "log.cleaner.min.compaction.lag.ms",
            documentation: "Accepted for compatibility.",
            validate: long(min: 0),
            defaultValue: { _ in "0" }
        ),
        .init(
            name: "min.insync.replicas",
            type: .int,
            brokerSynonym: "min.insync.replicas",
            documentation: "Fjord has one replica per partition: acks=all produces fail with NOT_ENOUGH_REPLICAS above 1.",
            validate: int(min: 1),
            defaultValue: { _ in "1" }
        ),
        .init(
            name: "preallocate",
            type: .boolean,
            brokerSynonym: "log.preallocate",
            documentation: "Accepted for compatibility.",
            validate: boolean,
            defaultValue: { _ in "false" }
        ),
        .init(
            name: "retention.bytes",
            type: .long,
            brokerSynonym: "log.retention.bytes",
            documentation: "Delete the oldest segments while a partition is larger than this (-1: no limit).",
            validate: long(min: -1),
            defaultValue: { String($0.retentionBytes) }
        ),
        .init(
            name: "retention.ms",
            type: .long,
            brokerSynonym: "log.retention.ms",
            documentation: "Delete segments whose newest record is older than this (-1: keep forever).",
            validate: long(min: -1),
            defaultValue: { String($0.retentionMs) }
        ),
        .init(
            name: "segment.bytes",
            type: .int,
            brokerSynonym: "log.segment.bytes",
            documentation: "Roll a new segment file when the active one reaches this size.",
            validate: int(min: 14),
            defaultValue: { String($0.segmentBytes) }
        ),
        .init(
            name: "segment.index.bytes",
            type: .int,
            brokerSynonym: "log.index.size.max.bytes",
            documentation: "Accepted for compatibility.",
            validate: int(min: 4),
            defaultValue: { _ in "10485760" }
        ),
        .init(
            name: "segment.jitter.ms",
            type: .long,
            brokerSynonym: "log.roll.jitter.ms",
            documentation: "Accepted for compatibility.",
            validate: long(min: 0),
            defaultValue: { _ in "0" }
        ),
        .init(
            name: "segment.ms",
            type: .long,
            brokerSynonym: "log.roll.ms",
            documentation: "Roll a new segment file when the active one is this old.",
            validate: long(min: 1),
            defaultValue: { String($0.segmentMs) }
        ),
        .init(
            name: "unclean.leader.election.enable",
            type: .boolean,
            brokerSynonym: "unclean.leader.election.enable",
            documentation: "Accepted for compatibility; Fjord has one replica per partition.",
            validate: boolean,
            defaultValue: { _ in "false" }
        ),
    ]

    static let byName: [String: TopicConfigDefinition] = Dictionary(
        uniqueKeysWithValues: definitions.map { ($0.name, $0) }
    )

    /// Validates configs given at topic creation: every name must be known and every value valid.
    /// Returns the error message Kafka's INVALID_CONFIG carries, or nil.
    static func validate(_ configs: [String: String]) -> String? {
        for name in configs.keys.sorted() {
            guard let definition = byName[name] else {
                return "Unknown topic config name: \(name)"
            }
            if let problem = definition.validate(configs[name] ?? "") {
                return "Invalid value \(configs[name] ?? "null") for configuration \(name): \(problem)"
            }
        }
        return nil
    }
}

/// A topic's effective settings: its own configs over the broker's defaults, parsed once.
struct TopicSettings: Sendable, Equatable {
    var maxMessageBytes: Int32
    var retentionMs: Int64
    var retentionBytes: Int64
    var segmentBytes: Int32
    var segmentMs: Int64
    var minInsyncReplicas: Int32
    var timestampBeforeMaxMs: Int64
    var timestampAfterMaxMs: Int64

    init(configs: [String: String], broker: BrokerConfiguration) {
        func value<T: LosslessStringConvertible>(_ name: String, _ fallback: T) -> T {
            configs[name].flatMap(T.init) ?? fallback
        }
        maxMessageBytes = value("max.message.bytes", broker.messageMaxBytes)
        retentionMs = value("retention.ms", broker.retentionMs)
        retentionBytes = value("retention.bytes", broker.retentionBytes)
        segmentBytes = value("segment.bytes", broker.segmentBytes)
        segmentMs = value("segment.ms", broker.segmentMs)
        minInsyncReplicas = value("min.insync.replicas", Int32(1))
        timestampBeforeMaxMs = value("message.timestamp.before.max.ms", Int64.max)
        timestampAfterMaxMs = value("message.timestamp.after.max.ms", Int64.max)
    }

    /// Options passed to the storage backend when a partition's log opens.
    var logOptions: [(key: String, value: String)] {
        [("segment.bytes", String(segmentBytes)), ("segment.ms", String(segmentMs))]
    }
}
