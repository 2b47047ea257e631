import KafkaMessages
import Logging
import NIOCore
import StorageHost

/// Serializes every change to broker metadata (topic creation, deletion, new partitions, topic
/// and dynamic broker configs, producer-id blocks) and makes it durable in the metadata log
/// before it takes effect, so a crash can never leave a change that clients saw but the broker
/// forgot.
actor MetadataManager {
    static let logName = "__fjord_metadata"
    /// Producer ids are reserved in blocks; a restart skips the rest of the block.
    static let producerIdBlockSize: Int64 = 1000

    private let storage: StorageEngine
    private let log: StorageLog
    private let registry: TopicRegistry
    private let configuration: BrokerConfiguration
    private let configs: BrokerConfigStore
    private let logger: Logger
    private var nextOffset: Int64
    private var isAppending = false
    private var appendWaiters: [CheckedContinuation<Void, Never>] = []
    nonisolated let clusterId: String
    private var nextProducerId: Int64
    private var producerIdBlockEnd: Int64

    struct Replayed {
        var clusterId: String?
        var topics: [String: (id: KafkaUUID, partitionCount: Int32, configs: [String: String])] = [:]
        var producerIdBlockEnd: Int64 = 0
        var dynamicConfigs = DynamicBrokerConfigs()

        /// Applies one record; `nodeId` picks this broker's per-broker configs.
        mutating func apply(_ record: MetadataRecord, nodeId: Int32) {
            switch record {
            case .clusterId(let id):
                clusterId = id
            case .topicCreated(let name, let id, let partitionCount, let configs):
                topics[name] = (id, partitionCount, configs)
            case .topicDeleted(let name, let id):
                if topics[name]?.id == id { topics.removeValue(forKey: name) }
            case .producerIdBlock(let end):
                producerIdBlockEnd = max(producerIdBlockEnd, end)
            case .topicConfigsChanged(let name, let id, let configs):
                if topics[name]?.id == id { topics[name]?.configs = configs }
            case .partitionsAdded(let name, let id, let partitionCount):
                if topics[name]?.id == id { topics[name]?.partitionCount = partitionCount }
            case .brokerConfigsChanged(let brokerId, let configs):
                if brokerId == nil {
                    dynamicConfigs.clusterDefault = configs
                } else if brokerId == nodeId {
                    dynamicConfigs.perBroker = configs
                }
            }
        }
    }

    /// Replays the metadata log and opens every topic's partitions.
    static func open(
        storage: StorageEngine,
        registry: TopicRegistry,
        configs: BrokerConfigStore,
        logger: Logger
    ) async throws -> MetadataManager {
        let configuration = configs.current.staticConfiguration
        let log = try await storage.openLog(named: logName, create: true)
        let state = try log.state()
        var replayed = Replayed()
        var offset = state.startOffset
        while offset < state.endOffset {
            let chunk = try await log.read(
                from: offset,
                limit: state.endOffset,
                maxBytes: 1 << 20,
                minimumOneEntry: true
            )
            guard chunk.entryCount > 0 else { break }
            for record in try MetadataRecord.decodeAll(chunk.bytes) {
                replayed.apply(record, nodeId: configuration.nodeId)
            }
            offset = chunk.nextOffset
        }
        // Topic settings are computed over the broker's configs: the dynamic ones first.
        configs.replace(dynamic: replayed.dynamicConfigs)
        let manager = MetadataManager(
            storage: storage,
            log: log,
            registry: registry,
            configuration: configuration,
            configs: configs,
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
        configs: BrokerConfigStore,
        logger: Logger,
        nextOffset: Int64,
        clusterId: String,
        producerIdBlockEnd: Int64
    ) {
        self.storage = storage
        self.log = log
        self.registry = registry
        self.configuration = configuration
        self.configs = configs
        self.logger = logger
        self.nextOffset = nextOffset
        self.clusterId = clusterId
        self.nextProducerId = producerIdBlockEnd
        self.producerIdBlockEnd = producerIdBlockEnd
    }

    /// Appends a record and waits until it is durable (or, on a non-durable backend, stored).
    /// One append at a time: the actor is reentrant at each await, and two changes made at once
    /// (concurrent CreateTopics, auto-creations) would otherwise both write at `nextOffset`.
    private func append(_ record: MetadataRecord) async throws {
        while isAppending {
            await withCheckedContinuation { appendWaiters.append($0) }
        }
        isAppending = true
        defer {
            isAppending = false
            if !appendWaiters.isEmpty { appendWaiters.removeFirst().resume() }
        }
        let entry = record.encode()
        try await log.append(firstOffset: nextOffset, lastOffset: nextOffset, maxTimestamp: -1, parts: [entry])
        nextOffset += 1
        try await log.sync()
    }

    private func openTopic(
        name: String,
        id: KafkaUUID,
        partitionCount: Int32,
        configs: [String: String]
    ) async throws
        -> Topic
    {
        let settings = TopicSettings(configs: configs, broker: self.configs.current)
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
                logger.error(
                    "could not remove orphan log; ignoring it",
                    metadata: ["log": "\(name)", "error": "\(error)"]
                )
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
        let settings = TopicSettings(configs: configs, broker: self.configs.current)
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
        // The latest snapshot: partitions added since the caller looked the topic up go too.
        guard let topic = registry.topic(id: topic.id) else { return }
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

    /// CreatePartitions: grows a topic to `partitionCount` partitions (the caller checked it is
    /// larger). Atomic like creation: the new logs first, then the record, then the topic snapshot
    /// with the new partitions replaces the old one; a failure removes the logs it created.
    func addPartitions(to topic: Topic, partitionCount: Int32) async throws -> Topic {
        guard let current = registry.topic(id: topic.id) else { throw ChangeError.topicDeleted }
        guard partitionCount > Int32(current.partitions.count) else { throw ChangeError.stale }
        var created: [StorageLog] = []
        do {
            for index in Int32(current.partitions.count)..<partitionCount {
                created.append(
                    try await storage.openLog(
                        named: Topic.logName(topic: current.name, partition: index),
                        create: true,
                        exclusive: true,
                        options: current.settings.logOptions
                    )
                )
            }
            try await append(.partitionsAdded(name: current.name, id: current.id, partitionCount: partitionCount))
        } catch {
            await removeLogs(created, ofTopic: current.name, after: error)
            throw error
        }
        let first = Int32(current.partitions.count)
        let added = try created.enumerated().map { offset, log in
            Partition(topicName: current.name, index: first + Int32(offset), log: log, recovered: try log.state())
        }
        let grown = current.with(partitions: current.partitions + added)
        registry.insert(grown)
        logger.info(
            "added partitions",
            metadata: ["topic": "\(current.name)", "partitions": "\(first) -> \(partitionCount)"]
        )
        return grown
    }

    /// AlterConfigs for a topic: its explicit configs become exactly `configs` (validated by the
    /// caller), durably, then the topic's settings follow at once.
    func setTopicConfigs(_ topic: Topic, to configs: [String: String]) async throws {
        guard let current = registry.topic(id: topic.id) else { throw ChangeError.topicDeleted }
        try await append(.topicConfigsChanged(name: current.name, id: current.id, configs: configs))
        registry.insert(
            current.with(configs: configs, settings: TopicSettings(configs: configs, broker: self.configs.current))
        )
        logger.info("changed topic configs", metadata: ["topic": "\(current.name)", "configs": "\(configs)"])
    }

    /// AlterConfigs for the broker: this broker's dynamic configs (`perBroker`) or the cluster-wide
    /// defaults become exactly `configs`, durably; then every topic's settings are recomputed.
    func setBrokerConfigs(perBroker: Bool, to configs: [String: String]) async throws {
        var dynamic = self.configs.current.dynamic
        if perBroker { dynamic.perBroker = configs } else { dynamic.clusterDefault = configs }
        try await append(.brokerConfigsChanged(brokerId: perBroker ? configuration.nodeId : nil, configs: configs))
        let view = self.configs.replace(dynamic: dynamic)
        for topic in registry.all {
            registry.insert(topic.with(settings: TopicSettings(configs: topic.configs, broker: view)))
        }
        logger.info(
            "changed dynamic broker configs",
            metadata: [
                "scope": "\(perBroker ? "broker \(configuration.nodeId)" : "cluster default")", "configs": "\(configs)",
            ]
        )
    }

    enum ChangeError: Error {
        /// The topic was deleted meanwhile.
        case topicDeleted
        /// Another change got there first (the partition count is no longer below the target).
        case stale
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
