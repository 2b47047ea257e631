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
                fail(
                    .invalidRequest,
                    "Create topics request from client `\(context.clientId)` contains multiple entries for the topic \(creatable.name)"
                )
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
                    fail(
                        .invalidRequest,
                        "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time."
                    )
                    continue
                }
                let indexes = creatable.assignments.map(\.partitionIndex).sorted()
                guard indexes == Array(0..<Int32(indexes.count)),
                    creatable.assignments.allSatisfy({ $0.brokerIds == [configuration.nodeId] })
                else {
                    fail(
                        .invalidReplicaAssignment,
                        "Partitions must be numbered from 0 and each assigned to broker \(configuration.nodeId) alone"
                    )
                    continue
                }
                partitionCount = Int32(indexes.count)
            } else {
                partitionCount =
                    creatable.numPartitions == -1 ? configuration.defaultPartitions : creatable.numPartitions
                guard partitionCount > 0 else {
                    fail(.invalidPartitions, "Number of partitions must be larger than 0.")
                    continue
                }
                guard partitionCount <= configuration.partitionsPerTopicMax else {
                    fail(
                        .invalidPartitions,
                        "Number of partitions \(partitionCount) is above the broker's limit of \(configuration.partitionsPerTopicMax)."
                    )
                    continue
                }
                let replicationFactor = creatable.replicationFactor == -1 ? 1 : creatable.replicationFactor
                guard replicationFactor > 0 else {
                    fail(.invalidReplicationFactor, "Replication factor must be larger than 0.")
                    continue
                }
                guard replicationFactor == 1 else {
                    fail(
                        .invalidReplicationFactor,
                        "Unable to replicate the partition \(replicationFactor) time(s): The target replication factor of \(replicationFactor) cannot be reached because only 1 broker(s) are registered."
                    )
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
            let options = DescribeOptions(keys: nil, includeSynonyms: false, includeDocumentation: false)
            result.configs = describeTopicConfigs(configs, self.configs.current, options).map {
                .init(
                    name: $0.name,
                    value: $0.value,
                    readOnly: $0.readOnly,
                    configSource: $0.source.rawValue,
                    isSensitive: false
                )
            }
            if request.validateOnly { continue }
            do {
                let topic = try await metadata.createTopic(
                    name: creatable.name,
                    partitionCount: partitionCount,
                    configs: configs
                )
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
                result.errorMessage =
                    name == nil ? "Topic id \(id) does not exist." : "This server does not host this topic-partition."
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

    // MARK: InitProducerId

    /// Idempotent producers get a fresh producer id with epoch 0. Kafka does the same for a
    /// non-transactional InitProducerId even when the client names its old id (KIP-360 epoch
    /// bumps matter only to transactional producers). Transactional ids go to the transaction
    /// coordinator (Handlers/TransactionHandlers.swift).
    func handleInitProducerId(_ request: InitProducerIdRequest, version: Int16) async -> InitProducerIdResponse {
        if let transactionalId = request.transactionalId {
            return await handleTransactionalInitProducerId(request, transactionalId: transactionalId, version: version)
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
