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

    /// Metadata: answered at once from the registry, unless a requested topic must be created
    /// first (auto-creation), which runs before the connection's next request starts.
    func handleMetadata(_ request: MetadataRequest, _ context: Request) -> RequestReply {
        let toCreate = topicsToCreate(for: request, context)
        guard !toCreate.isEmpty else {
            return .now(respond(metadataResponse(request, context, failedCreations: []), to: context))
        }
        return inOrder(context) {
            var failed: Set<String> = []
            for name in toCreate {
                do {
                    _ = try await self.metadata.createTopicIfAbsent(
                        name: name,
                        partitionCount: self.configuration.defaultPartitions
                    )
                } catch {
                    self.logger.error(
                        "auto-creating topic failed",
                        metadata: ["topic": "\(name)", "error": "\(error)"]
                    )
                    failed.insert(name)
                }
            }
            return self.metadataResponse(request, context, failedCreations: failed)
        }
    }

    /// v0: an empty list means all topics; v1+: null means all topics, empty means none.
    private func requestedTopics(
        _ request: MetadataRequest,
        _ context: Request
    ) -> [MetadataRequest.MetadataRequestTopic]? {
        guard let topics = request.topics else { return nil }
        return context.version == 0 && topics.isEmpty ? nil : topics
    }

    /// The requested names that do not exist and may be auto-created (Metadata v4+ lets the client
    /// forbid it; consumers usually do).
    private func topicsToCreate(for request: MetadataRequest, _ context: Request) -> [String] {
        guard configuration.autoCreateTopics, context.version < 4 || request.allowAutoTopicCreation,
            let requested = requestedTopics(request, context)
        else { return [] }
        var names: [String] = []
        for wanted in requested {
            guard let name = wanted.name, registry.topic(named: name) == nil, TopicName.problem(with: name) == nil,
                !names.contains(name)
            else { continue }
            names.append(name)
        }
        return names
    }

    private func metadataResponse(
        _ request: MetadataRequest,
        _ context: Request,
        failedCreations: Set<String>
    ) -> MetadataResponse {
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
        guard let requested = requestedTopics(request, context) else {
            response.topics = registry.all.map { describe($0, includeOperations: includeOperations) }
            return response
        }
        for wanted in requested {
            if let name = wanted.name {
                if let topic = registry.topic(named: name) {
                    response.topics.append(describe(topic, includeOperations: includeOperations))
                } else if TopicName.problem(with: name) != nil {
                    response.topics.append(.init(errorCode: ErrorCode.invalidTopicException.rawValue, name: name))
                } else if failedCreations.contains(name) {
                    response.topics.append(.init(errorCode: ErrorCode.kafkaStorageError.rawValue, name: name))
                } else {
                    response.topics.append(.init(errorCode: ErrorCode.unknownTopicOrPartition.rawValue, name: name))
                }
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

    func describe(_ topic: Topic, includeOperations: Bool) -> MetadataResponse.MetadataResponseTopic {
        let node = configuration.nodeId
        return .init(
            errorCode: ErrorCode.none.rawValue,
            name: topic.name,
            topicId: topic.id,
            // Kafka marks its internal topic names, so clients' regex subscriptions skip them.
            isInternal: topic.isInternal,
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
