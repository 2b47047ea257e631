import KafkaMessages
import Logging
import NIOCore
import StorageHost

/// Serializes every change to broker metadata (topic creation and deletion, producer-id blocks)
/// and makes it durable in the metadata log before it takes effect, so a crash can never
/// leave a topic that clients saw but the broker forgot.
actor MetadataManager {
    static let logName = "__fjord_metadata"
    /// Producer ids are reserved in blocks; a restart skips the rest of the block.
    static let producerIdBlockSize: Int64 = 1000

    private let storage: StorageEngine
    private let log: StorageLog
    private let registry: TopicRegistry
    private let configuration: BrokerConfiguration
    private let logger: Logger
    private var nextOffset: Int64
    nonisolated let clusterId: String
    private var nextProducerId: Int64
    private var producerIdBlockEnd: Int64

    struct Replayed {
        var clusterId: String?
        var topics: [String: (id: KafkaUUID, partitionCount: Int32, configs: [String: String])] = [:]
        var producerIdBlockEnd: Int64 = 0
    }

    /// Replays the metadata log and opens every topic's partitions.
    static func open(
        storage: StorageEngine,
        registry: TopicRegistry,
        configuration: BrokerConfiguration,
        logger: Logger
    ) async throws -> MetadataManager {
        let log = try await storage.openLog(named: logName, create: true)
        let state = try log.state()
        var replayed = Replayed()
        var offset = state.startOffset
        while offset < state.endOffset {
            let chunk = try await log.read(from: offset, limit: state.endOffset, maxBytes: 1 << 20, minimumOneEntry: true)
            guard chunk.entryCount > 0 else { break }
            for record in try MetadataRecord.decodeAll(chunk.bytes) {
                switch record {
                case .clusterId(let id):
                    replayed.clusterId = id
                case .topicCreated(let name, let id, let partitionCount, let configs):
                    replayed.topics[name] = (id, partitionCount, configs)
                case .topicDeleted(let name, let id):
                    if replayed.topics[name]?.id == id { replayed.topics.removeValue(forKey: name) }
                case .producerIdBlock(let end):
                    replayed.producerIdBlockEnd = max(replayed.producerIdBlockEnd, end)
                }
            }
            offset = chunk.nextOffset
        }
        let manager = MetadataManager(
            storage: storage,
            log: log,
            registry: registry,
            configuration: configuration,
            logger: logger,
            nextOffset: state.endOffset,
            clusterId: replayed.clusterId ?? KafkaUUID.random().description,
            producerIdBlockEnd: replayed.producerIdBlockEnd
        )
        if replayed.clusterId == nil {
            try await manager.append(.clusterId(manager.clusterId))
        }
        for name in replayed.topics.keys.sorted() {
            let topic = replayed.topics[name]!  // Safe: iterating the dictionary's own keys.
            _ = try await manager.openTopic(
                name: name,
                id: topic.id,
                partitionCount: topic.partitionCount,
                configs: topic.configs
            )
        }
        await manager.deleteOrphanLogs()
        logger.info(
            "metadata replayed",
            metadata: [
                "topics": "\(replayed.topics.count)", "cluster-id": "\(manager.clusterId)",
                "metadata-entries": "\(state.endOffset - state.startOffset)",
            ]
        )
        return manager
    }

    private init(
        storage: StorageEngine,
        log: StorageLog,
        registry: TopicRegistry,
        configuration: BrokerConfiguration,
        logger: Logger,
        nextOffset: Int64,
        clusterId: String,
        producerIdBlockEnd: Int64
    ) {
        self.storage = storage
        self.log = log
        self.registry = registry
        self.configuration = configuration
        self.logger = logger
        self.nextOffset = nextOffset
        self.clusterId = clusterId
        self.nextProducerId = producerIdBlockEnd
        self.producerIdBlockEnd = producerIdBlockEnd
    }

    /// Appends a record and waits until it is durable (or, on a non-durable backend, stored).
    private func append(_ record: MetadataRecord) async throws {
        let entry = record.encode()
        try await log.append(firstOffset: nextOffset, lastOffset: nextOffset, maxTimestamp: -1, parts: [entry])
        nextOffset += 1
        try await log.sync()
    }

    private func openTopic(name: String, id: KafkaUUID, partitionCount: Int32, configs: [String: String]) async throws
        -> Topic
    {
        let settings = TopicSettings(configs: configs, broker: configuration)
        var partitions: [Partition] = []
        partitions.reserveCapacity(Int(partitionCount))
        do {
            for index in 0..<partitionCount {
                let partitionLog = try await storage.openLog(
                    named: Topic.logName(topic: name, partition: index),
                    create: true,
                    options: settings.logOptions
                )
                let recovered: StorageLogState
                do {
                    recovered = try partitionLog.state()
                } catch {
                    await partitionLog.close()
                    throw error
                }
                let partition = Partition(topicName: name, index: index, log: partitionLog, recovered: recovered)
                partitions.append(partition)
                if recovered.endOffset > recovered.startOffset {
                    try await partition.recoverProducerState(
                        windowOffsets: configuration.producerStateRecoveryOffsets,
                        nowMs: configuration.clock()
                    )
                }
            }
        } catch {
            for partition in partitions { await partition.close() }
            throw error
        }
        let topic = Topic(name: name, id: id, partitions: partitions, configs: configs, settings: settings)
        registry.insert(topic)
        return topic
    }

    /// Deletes partition logs that belong to no live topic: the remains of a deletion the
    /// broker crashed in the middle of (the TopicDeleted record is written first).
    private func deleteOrphanLogs() async {
        var live: Set<String> = [Self.logName]
        for topic in registry.all {
            for partition in topic.partitions { live.insert(partition.log.name) }
        }
        let names: [String]
        do {
            names = try await storage.listLogs()
        } catch {
            logger.error("cannot list logs to find orphans; leaving them", metadata: ["error": "\(error)"])
            return
        }
        for name in names where !live.contains(name) && !name.hasPrefix("__fjord") {
            // A deletion or a creation the broker did not finish: no topic record names the log.
            logger.warning("removing a log that no topic record names", metadata: ["log": "\(name)"])
            do {
                try await storage.deleteLog(named: name)
            } catch {
                // Never fatal: the log is ignored (and tried again at the next start).
                logger.error("could not remove orphan log; ignoring it", metadata: ["log": "\(name)", "error": "\(error)"])
            }
        }
    }

    enum CreateError: Error {
        case alreadyExists
    }

    /// Creates a topic (the caller validated name, partition count and configs). Durable before
    /// it becomes visible.
    ///
    /// Atomic: the partition logs are created first and the topic record is written last, so a
    /// creation that fails half-way (no space, too many open files) removes the logs it created,
    /// through the ABI, and leaves nothing; a crash before the record leaves logs no record names,
    /// which the next start reports and removes.
    func createTopic(name: String, partitionCount: Int32, configs: [String: String]) async throws -> Topic {
        if registry.topic(named: name) != nil { throw CreateError.alreadyExists }
        let id = KafkaUUID.random()
        let settings = TopicSettings(configs: configs, broker: configuration)
        var created: [StorageLog] = []
        do {
            for index in 0..<partitionCount {
                created.append(
                    try await storage.openLog(
                        named: Topic.logName(topic: name, partition: index),
                        create: true,
                        exclusive: true,
                        options: settings.logOptions
                    )
                )
            }
            try await append(.topicCreated(name: name, id: id, partitionCount: partitionCount, configs: configs))
        } catch {
            await removeLogs(created, ofTopic: name, after: error)
            throw error
        }
        let partitions = try created.enumerated().map { index, log in
            Partition(topicName: name, index: Int32(index), log: log, recovered: try log.state())
        }
        let topic = Topic(name: name, id: id, partitions: partitions, configs: configs, settings: settings)
        registry.insert(topic)
        logger.info("created topic", metadata: ["topic": "\(name)", "partitions": "\(partitionCount)", "id": "\(id)"])
        return topic
    }

    /// Closes and deletes the logs of a topic whose creation failed.
    private func removeLogs(_ logs: [StorageLog], ofTopic name: String, after error: any Error) async {
        logger.warning(
            "creating topic failed; removing the partitions created so far",
            metadata: ["topic": "\(name)", "partitions": "\(logs.count)", "error": "\(error)"]
        )
        for log in logs {
            await log.close()
            do {
                try await storage.deleteLog(named: log.name)
            } catch {
                // Left for the next start, which removes logs that no topic record names.
                logger.error("could not remove log", metadata: ["log": "\(log.name)", "error": "\(error)"])
            }
        }
    }

    /// Creates a topic unless it exists already (auto-creation racing with itself or with
    /// CreateTopics), returning the live one either way.
    func createTopicIfAbsent(name: String, partitionCount: Int32) async throws -> Topic {
        if let existing = registry.topic(named: name) { return existing }
        return try await createTopic(name: name, partitionCount: partitionCount, configs: [:])
    }

    /// Deletes a topic: durable record first, then it disappears from the registry, its
    /// partitions stop and their logs are deleted.
    func deleteTopic(_ topic: Topic) async throws {
        guard registry.topic(id: topic.id) === topic else { return }
        try await append(.topicDeleted(name: topic.name, id: topic.id))
        registry.remove(topic)
        for partition in topic.partitions {
            await partition.close()
            do {
                try await storage.deleteLog(named: partition.log.name)
            } catch {
                // The record is durable; the startup sweep removes what is left.
                logger.error("could not delete log", metadata: ["log": "\(partition.log.name)", "error": "\(error)"])
            }
        }
        logger.info("deleted topic", metadata: ["topic": "\(topic.name)", "id": "\(topic.id)"])
    }

    /// A fresh producer id, never handed out before by this broker's data directory.
    func allocateProducerId() async throws -> Int64 {
        if nextProducerId >= producerIdBlockEnd {
            let end = producerIdBlockEnd + Self.producerIdBlockSize
            try await append(.producerIdBlock(end: end))
            producerIdBlockEnd = end
        }
        defer { nextProducerId += 1 }
        return nextProducerId
    }

    func close() async {
        await log.close()
    }
}
