import BrokerCore

/// Every setting Fjord reads, in the order they are applied (a later one of two that set the same
/// field wins: `log.retention.ms` over `.minutes` over `.hours`, `log.dirs` over `log.dir`, as in
/// Kafka). Kafka's key names and meanings where Kafka has the setting; `fjord.` keys for Fjord's own.
enum SettingDefinitions {
    static let all: [SettingDefinition] = identity + log + transport + groups + fixed + fjord

    /// `broker.id`/`node.id` (the same setting), listeners, data directory.
    private static let identity: [SettingDefinition] = [
        .init(
            key: "broker.id",
            flag: nil,
            type: .int,
            documentation: "This broker's node id (node.id's older name).",
            apply: { text, settings throws(ValueError) in settings.broker.nodeId = try Values.int(text, min: 0) },
            shown: { String($0.broker.nodeId) }
        ),
        .init(
            key: "node.id",
            flag: "--node-id",
            type: .int,
            documentation: "This broker's node id.",
            apply: { text, settings throws(ValueError) in settings.broker.nodeId = try Values.int(text, min: 0) },
            shown: { String($0.broker.nodeId) }
        ),
        .init(
            key: "listeners",
            flag: "--listen",
            type: .list,
            documentation: "The address to accept Kafka clients on: one PLAINTEXT listener, PLAINTEXT://host:port.",
            apply: { text, settings throws(ValueError) in settings.listener = try Values.listeners(text) },
            shown: { $0.listener.description },
            fromFlag: { "PLAINTEXT://" + $0 }
        ),
        .init(
            key: "advertised.listeners",
            flag: "--advertised-listener",
            type: .list,
            documentation:
                "The address clients are told to connect to (default: the listener, 127.0.0.1 for a wildcard host).",
            apply: { text, settings throws(ValueError) in
                let advertised = try Values.listeners(text)
                guard advertised.address.port >= 1, !advertised.address.isWildcard else {
                    throw ValueError(reason: "must name a host and port clients can reach")
                }
                settings.advertisedListener = advertised
            },
            shown: { Listener.plaintext($0.advertisedAddress).description },
            fromFlag: { "PLAINTEXT://" + $0 }
        ),
        .init(
            key: "log.dir",
            flag: nil,
            type: .string,
            documentation: "The data directory (log.dirs wins when both are set).",
            apply: { text, settings throws(ValueError) in settings.dataDirectory = try Values.nonEmpty(text) },
            shown: { _ in nil }
        ),
        .init(
            key: "log.dirs",
            flag: "--data-dir",
            type: .list,
            documentation: "The directory the storage backend keeps its data in (one directory).",
            apply: { text, settings throws(ValueError) in
                let directories = text.split(separator: ",").map { String($0).trimmingSpaces }.filter { !$0.isEmpty }
                guard directories.count == 1, let directory = directories.first else {
                    throw ValueError(reason: "Fjord keeps its data in one directory; got \(directories.count)")
                }
                settings.dataDirectory = directory
            },
            shown: { $0.dataDirectory }
        ),
    ]

    /// Topic defaults, retention and flushing.
    private static let log: [SettingDefinition] = [
        .init(
            key: "num.partitions",
            flag: "--default-partitions",
            type: .int,
            documentation: "Partitions of an auto-created topic (and of CreateTopics with NumPartitions -1).",
            apply: { text, settings throws(ValueError) in
                settings.broker.defaultPartitions = try Values.int(text, min: 1)
            },
            shown: { String($0.broker.defaultPartitions) }
        ),
        .init(
            key: "auto.create.topics.enable",
            flag: "--auto-create-topics",
            type: .boolean,
            documentation: "Create unknown topics on Metadata and Produce.",
            apply: { text, settings throws(ValueError) in settings.broker.autoCreateTopics = try Values.boolean(text) },
            shown: { String($0.broker.autoCreateTopics) }
        ),
        .init(
            key: "message.max.bytes",
            flag: "--message-max-bytes",
            type: .int,
            documentation: "Largest record batch accepted (topics override it with max.message.bytes).",
            apply: { text, settings throws(ValueError) in settings.broker.messageMaxBytes = try Values.int(text, min: 1)
            },
            shown: { String($0.broker.messageMaxBytes) }
        ),
        .init(
            key: "fetch.max.bytes",
            flag: nil,
            type: .int,
            documentation: "Most record bytes one Fetch response carries.",
            apply: { text, settings throws(ValueError) in settings.broker.fetchMaxBytes = try Values.int(text, min: 1)
            },
            shown: { String($0.broker.fetchMaxBytes) }
        ),
        .init(
            key: "log.retention.hours",
            flag: nil,
            type: .int,
            documentation: "Default retention of topics, in hours.",
            apply: { text, settings throws(ValueError) in
                let hours = try Values.long(text, min: -1, max: Int64.max / 3_600_000)
                settings.broker.retentionMs = hours < 0 ? -1 : hours * 3_600_000
            },
            shown: { _ in nil }
        ),
        .init(
            key: "log.retention.minutes",
            flag: nil,
            type: .int,
            documentation: "Default retention of topics, in minutes.",
            apply: { text, settings throws(ValueError) in
                let minutes = try Values.long(text, min: -1, max: Int64.max / 60_000)
                settings.broker.retentionMs = minutes < 0 ? -1 : minutes * 60_000
            },
            shown: { _ in nil }
        ),
        .init(
            key: "log.retention.ms",
            flag: "--log-retention-ms",
            type: .long,
            documentation: "Default retention.ms of topics: delete segments older than this (-1: keep forever).",
            apply: { text, settings throws(ValueError) in settings.broker.retentionMs = try Values.long(text, min: -1)
            },
            shown: { String($0.broker.retentionMs) }
        ),
        .init(
            key: "log.retention.bytes",
            flag: "--log-retention-bytes",
            type: .long,
            documentation: "Default retention.bytes of topics (-1: no limit).",
            apply: { text, settings throws(ValueError) in
                settings.broker.retentionBytes = try Values.long(text, min: -1)
            },
            shown: { String($0.broker.retentionBytes) }
        ),
        .init(
            key: "log.segment.bytes",
            flag: "--log-segment-bytes",
            type: .int,
            documentation: "Default segment.bytes of topics.",
            apply: { text, settings throws(ValueError) in settings.broker.segmentBytes = try Values.int(text, min: 14)
            },
            shown: { String($0.broker.segmentBytes) }
        ),
        .init(
            key: "log.roll.hours",
            flag: nil,
            type: .int,
            documentation: "Default segment.ms of topics, in hours.",
            apply: { text, settings throws(ValueError) in
                settings.broker.segmentMs = try Values.long(text, min: 1, max: Int64.max / 3_600_000) * 3_600_000
            },
            shown: { _ in nil }
        ),
        .init(
            key: "log.roll.ms",
            flag: nil,
            type: .long,
            documentation: "Default segment.ms of topics.",
            apply: { text, settings throws(ValueError) in settings.broker.segmentMs = try Values.long(text, min: 1) },
            shown: { String($0.broker.segmentMs) }
        ),
        .init(
            key: "log.retention.check.interval.ms",
            flag: "--retention-check-interval-ms",
            type: .long,
            documentation: "How often retention is applied.",
            apply: { text, settings throws(ValueError) in
                settings.broker.retentionCheckIntervalMs = try Values.long(text, min: 1)
            },
            shown: { String($0.broker.retentionCheckIntervalMs) }
        ),
        .init(
            key: "log.flush.interval.ms",
            flag: "--flush-interval-ms",
            type: .long,
            documentation: "How often acks=0/1 data is synced to stable storage (acks=all is always synced first).",
            apply: { text, settings throws(ValueError) in
                settings.broker.flushIntervalMs = try Values.long(text, min: 1)
            },
            shown: { String($0.broker.flushIntervalMs) }
        ),
        .init(
            key: "producer.id.expiration.ms",
            flag: nil,
            type: .int,
            documentation: "Idle idempotent producers are forgotten after this.",
            apply: { text, settings throws(ValueError) in
                settings.broker.producerIdExpirationMs = try Values.long(text, min: 1)
            },
            shown: { String($0.broker.producerIdExpirationMs) }
        ),
        .init(
            key: "num.io.threads",
            flag: "--num-io-threads",
            type: .int,
            documentation: "Storage threads for a backend that blocks on I/O (file).",
            apply: { text, settings throws(ValueError) in
                settings.ioThreads = Int(try Values.int(text, min: 1, max: 1024))
            },
            shown: { String($0.ioThreads) }
        ),
    ]

    /// The Kafka listener's limits.
    private static let transport: [SettingDefinition] = [
        .init(
            key: "socket.request.max.bytes",
            flag: "--max-request-bytes",
            type: .int,
            documentation: "Largest request frame accepted.",
            apply: { text, settings throws(ValueError) in
                settings.server.maxFrameBytes = Int(try Values.int(text, min: 1))
            },
            shown: { String($0.server.maxFrameBytes) }
        ),
        .init(
            key: "queued.max.request.bytes",
            flag: "--queued-max-request-bytes",
            type: .long,
            documentation:
                "Bytes of requests read and not yet answered, over all connections, before reading stops (-1: no limit).",
            apply: { text, settings throws(ValueError) in
                let bytes = try Values.long(text, min: -1)
                guard bytes != 0 else { throw ValueError(reason: "must be -1 or at least 1") }
                settings.server.queuedMaxRequestBytes = bytes < 0 ? Int.max : Int(bytes)
            },
            shown: { $0.server.queuedMaxRequestBytes == Int.max ? "-1" : String($0.server.queuedMaxRequestBytes) }
        ),
        .init(
            key: "connections.max.idle.ms",
            flag: "--idle-timeout-ms",
            type: .long,
            documentation: "Close connections idle this long.",
            apply: { text, settings throws(ValueError) in
                settings.server.idleTimeout = .milliseconds(try Values.long(text, min: 1))
            },
            shown: { String(milliseconds($0.server.idleTimeout)) }
        ),
        .init(
            key: "max.connections",
            flag: "--max-connections",
            type: .int,
            documentation:
                "Open connections; at the limit a new one replaces the oldest that sent no request, else it is refused.",
            apply: { text, settings throws(ValueError) in
                settings.server.maxConnections = Int(try Values.int(text, min: 1))
            },
            shown: { String($0.server.maxConnections) }
        ),
        .init(
            key: "max.connections.per.ip",
            flag: "--max-connections-per-ip",
            type: .int,
            documentation: "Open connections from one address.",
            apply: { text, settings throws(ValueError) in
                let count = Int(try Values.int(text, min: 1))
                settings.server.maxConnectionsPerIP = count == Int(Int32.max) ? Int.max : count
            },
            shown: {
                $0.server.maxConnectionsPerIP == Int.max ? String(Int32.max) : String($0.server.maxConnectionsPerIP)
            }
        ),
    ]

    /// The group coordinator.
    private static let groups: [SettingDefinition] = [
        .init(
            key: "group.initial.rebalance.delay.ms",
            flag: "--group-initial-rebalance-delay-ms",
            type: .int,
            documentation: "How long the first rebalance of a new consumer group waits for more members.",
            apply: { text, settings throws(ValueError) in
                settings.broker.groupInitialRebalanceDelayMs = try Values.int(text, min: 0)
            },
            shown: { String($0.broker.groupInitialRebalanceDelayMs) }
        ),
        .init(
            key: "group.min.session.timeout.ms",
            flag: "--group-min-session-timeout-ms",
            type: .int,
            documentation: "Smallest consumer session timeout accepted.",
            apply: { text, settings throws(ValueError) in
                settings.broker.groupMinSessionTimeoutMs = try Values.int(text, min: 1)
            },
            shown: { String($0.broker.groupMinSessionTimeoutMs) }
        ),
        .init(
            key: "group.max.session.timeout.ms",
            flag: "--group-max-session-timeout-ms",
            type: .int,
            documentation: "Largest consumer session timeout accepted.",
            apply: { text, settings throws(ValueError) in
                settings.broker.groupMaxSessionTimeoutMs = try Values.int(text, min: 1)
            },
            shown: { String($0.broker.groupMaxSessionTimeoutMs) }
        ),
        .init(
            key: "transaction.max.timeout.ms",
            flag: "--transaction-max-timeout-ms",
            type: .int,
            documentation: "Longest transaction timeout a producer may ask for.",
            apply: { text, settings throws(ValueError) in
                settings.broker.transactionMaxTimeoutMs = try Values.int(text, min: 1)
            },
            shown: { String($0.broker.transactionMaxTimeoutMs) }
        ),
        .init(
            key: "transactional.id.expiration.ms",
            flag: "--transactional-id-expiration-ms",
            type: .long,
            documentation: "Transactional ids idle this long are forgotten.",
            apply: { text, settings throws(ValueError) in
                settings.broker.transactionalIdExpirationMs = try Values.long(text, min: 1)
            },
            shown: { String($0.broker.transactionalIdExpirationMs) }
        ),
        .init(
            key: "group.max.size",
            flag: nil,
            type: .int,
            documentation: "Members per consumer group.",
            apply: { text, settings throws(ValueError) in settings.broker.groupMaxSize = try Values.int(text, min: 1) },
            shown: { String($0.broker.groupMaxSize) }
        ),
        .init(
            key: "offset.metadata.max.bytes",
            flag: nil,
            type: .int,
            documentation: "Longest metadata string an offset commit may carry.",
            apply: { text, settings throws(ValueError) in
                settings.broker.offsetMetadataMaxBytes = try Values.int(text, min: 0)
            },
            shown: { String($0.broker.offsetMetadataMaxBytes) }
        ),
    ]

    /// Kafka settings whose value Fjord fixes: accepted with that value, refused with any other.
    private static let fixed: [SettingDefinition] = [
        fixedSetting("default.replication.factor", "1", .int, "Fjord keeps one replica per partition"),
        fixedSetting("offsets.topic.replication.factor", "1", .short, "Fjord keeps one replica per partition"),
        fixedSetting("transaction.state.log.replication.factor", "1", .short, "Fjord keeps one replica per partition"),
        fixedSetting("transaction.state.log.min.isr", "1", .int, "Fjord keeps one replica per partition"),
        fixedSetting("min.insync.replicas", "1", .int, "Fjord keeps one replica per partition"),
        fixedSetting("log.cleanup.policy", "delete", .list, "log compaction is not supported by Fjord"),
        fixedSetting("compression.type", "producer", .string, "batches are stored as the producer compressed them"),
        fixedSetting("log.message.timestamp.type", "CreateTime", .string, "record timestamps are the producer's"),
    ]

    private static func fixedSetting(
        _ key: String,
        _ value: String,
        _ type: ConfigType,
        _ why: String
    ) -> SettingDefinition {
        SettingDefinition(
            key: key,
            flag: nil,
            type: type,
            documentation: "Always \(value): \(why).",
            apply: { text, _ throws(ValueError) in try Values.fixed(text, value, why) },
            shown: { _ in value }
        )
    }

    /// Fjord's own settings.
    private static let fjord: [SettingDefinition] = [
        .init(
            key: "fjord.backend",
            flag: "--backend",
            type: .string,
            documentation: "The storage backend linked into fjord (memory, file, uring).",
            apply: { text, settings throws(ValueError) in settings.backendName = try Values.nonEmpty(text) },
            shown: { $0.backendLibrary == nil ? ($0.backendName ?? "file") : nil }
        ),
        .init(
            key: "fjord.backend.library",
            flag: "--backend-path",
            type: .string,
            documentation:
                "A third-party storage backend (shared library built against kstore.h) instead of fjord.backend.",
            apply: { text, settings throws(ValueError) in settings.backendLibrary = try Values.nonEmpty(text) },
            shown: { $0.backendLibrary }
        ),
        .init(
            key: "fjord.metrics.listen",
            flag: "--metrics-listen",
            type: .string,
            documentation:
                "host:port of the operations listener (GET /metrics, /health/live, /health/ready); off unless set.",
            apply: { text, settings throws(ValueError) in settings.metricsListen = try Values.hostPort(text) },
            shown: { $0.metricsListen?.description }
        ),
        .init(
            key: "fjord.log.level",
            flag: "--log-level",
            type: .string,
            documentation: "Least severe level logged: trace, debug, info, notice, warning, error, critical.",
            apply: { text, settings throws(ValueError) in
                settings.logLevel = try Values.oneOf(
                    text,
                    ["trace", "debug", "info", "notice", "warning", "error", "critical"]
                )
            },
            shown: { $0.logLevel }
        ),
        .init(
            key: "fjord.log.format",
            flag: "--log-format",
            type: .string,
            documentation: "text, or json (one object per line for log shippers).",
            apply: { text, settings throws(ValueError) in
                // Cannot fail: oneOf accepted one of the raw values.
                settings.logFormat = LogFormat(rawValue: try Values.oneOf(text, LogFormat.allCases.map(\.rawValue)))!
            },
            shown: { $0.logFormat.rawValue }
        ),
        .init(
            key: "fjord.max.in.flight.requests",
            flag: "--max-in-flight-requests",
            type: .int,
            documentation: "Unanswered requests per connection before fjord stops reading from it.",
            apply: { text, settings throws(ValueError) in
                settings.server.maxInFlightRequestsPerConnection = Int(try Values.int(text, min: 1))
            },
            shown: { String($0.server.maxInFlightRequestsPerConnection) }
        ),
        .init(
            key: "fjord.first.request.timeout.ms",
            flag: "--first-request-timeout-ms",
            type: .long,
            documentation: "Close a new connection that sends no complete request within this time.",
            apply: { text, settings throws(ValueError) in
                settings.server.firstRequestTimeout = .milliseconds(try Values.long(text, min: 1))
            },
            shown: { String(milliseconds($0.server.firstRequestTimeout)) }
        ),
        .init(
            key: "fjord.max.response.memory.bytes",
            flag: "--max-response-memory-bytes",
            type: .long,
            documentation: "Bytes of responses built and not yet written, over all connections.",
            apply: { text, settings throws(ValueError) in
                settings.server.maxResponseMemoryBytes = Int(try Values.long(text, min: 1))
            },
            shown: { String($0.server.maxResponseMemoryBytes) }
        ),
        .init(
            key: "fjord.max.response.memory.bytes.per.connection",
            flag: "--max-response-memory-bytes-per-connection",
            type: .long,
            documentation: "The same bound for one connection.",
            apply: { text, settings throws(ValueError) in
                settings.server.maxResponseMemoryBytesPerConnection = Int(try Values.long(text, min: 1))
            },
            shown: { String($0.server.maxResponseMemoryBytesPerConnection) }
        ),
        .init(
            key: "fjord.shutdown.grace.period.ms",
            flag: "--shutdown-grace-period-ms",
            type: .long,
            documentation:
                "How long a graceful shutdown waits for in-flight requests before closing their connections.",
            apply: { text, settings throws(ValueError) in
                settings.server.shutdownGracePeriod = .milliseconds(try Values.long(text, min: 0))
            },
            shown: { String(milliseconds($0.server.shutdownGracePeriod)) }
        ),
    ]

    private static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
