import KafkaMessages

extension Broker {
    // MARK: CreateTopics

    func handleCreateTopics(_ request: CreateTopicsRequest, _ context: Request) async -> CreateTopicsResponse {
        var response = CreateTopicsResponse(throttleTimeMs: 0, topics: [])
        var seen: [String: Int] = [:]
        for topic in request.topics { seen[topic.name, default: 0] += 1 }
        for creatable in request.topics {
            var result = CreateTopicsResponse.CreatableTopicResult(name: creatable.name)
            func fail(_ code: ErrorCode, _ message: String) {
                result.errorCode = code.rawValue
                result.errorMessage = message
            }
            defer { response.topics.append(result) }
            if (seen[creatable.name] ?? 0) > 1 {
                fail(.invalidRequest, "Create topics request from client `\(context.clientId)` contains multiple entries for the topic \(creatable.name)")
                continue
            }
            if let problem = TopicName.problem(with: creatable.name) {
                fail(.invalidTopicException, problem)
                continue
            }
            if registry.topic(named: creatable.name) != nil {
                fail(.topicAlreadyExists, "Topic '\(creatable.name)' already exists.")
                continue
            }
            let partitionCount: Int32
            if !creatable.assignments.isEmpty {
                if creatable.numPartitions != -1 || creatable.replicationFactor != -1 {
                    fail(.invalidRequest, "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.")
                    continue
                }
                let indexes = creatable.assignments.map(\.partitionIndex).sorted()
                guard indexes == Array(0..<Int32(indexes.count)),
                    creatable.assignments.allSatisfy({ $0.brokerIds == [configuration.nodeId] })
                else {
                    fail(.invalidReplicaAssignment, "Partitions must be numbered from 0 and each assigned to broker \(configuration.nodeId) alone")
                    continue
                }
                partitionCount = Int32(indexes.count)
            } else {
                partitionCount = creatable.numPartitions == -1 ? configuration.defaultPartitions : creatable.numPartitions
                guard partitionCount > 0 else {
                    fail(.invalidPartitions, "Number of partitions must be larger than 0.")
                    continue
                }
                guard partitionCount <= configuration.partitionsPerTopicMax else {
                    fail(.invalidPartitions, "Number of partitions \(partitionCount) is above the broker's limit of \(configuration.partitionsPerTopicMax).")
                    continue
                }
                let replicationFactor = creatable.replicationFactor == -1 ? 1 : creatable.replicationFactor
                guard replicationFactor > 0 else {
                    fail(.invalidReplicationFactor, "Replication factor must be larger than 0.")
                    continue
                }
                guard replicationFactor == 1 else {
                    fail(.invalidReplicationFactor, "Unable to replicate the partition \(replicationFactor) time(s): The target replication factor of \(replicationFactor) cannot be reached because only 1 broker(s) are registered.")
                    continue
                }
            }
            var configs: [String: String] = [:]
            var nullConfig: String?
            for config in creatable.configs {
                guard let value = config.value else {
                    nullConfig = config.name
                    break
                }
                configs[config.name] = value
            }
            if let nullConfig {
                fail(.invalidConfig, "Null value not supported for topic configs: \(nullConfig)")
                continue
            }
            if let problem = TopicConfigs.validate(configs) {
                fail(.invalidConfig, problem)
                continue
            }
            result.numPartitions = partitionCount
            result.replicationFactor = 1
            result.configs = describeTopicConfigs(configs, keys: nil, includeSynonyms: false, includeDocumentation: false)
                .map { .init(name: $0.name, value: $0.value, readOnly: $0.readOnly, configSource: $0.configSource, isSensitive: false) }
            if request.validateOnly { continue }
            do {
                let topic = try await metadata.createTopic(name: creatable.name, partitionCount: partitionCount, configs: configs)
                result.topicId = topic.id
            } catch MetadataManager.CreateError.alreadyExists {
                fail(.topicAlreadyExists, "Topic '\(creatable.name)' already exists.")
                result.configs = nil
            } catch {
                logger.error("creating topic failed", metadata: ["topic": "\(creatable.name)", "error": "\(error)"])
                fail(.kafkaStorageError, "Creating the topic failed in storage: \(error)")
                result.configs = nil
            }
        }
        return response
    }

    // MARK: DeleteTopics

    func handleDeleteTopics(_ request: DeleteTopicsRequest, _ context: Request) async -> DeleteTopicsResponse {
        var response = DeleteTopicsResponse(throttleTimeMs: 0, responses: [])
        // v0–5 name topics in TopicNames; v6 in Topics, by name or by id.
        let wanted: [(name: String?, id: KafkaUUID)] =
            context.version >= 6 ? request.topics.map { ($0.name, $0.topicId) } : request.topicNames.map { ($0, .zero) }
        for (name, id) in wanted {
            var result = DeleteTopicsResponse.DeletableTopicResult(name: name, topicId: id)
            defer { response.responses.append(result) }
            let topic = name.map { registry.topic(named: $0) } ?? registry.topic(id: id)
            guard let topic else {
                result.errorCode = (name == nil ? ErrorCode.unknownTopicId : ErrorCode.unknownTopicOrPartition).rawValue
                result.errorMessage = name == nil ? "Topic id \(id) does not exist." : "This server does not host this topic-partition."
                continue
            }
            result.name = topic.name
            result.topicId = topic.id
            do {
                try await metadata.deleteTopic(topic)
                await groupCoordinator.deleteOffsets(ofTopics: [topic.name])
            } catch {
                logger.error("deleting topic failed", metadata: ["topic": "\(topic.name)", "error": "\(error)"])
                result.errorCode = ErrorCode.kafkaStorageError.rawValue
                result.errorMessage = "Deleting the topic failed in storage: \(error)"
            }
        }
        return response
    }

    // MARK: DescribeConfigs

    /// Kafka's `ConfigResource.Type` codes.
    enum ResourceType: Int8 {
        case topic = 2, broker = 4, brokerLogger = 8
    }

    struct DescribedConfig {
        var name: String
        var value: String?
        var readOnly: Bool
        var isDefault: Bool
        var configSource: Int8
        var configType: Int8
        var documentation: String?
        var synonyms: [DescribeConfigsResponse.DescribeConfigsSynonym]
    }

    func describeTopicConfigs(
        _ configs: [String: String],
        keys: [String]?,
        includeSynonyms: Bool,
        includeDocumentation: Bool
    ) -> [DescribedConfig] {
        TopicConfigs.definitions.compactMap { definition in
            if let keys, !keys.contains(definition.name) { return nil }
            let brokerDefault = definition.defaultValue(configuration)
            let explicit = configs[definition.name]
            var synonyms: [DescribeConfigsResponse.DescribeConfigsSynonym] = []
            if includeSynonyms {
                if let explicit {
                    synonyms.append(.init(name: definition.name, value: explicit, source: ConfigSource.dynamicTopicConfig.rawValue))
                }
                synonyms.append(.init(name: definition.brokerSynonym, value: brokerDefault, source: ConfigSource.defaultConfig.rawValue))
            }
            return DescribedConfig(
                name: definition.name,
                value: explicit ?? brokerDefault,
                readOnly: false,
                isDefault: explicit == nil,
                configSource: (explicit == nil ? ConfigSource.defaultConfig : .dynamicTopicConfig).rawValue,
                configType: definition.type.rawValue,
                documentation: includeDocumentation ? definition.documentation : nil,
                synonyms: synonyms
            )
        }
    }

    /// The broker settings DescribeConfigs reports (read-only: Fjord has no AlterConfigs).
    private var brokerConfigs: [(name: String, value: String, type: ConfigType, documentation: String)] {
        let c = configuration
        return [
            ("advertised.listeners", "PLAINTEXT://\(c.advertisedHost):\(c.advertisedPort)", .list, "Address clients are told to connect to."),
            ("auto.create.topics.enable", String(c.autoCreateTopics), .boolean, "Create unknown topics on Metadata and Produce."),
            ("broker.id", String(c.nodeId), .int, "This broker's node id."),
            ("compression.type", "producer", .string, "Batches are stored as the producer compressed them."),
            ("default.replication.factor", "1", .int, "Fjord keeps one replica per partition."),
            ("fetch.max.bytes", String(c.fetchMaxBytes), .int, "Largest number of record bytes in one Fetch response."),
            ("log.cleanup.policy", "delete", .list, "Retention policy (compaction is not supported)."),
            ("log.message.timestamp.type", "CreateTime", .string, "Record timestamps are the producer's."),
            ("log.retention.bytes", String(c.retentionBytes), .long, "Default retention.bytes of topics."),
            ("log.retention.ms", String(c.retentionMs), .long, "Default retention.ms of topics."),
            ("log.roll.ms", String(c.segmentMs), .long, "Default segment.ms of topics."),
            ("log.segment.bytes", String(c.segmentBytes), .int, "Default segment.bytes of topics."),
            ("message.max.bytes", String(c.messageMaxBytes), .int, "Largest record batch accepted."),
            ("min.insync.replicas", "1", .int, "Fjord keeps one replica per partition."),
            ("node.id", String(c.nodeId), .int, "This broker's node id."),
            ("num.partitions", String(c.defaultPartitions), .int, "Partitions of auto-created topics."),
            ("offsets.topic.replication.factor", "1", .short, "Fjord keeps one replica per partition."),
            ("producer.id.expiration.ms", String(c.producerIdExpirationMs), .int, "Idle idempotent producers are forgotten after this."),
        ]
    }

    func handleDescribeConfigs(_ request: DescribeConfigsRequest, _ context: Request) -> DescribeConfigsResponse {
        var response = DescribeConfigsResponse(throttleTimeMs: 0, results: [])
        for resource in request.resources {
            var result = DescribeConfigsResponse.DescribeConfigsResult(
                errorCode: ErrorCode.none.rawValue,
                errorMessage: nil,
                resourceType: resource.resourceType,
                resourceName: resource.resourceName,
                configs: []
            )
            defer { response.results.append(result) }
            let keys = resource.configurationKeys
            var described: [DescribedConfig]
            switch ResourceType(rawValue: resource.resourceType) {
            case .topic:
                guard let topic = registry.topic(named: resource.resourceName) else {
                    result.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
                    result.errorMessage = "Topic \(resource.resourceName) does not exist."
                    continue
                }
                described = describeTopicConfigs(
                    topic.configs,
                    keys: keys,
                    includeSynonyms: request.includeSynonyms,
                    includeDocumentation: request.includeDocumentation
                )
            case .broker:
                guard resource.resourceName.isEmpty || resource.resourceName == String(configuration.nodeId) else {
                    result.errorCode = ErrorCode.invalidRequest.rawValue
                    result.errorMessage = "Unexpected broker id, expected \(configuration.nodeId) or empty string, but received \(resource.resourceName)"
                    continue
                }
                // The effective configuration with its sources when fjord resolved one, else the
                // built-in list with every value a default.
                let entries =
                    configuration.effectiveConfigs.isEmpty
                    ? brokerConfigs.map {
                        BrokerConfigEntry(name: $0.name, value: $0.value, origin: .defaultValue, type: $0.type, documentation: $0.documentation)
                    } : configuration.effectiveConfigs
                described = entries.compactMap { config in
                    if let keys, !keys.contains(config.name) { return nil }
                    let source = config.origin.configSource.rawValue
                    return DescribedConfig(
                        name: config.name,
                        value: config.value,
                        readOnly: true,
                        isDefault: config.origin == .defaultValue,
                        configSource: source,
                        configType: config.type.rawValue,
                        documentation: request.includeDocumentation ? config.documentation : nil,
                        synonyms: request.includeSynonyms ? [.init(name: config.name, value: config.value, source: source)] : []
                    )
                }
            case .brokerLogger, nil:
                result.errorCode = ErrorCode.invalidRequest.rawValue
                result.errorMessage = "Fjord does not describe resources of type \(resource.resourceType)"
                continue
            }
            result.configs = described.map {
                .init(
                    name: $0.name,
                    value: $0.value,
                    readOnly: $0.readOnly,
                    isDefault: $0.isDefault,
                    configSource: $0.configSource,
                    isSensitive: false,
                    synonyms: $0.synonyms,
                    configType: $0.configType,
                    documentation: $0.documentation
                )
            }
        }
        return response
    }

    // MARK: InitProducerId

    /// Idempotent producers get a fresh producer id with epoch 0. Kafka does the same for a
    /// non-transactional InitProducerId even when the client names its old id (KIP-360 epoch
    /// bumps matter only to transactional producers). Transactions are not supported.
    func handleInitProducerId(_ request: InitProducerIdRequest) async -> InitProducerIdResponse {
        if request.transactionalId == "" {
            // Kafka's TransactionCoordinator refuses an empty transactional id.
            return InitProducerIdResponse(
                throttleTimeMs: 0,
                errorCode: ErrorCode.invalidRequest.rawValue,
                producerId: -1,
                producerEpoch: -1
            )
        }
        if request.transactionalId != nil {
            return InitProducerIdResponse(
                throttleTimeMs: 0,
                errorCode: ErrorCode.transactionalIdAuthorizationFailed.rawValue,
                producerId: -1,
                producerEpoch: -1
            )
        }
        do {
            let producerId = try await metadata.allocateProducerId()
            return InitProducerIdResponse(throttleTimeMs: 0, errorCode: 0, producerId: producerId, producerEpoch: 0)
        } catch {
            logger.error("allocating a producer id failed", metadata: ["error": "\(error)"])
            return InitProducerIdResponse(
                throttleTimeMs: 0,
                errorCode: ErrorCode.coordinatorNotAvailable.rawValue,
                producerId: -1,
                producerEpoch: -1
            )
        }
    }
}
