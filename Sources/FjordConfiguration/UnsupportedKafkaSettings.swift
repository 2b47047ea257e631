/// Kafka broker settings Fjord does not support yet, so that a server.properties copied from Kafka
/// fails with "not supported by Fjord" and a reason instead of "unknown key" — or, worse, a
/// setting silently ignored. Settings outside this list and the supported ones are unknown keys.
enum UnsupportedKafkaSettings {
    /// Why a Kafka setting is not supported, nil for a key Kafka does not have either.
    static func reason(_ key: String) -> String? {
        if let reason = exact[key] { return reason }
        for (prefix, reason) in prefixes where key.hasPrefix(prefix) { return reason }
        return nil
    }

    private static let replication = "Fjord is a single broker with one replica per partition"
    private static let kraft = "Fjord is a single broker without a controller quorum or ZooKeeper"
    private static let threads = "Fjord sizes its event loops and storage threads itself (see num.io.threads)"

    private static let prefixes: [(String, String)] = [
        ("ssl.", "TLS is not supported by Fjord yet"),
        ("sasl.", "SASL is not supported by Fjord yet"),
        ("listener.name.", "per-listener settings need named listeners, not supported by Fjord yet"),
        ("zookeeper.", kraft),
        ("controller.", kraft),
        ("replica.", replication),
        ("leader.imbalance.", replication),
        ("log.cleaner.", "log compaction is not supported by Fjord"),
        ("transaction.", "transactions are not supported by Fjord yet"),
        ("transactional.", "transactions are not supported by Fjord yet"),
        ("quota.", "client quotas are not supported by Fjord"),
        ("client.quota.", "client quotas are not supported by Fjord"),
        ("authorizer.", "authorization is not supported by Fjord"),
        ("security.", "security protocols other than PLAINTEXT are not supported by Fjord yet"),
        ("password.encoder.", "dynamic broker configuration is not supported by Fjord"),
        ("remote.log.", "tiered storage is not supported by Fjord"),
        ("metric.", "Fjord exports Prometheus metrics itself (fjord.metrics.listen)"),
        ("metrics.", "Fjord exports Prometheus metrics itself (fjord.metrics.listen)"),
        ("kafka.metrics.", "Fjord exports Prometheus metrics itself (fjord.metrics.listen)"),
        ("group.consumer.", "the KIP-848 consumer group protocol is not supported by Fjord"),
        ("group.coordinator.", "the group coordinator is not configurable in Fjord"),
        ("offsets.", "the committed-offsets log is not configurable in Fjord"),
        ("log.index.", "index sizes are chosen by the storage backend"),
        ("log.flush.", "durability follows acks (see log.flush.interval.ms)"),
        ("socket.", "socket buffers are left to the kernel"),
        ("delegation.token.", "delegation tokens are not supported by Fjord"),
        ("sasl_", "SASL is not supported by Fjord yet"),
    ]

    private static let exact: [String: String] = [
        "process.roles": kraft,
        "node.id.generation": kraft,
        "listener.security.protocol.map":
            "named listeners are not supported by Fjord yet; listeners take PLAINTEXT://host:port",
        "inter.broker.listener.name": replication,
        "control.plane.listener.name": kraft,
        "early.start.listeners": "Fjord starts its listener once recovery is done",
        "num.network.threads": threads,
        "num.recovery.threads.per.data.dir": threads,
        "background.threads": threads,
        "num.replica.fetchers": replication,
        "num.replica.alter.log.dirs.threads": replication,
        "unclean.leader.election.enable": replication,
        "auto.leader.rebalance.enable": replication,
        "broker.rack": replication,
        "reserved.broker.max.id": replication,
        "broker.id.generation.enable": replication,
        "delete.topic.enable": "topics can always be deleted in Fjord",
        "queued.max.requests": "Fjord bounds queued requests by bytes (queued.max.request.bytes)",
        "request.timeout.ms": "Fjord has no inter-broker requests",
        "log.preallocate": "segment preparation is chosen by the storage backend (fjord.backend.*)",
        "log.message.format.version": "Fjord stores record batch v2 only",
        "inter.broker.protocol.version": replication,
        "log.message.timestamp.difference.max.ms": "set message.timestamp.before.max.ms / after.max.ms on topics",
        "log.segment.delete.delay.ms": "segments are deleted at once",
        "log.roll.jitter.ms": "segment rolling is chosen by the storage backend",
        "log.roll.jitter.hours": "segment rolling is chosen by the storage backend",
        "log.retention.check.interval": "use log.retention.check.interval.ms",
        "max.connection.creation.rate": "use max.connections and max.connections.per.ip",
        "max.connections.per.ip.overrides": "use max.connections.per.ip",
        "connection.failed.authentication.delay.ms": "authentication is not supported by Fjord yet",
        "create.topic.policy.class.name": "topic policies are not supported by Fjord",
        "alter.config.policy.class.name": "dynamic configuration is not supported by Fjord",
        "principal.builder.class": "authentication is not supported by Fjord yet",
        "advertised.host.name": "use advertised.listeners",
        "advertised.port": "use advertised.listeners",
        "host.name": "use listeners",
        "port": "use listeners",
        "group.min.size": "not a Kafka setting for the classic protocol; see group.max.size",
        "compression.gzip.level": "Fjord never recompresses batches",
        "compression.lz4.level": "Fjord never recompresses batches",
        "compression.zstd.level": "Fjord never recompresses batches",
    ]
}
