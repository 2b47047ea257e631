/// One topic-level config Fjord knows: its Kafka name, type and broker-level synonym (whose
/// effective value is the topic's default), and whether Fjord enforces it or only stores it (a
/// single-broker setting such as `min.insync.replicas` = 1, or compaction settings for the
/// `delete` policy).
struct TopicConfigDefinition: Sendable {
    var name: String
    var type: ConfigType
    /// A name in `BrokerConfigs`.
    var brokerSynonym: String
    var documentation: String
    /// Returns an error message for an unacceptable value.
    var validate: @Sendable (String) -> String?
}

enum TopicConfigs {
    typealias V = ConfigValidation

    static let compaction = "log compaction is not supported by Fjord"
    static let cleanupPolicy = V.oneOf(
        ["delete"],
        unsupported: ["compact": compaction, "compact,delete": compaction, "delete,compact": compaction]
    )

    /// The topic configs Fjord accepts, in the order DescribeConfigs lists them.
    static let definitions: [TopicConfigDefinition] = [
        .init(
            name: "cleanup.policy",
            type: .list,
            brokerSynonym: "log.cleanup.policy",
            documentation: "Retention policy; Fjord supports delete (log compaction is not supported).",
            validate: cleanupPolicy
        ),
        .init(
            name: "compression.type",
            type: .string,
            brokerSynonym: "compression.type",
            documentation: """
                The codec batches are stored with: producer keeps the producer's codec (its bytes are \
                stored as sent); uncompressed, gzip, snappy, lz4 or zstd recompress batches of other codecs.
                """,
            validate: V.oneOf(TopicCompression.names)
        ),
        .init(
            name: "compression.gzip.level",
            type: .int,
            brokerSynonym: "compression.gzip.level",
            documentation: "The gzip level batches are recompressed with (-1: zlib's default, 6).",
            validate: V.gzipLevel
        ),
        .init(
            name: "compression.lz4.level",
            type: .int,
            brokerSynonym: "compression.lz4.level",
            documentation: "The lz4 level batches are recompressed with (9: lz4's fast mode, as Kafka; others: LZ4HC).",
            validate: V.int(min: 1, max: 17)
        ),
        .init(
            name: "compression.zstd.level",
            type: .int,
            brokerSynonym: "compression.zstd.level",
            documentation: "The zstd level batches are recompressed with.",
            validate: V.int(min: -131_072, max: 22)
        ),
        .init(
            name: "delete.retention.ms",
            type: .long,
            brokerSynonym: "log.cleaner.delete.retention.ms",
            documentation: "Accepted for compatibility; applies to compaction, which Fjord does not do.",
            validate: V.long(min: 0)
        ),
        .init(
            name: "file.delete.delay.ms",
            type: .long,
            brokerSynonym: "log.segment.delete.delay.ms",
            documentation: "Accepted for compatibility.",
            validate: V.long(min: 0)
        ),
        .init(
            name: "flush.messages",
            type: .long,
            brokerSynonym: "log.flush.interval.messages",
            documentation: "Accepted for compatibility; durability follows acks (see README).",
            validate: V.long(min: 1)
        ),
        .init(
            name: "flush.ms",
            type: .long,
            brokerSynonym: "log.flush.interval.ms",
            documentation: "Accepted for compatibility; durability follows acks (see README).",
            validate: V.long(min: 0)
        ),
        .init(
            name: "index.interval.bytes",
            type: .int,
            brokerSynonym: "log.index.interval.bytes",
            documentation: "Accepted for compatibility.",
            validate: V.int(min: 0)
        ),
        .init(
            name: "max.compaction.lag.ms",
            type: .long,
            brokerSynonym: "log.cleaner.max.compaction.lag.ms",
            documentation: "Accepted for compatibility.",
            validate: V.long(min: 1)
        ),
        .init(
            name: "max.message.bytes",
            type: .int,
            brokerSynonym: "message.max.bytes",
            documentation: "The largest record batch size allowed for this topic.",
            validate: V.int(min: 0)
        ),
        .init(
            name: "message.downconversion.enable",
            type: .boolean,
            brokerSynonym: "log.message.downconversion.enable",
            documentation: "Accepted for compatibility; Fjord serves only RecordBatch v2.",
            validate: V.boolean
        ),
        .init(
            name: "message.timestamp.after.max.ms",
            type: .long,
            brokerSynonym: "log.message.timestamp.after.max.ms",
            documentation: "How far a record timestamp may lie in the future of the broker's clock.",
            validate: V.long(min: 0)
        ),
        .init(
            name: "message.timestamp.before.max.ms",
            type: .long,
            brokerSynonym: "log.message.timestamp.before.max.ms",
            documentation: "How far a record timestamp may lie in the past of the broker's clock.",
            validate: V.long(min: 0)
        ),
        .init(
            name: "message.timestamp.difference.max.ms",
            type: .long,
            brokerSynonym: "log.message.timestamp.difference.max.ms",
            documentation: "Deprecated in Kafka; accepted for compatibility.",
            validate: V.long(min: 0)
        ),
        .init(
            name: "message.timestamp.type",
            type: .string,
            brokerSynonym: "log.message.timestamp.type",
            documentation:
                "CreateTime keeps the producer's timestamps; LogAppendTime stamps each batch with the broker's clock.",
            validate: V.oneOf(["CreateTime", "LogAppendTime"])
        ),
        .init(
            name: "min.cleanable.dirty.ratio",
            type: .double,
            brokerSynonym: "log.cleaner.min.cleanable.ratio",
            documentation: "Accepted for compatibility.",
            validate: V.ratio
        ),
        .init(
            name: "min.compaction.lag.ms",
            type: .long,
            brokerSynonym: "log.cleaner.min.compaction.lag.ms",
            documentation: "Accepted for compatibility.",
            validate: V.long(min: 0)
        ),
        .init(
            name: "min.insync.replicas",
            type: .int,
            brokerSynonym: "min.insync.replicas",
            documentation:
                "Fjord has one replica per partition: acks=all produces fail with NOT_ENOUGH_REPLICAS above 1.",
            validate: V.int(min: 1)
        ),
        .init(
            name: "preallocate",
            type: .boolean,
            brokerSynonym: "log.preallocate",
            documentation: "Accepted for compatibility.",
            validate: V.boolean
        ),
        .init(
            name: "retention.bytes",
            type: .long,
            brokerSynonym: "log.retention.bytes",
            documentation: "Delete the oldest segments while a partition is larger than this (-1: no limit).",
            validate: V.long(min: -1)
        ),
        .init(
            name: "retention.ms",
            type: .long,
            brokerSynonym: "log.retention.ms",
            documentation: "Delete segments whose newest record is older than this (-1: keep forever).",
            validate: V.long(min: -1)
        ),
        .init(
            name: "segment.bytes",
            type: .int,
            brokerSynonym: "log.segment.bytes",
            documentation: "Roll a new segment file when the active one reaches this size.",
            validate: V.int(min: 14)
        ),
        .init(
            name: "segment.index.bytes",
            type: .int,
            brokerSynonym: "log.index.size.max.bytes",
            documentation: "Accepted for compatibility.",
            validate: V.int(min: 4)
        ),
        .init(
            name: "segment.jitter.ms",
            type: .long,
            brokerSynonym: "log.roll.jitter.ms",
            documentation: "Accepted for compatibility.",
            validate: V.long(min: 0)
        ),
        .init(
            name: "segment.ms",
            type: .long,
            brokerSynonym: "log.roll.ms",
            documentation: "Roll a new segment file when the active one is this old.",
            validate: V.long(min: 1)
        ),
        .init(
            name: "unclean.leader.election.enable",
            type: .boolean,
            brokerSynonym: "unclean.leader.election.enable",
            documentation: "Accepted for compatibility; Fjord has one replica per partition.",
            validate: V.boolean
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

/// A topic's effective settings: its own configs over the broker's effective configs (dynamic,
/// static, default), parsed once when the topic or a config changes.
struct TopicSettings: Sendable, Equatable {
    var maxMessageBytes: Int32
    var retentionMs: Int64
    var retentionBytes: Int64
    var segmentBytes: Int32
    var segmentMs: Int64
    var minInsyncReplicas: Int32
    var timestampBeforeMaxMs: Int64
    var timestampAfterMaxMs: Int64
    var compression: TopicCompression
    /// The codec levels Kafka's `compression.*.level` name (KIP-390).
    var gzipLevel: Int32
    var lz4Level: Int32
    var zstdLevel: Int32
    var logAppendTime: Bool

    init(configs: [String: String], broker: BrokerConfigView) {
        func value<T: LosslessStringConvertible>(_ name: String, _ fallback: T) -> T {
            TopicSettings.effectiveValue(name, configs: configs, broker: broker).flatMap(T.init) ?? fallback
        }
        maxMessageBytes = value("max.message.bytes", broker.effective.messageMaxBytes)
        retentionMs = value("retention.ms", broker.effective.retentionMs)
        retentionBytes = value("retention.bytes", broker.effective.retentionBytes)
        segmentBytes = value("segment.bytes", broker.effective.segmentBytes)
        segmentMs = value("segment.ms", broker.effective.segmentMs)
        minInsyncReplicas = value("min.insync.replicas", Int32(1))
        timestampBeforeMaxMs = value("message.timestamp.before.max.ms", Int64.max)
        timestampAfterMaxMs = value("message.timestamp.after.max.ms", Int64.max)
        compression = TopicCompression(rawValue: value("compression.type", "producer")) ?? .producer
        gzipLevel = value("compression.gzip.level", Int32(-1))
        lz4Level = value("compression.lz4.level", Int32(9))
        zstdLevel = value("compression.zstd.level", Int32(3))
        logAppendTime = value("message.timestamp.type", "CreateTime") == "LogAppendTime"
    }

    /// A topic config's effective value: the topic's own, else its broker synonym's effective value.
    static func effectiveValue(_ name: String, configs: [String: String], broker: BrokerConfigView) -> String? {
        if let own = configs[name] { return own }
        return TopicConfigs.byName[name].flatMap { broker.value($0.brokerSynonym) }
    }

    /// Whether batches are rewritten before they are stored (recompression or LogAppendTime);
    /// otherwise the producer's bytes are stored as sent.
    var rewritesBatches: Bool { compression != .producer || logAppendTime }

    /// Options passed to the storage backend when a partition's log opens.
    var logOptions: [(key: String, value: String)] {
        [("segment.bytes", String(segmentBytes)), ("segment.ms", String(segmentMs))]
    }
}
