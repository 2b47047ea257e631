import KafkaMessages

extension Broker {
    /// ApiVersions: exactly the implemented APIs and versions. The v3 response's tagged fields
    /// (supported/finalized features) stay empty: librdkafka 2.0.2 cannot skip tagged fields
    /// there and fails with "read buffer underflow" (DESIGN §5).
    func handleApiVersions(_ request: ApiVersionsRequest) -> ApiVersionsResponse {
        ApiVersionsResponse(
            errorCode: ErrorCode.none.rawValue,
            apiKeys: SupportedApis.all.map { key, range in
                .init(apiKey: key.rawValue, minVersion: range.lowerBound, maxVersion: range.upperBound)
            },
            throttleTimeMs: 0
        )
    }

    /// Kafka's `AclOperation` codes Fjord permits to everyone (no authorization yet): READ, WRITE,
    /// CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
    static let topicAuthorizedOperations: Int32 = [3, 4, 5, 6, 7, 8, 10, 11].reduce(0) { $0 | (1 << $1) }
    /// CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE.
    static let clusterAuthorizedOperations: Int32 = [5, 7, 8, 9, 10, 11, 12].reduce(0) { $0 | (1 << $1) }

    func handleMetadata(_ request: MetadataRequest, _ context: Request) async -> MetadataResponse {
        var response = MetadataResponse(
            throttleTimeMs: 0,
            brokers: [
                .init(
                    nodeId: configuration.nodeId,
                    host: configuration.advertisedHost,
                    port: configuration.advertisedPort,
                    rack: nil
                )
            ],
            clusterId: clusterId,
            controllerId: configuration.nodeId,
            topics: []
        )
        if request.includeClusterAuthorizedOperations {
            response.clusterAuthorizedOperations = Self.clusterAuthorizedOperations
        }
        let includeOperations = request.includeTopicAuthorizedOperations

        // v0: an empty list means all topics; v1+: null means all topics, empty means none.
        let requested: [MetadataRequest.MetadataRequestTopic]?
        if let topics = request.topics {
            requested = context.version == 0 && topics.isEmpty ? nil : topics
        } else {
            requested = nil
        }
        guard let requested else {
            response.topics = registry.all.map { describe($0, includeOperations: includeOperations) }
            return response
        }
        // Metadata v4+ lets the client forbid auto-creation (consumers usually do).
        let mayCreate = configuration.autoCreateTopics && (context.version < 4 || request.allowAutoTopicCreation)
        for wanted in requested {
            if let name = wanted.name {
                response.topics.append(
                    await describeOrCreate(name: name, mayCreate: mayCreate, includeOperations: includeOperations)
                )
            } else if let topic = registry.topic(id: wanted.topicId) {
                response.topics.append(describe(topic, includeOperations: includeOperations))
            } else {
                response.topics.append(
                    .init(errorCode: ErrorCode.unknownTopicId.rawValue, name: nil, topicId: wanted.topicId)
                )
            }
        }
        return response
    }

    private func describeOrCreate(name: String, mayCreate: Bool, includeOperations: Bool) async
        -> MetadataResponse.MetadataResponseTopic
    {
        if let topic = registry.topic(named: name) {
            return describe(topic, includeOperations: includeOperations)
        }
        if TopicName.problem(with: name) != nil {
            return .init(errorCode: ErrorCode.invalidTopicException.rawValue, name: name)
        }
        guard mayCreate else {
            return .init(errorCode: ErrorCode.unknownTopicOrPartition.rawValue, name: name)
        }
        do {
            let topic = try await metadata.createTopicIfAbsent(name: name, partitionCount: configuration.defaultPartitions)
            return describe(topic, includeOperations: includeOperations)
        } catch {
            logger.error("auto-creating topic failed", metadata: ["topic": "\(name)", "error": "\(error)"])
            return .init(errorCode: ErrorCode.kafkaStorageError.rawValue, name: name)
        }
    }

    func describe(_ topic: Topic, includeOperations: Bool) -> MetadataResponse.MetadataResponseTopic {
        let node = configuration.nodeId
        return .init(
            errorCode: ErrorCode.none.rawValue,
            name: topic.name,
            topicId: topic.id,
            isInternal: false,
            partitions: topic.partitions.map { partition in
                let online = partition.snapshot.isOnline
                return .init(
                    errorCode: online ? ErrorCode.none.rawValue : ErrorCode.kafkaStorageError.rawValue,
                    partitionIndex: partition.index,
                    leaderId: node,
                    leaderEpoch: Self.leaderEpoch,
                    replicaNodes: [node],
                    isrNodes: online ? [node] : [],
                    offlineReplicas: online ? [] : [node]
                )
            },
            topicAuthorizedOperations: includeOperations ? Self.topicAuthorizedOperations : Int32.min
        )
    }
}
