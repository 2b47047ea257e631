import KafkaMessages

/// The transaction APIs (KIP-98; Kafka 3.8's KafkaApis): InitProducerId with a transactional id,
/// AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit, DescribeTransactions,
/// ListTransactions, DescribeProducers. The logic lives in `TransactionCoordinatorState`; these
/// handlers translate the wire messages and Kafka's per-version error mappings.
extension Broker {
    /// Clients before PRODUCER_FENCED (InitProducerId < 4, the others < 2) get INVALID_PRODUCER_EPOCH.
    static func fencedError(_ error: ErrorCode, producerFencedSince version: Int16, requestVersion: Int16) -> ErrorCode
    {
        error == .producerFenced && requestVersion < version ? .invalidProducerEpoch : error
    }

    // MARK: InitProducerId

    func handleTransactionalInitProducerId(
        _ request: InitProducerIdRequest,
        transactionalId: String,
        version: Int16
    ) async -> InitProducerIdResponse {
        func failure(_ error: ErrorCode) -> InitProducerIdResponse {
            let code = Self.fencedError(error, producerFencedSince: 4, requestVersion: version)
            return InitProducerIdResponse(
                throttleTimeMs: 0,
                errorCode: code.rawValue,
                producerId: -1,
                producerEpoch: -1
            )
        }
        // Kafka's TransactionCoordinator refuses an empty transactional id.
        guard !transactionalId.isEmpty else { return failure(.invalidRequest) }
        // v3+: a producer resuming after an error names its id and epoch (KIP-360); -1/-1 names none.
        let expected =
            version >= 3 && (request.producerId != -1 || request.producerEpoch != -1)
            ? ProducerIdAndEpoch(producerId: request.producerId, producerEpoch: request.producerEpoch) : nil
        let (error, producer) = await transactionCoordinator.initProducerId(
            transactionalId: transactionalId,
            timeoutMs: request.transactionTimeoutMs,
            expected: expected
        )
        guard error == .none, let producer else { return failure(error) }
        return InitProducerIdResponse(
            throttleTimeMs: 0,
            errorCode: 0,
            producerId: producer.producerId,
            producerEpoch: producer.producerEpoch
        )
    }

    // MARK: AddPartitionsToTxn, AddOffsetsToTxn, EndTxn

    /// AddPartitionsToTxn v0–3 (v4+ batches transactions for brokers and is not advertised).
    /// Partitions of unknown topics fail the whole request: UNKNOWN_TOPIC_OR_PARTITION for them,
    /// OPERATION_NOT_ATTEMPTED for the rest, as Kafka answers.
    func handleAddPartitionsToTxn(
        _ request: AddPartitionsToTxnRequest,
        _ context: Request
    ) async -> AddPartitionsToTxnResponse {
        var known: [TopicPartition: Int64] = [:]
        var unknown: Set<TopicPartition> = []
        for topic in request.v3AndBelowTopics {
            let found = registry.topic(named: topic.name)
            for index in topic.partitions {
                let topicPartition = TopicPartition(topic: topic.name, partition: index)
                if let partition = found?.partition(index) {
                    // Every batch of this transaction lands at or after the current log end.
                    known[topicPartition] = partition.snapshot.logEndOffset
                } else {
                    unknown.insert(topicPartition)
                }
            }
        }
        func result(_ errorOf: (TopicPartition) -> ErrorCode) -> AddPartitionsToTxnResponse {
            AddPartitionsToTxnResponse(
                throttleTimeMs: 0,
                resultsByTopicV3AndBelow: request.v3AndBelowTopics.map { topic in
                    .init(
                        name: topic.name,
                        resultsByPartition: topic.partitions.map {
                            .init(
                                partitionIndex: $0,
                                partitionErrorCode: errorOf(TopicPartition(topic: topic.name, partition: $0)).rawValue
                            )
                        }
                    )
                }
            )
        }
        if !unknown.isEmpty {
            return result { unknown.contains($0) ? .unknownTopicOrPartition : .operationNotAttempted }
        }
        guard !request.v3AndBelowTransactionalId.isEmpty else { return result { _ in .invalidRequest } }
        let error = await transactionCoordinator.addToTransaction(
            transactionalId: request.v3AndBelowTransactionalId,
            producer: ProducerIdAndEpoch(
                producerId: request.v3AndBelowProducerId,
                producerEpoch: request.v3AndBelowProducerEpoch
            ),
            partitions: known
        )
        let answer = Self.fencedError(error, producerFencedSince: 2, requestVersion: context.version)
        return result { _ in answer }
    }

    /// AddOffsetsToTxn: the group's offsets join the transaction (Kafka adds the group's
    /// `__consumer_offsets` partition; Fjord names the group).
    func handleAddOffsetsToTxn(_ request: AddOffsetsToTxnRequest, _ context: Request) async -> AddOffsetsToTxnResponse {
        guard !request.transactionalId.isEmpty else {
            return AddOffsetsToTxnResponse(throttleTimeMs: 0, errorCode: ErrorCode.invalidRequest.rawValue)
        }
        guard !request.groupId.isEmpty, request.groupId.utf8.count <= Self.groupIdBytesMax else {
            return AddOffsetsToTxnResponse(throttleTimeMs: 0, errorCode: ErrorCode.invalidGroupId.rawValue)
        }
        let error = await transactionCoordinator.addToTransaction(
            transactionalId: request.transactionalId,
            producer: ProducerIdAndEpoch(producerId: request.producerId, producerEpoch: request.producerEpoch),
            partitions: [:],
            groups: [request.groupId]
        )
        let answer = Self.fencedError(error, producerFencedSince: 2, requestVersion: context.version)
        return AddOffsetsToTxnResponse(throttleTimeMs: 0, errorCode: answer.rawValue)
    }

    func handleEndTxn(_ request: EndTxnRequest, _ context: Request) async -> EndTxnResponse {
        guard !request.transactionalId.isEmpty else {
            return EndTxnResponse(throttleTimeMs: 0, errorCode: ErrorCode.invalidRequest.rawValue)
        }
        let error = await transactionCoordinator.endTransaction(
            transactionalId: request.transactionalId,
            producer: ProducerIdAndEpoch(producerId: request.producerId, producerEpoch: request.producerEpoch),
            commit: request.committed
        )
        let answer = Self.fencedError(error, producerFencedSince: 2, requestVersion: context.version)
        return EndTxnResponse(throttleTimeMs: 0, errorCode: answer.rawValue)
    }

    // MARK: TxnOffsetCommit

    /// TxnOffsetCommit: the transaction coordinator must have the group in the producer's
    /// transaction (AddOffsetsToTxn); the offsets are then validated against the group and stored
    /// pending, answered once durable, and become visible when the transaction commits.
    func handleTxnOffsetCommit(_ request: TxnOffsetCommitRequest, _ context: Request) -> RequestReply {
        let version = context.version
        let commitTimestampMs = nowMs
        var errors: [[ErrorCode]] = []
        var valid: [TopicPartition: CommittedOffset] = [:]
        for topic in request.topics {
            let known = registry.topic(named: topic.name)
            errors.append(
                topic.partitions.map { partition in
                    guard known?.partition(partition.partitionIndex) != nil else { return .unknownTopicOrPartition }
                    let metadata = partition.committedMetadata ?? ""
                    guard metadata.utf8.count <= groupCoordinator.offsetsSettings.metadataMaxBytes else {
                        return .offsetMetadataTooLarge
                    }
                    valid[TopicPartition(topic: topic.name, partition: partition.partitionIndex)] = CommittedOffset(
                        offset: partition.committedOffset,
                        leaderEpoch: version >= 2 ? partition.committedLeaderEpoch : -1,
                        metadata: metadata,
                        commitTimestampMs: commitTimestampMs
                    )
                    return .none
                }
            )
        }
        func respond(_ groupError: ErrorCode) -> TxnOffsetCommitResponse {
            Self.txnOffsetCommitResponse(request, errors, groupError: groupError)
        }
        guard !valid.isEmpty else { return .now(self.respond(respond(.none), to: context)) }
        let producer = ProducerIdAndEpoch(producerId: request.producerId, producerEpoch: request.producerEpoch)
        let verified = transactionCoordinator.verify(
            transactionalId: request.transactionalId,
            producer: producer,
            group: request.groupId
        )
        if verified != .none {
            // Kafka's mapping of the verification's answers for TxnOffsetCommit before v4.
            let error: ErrorCode =
                switch verified {
                case .producerFenced: .invalidProducerEpoch
                case .transactionAbortable: .invalidTxnState
                default: verified
                }
            return .now(self.respond(respond(error), to: context))
        }
        let ticket = groupCoordinator.submitTransactionalCommit(
            groupId: request.groupId,
            memberId: version >= 3 ? request.memberId : "",
            groupInstanceId: version >= 3 ? request.groupInstanceId : nil,
            generationId: version >= 3 ? request.generationId : -1,
            producer: producer,
            offsets: valid
        )
        if case .done(let error) = ticket { return .now(self.respond(respond(error), to: context)) }
        let partitionErrors = errors
        return later(context) {
            let groupError = await self.groupCoordinator.finishCommit(ticket)
            return Self.txnOffsetCommitResponse(request, partitionErrors, groupError: groupError)
        }
    }

    private static func txnOffsetCommitResponse(
        _ request: TxnOffsetCommitRequest,
        _ errors: [[ErrorCode]],
        groupError: ErrorCode
    ) -> TxnOffsetCommitResponse {
        TxnOffsetCommitResponse(
            throttleTimeMs: 0,
            topics: zip(request.topics, errors).map { topic, partitionErrors in
                .init(
                    name: topic.name,
                    partitions: zip(topic.partitions, partitionErrors).map { partition, error in
                        .init(
                            partitionIndex: partition.partitionIndex,
                            errorCode: (error == .none ? groupError : error).rawValue
                        )
                    }
                )
            }
        )
    }

    // MARK: DescribeTransactions, ListTransactions, DescribeProducers

    func handleDescribeTransactions(_ request: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
        DescribeTransactionsResponse(
            throttleTimeMs: 0,
            transactionStates: request.transactionalIds.map { transactionalId in
                var state = DescribeTransactionsResponse.TransactionState(transactionalId: transactionalId)
                guard !transactionalId.isEmpty else {
                    state.errorCode = ErrorCode.invalidRequest.rawValue
                    return state
                }
                guard let metadata = transactionCoordinator.describe(transactionalId: transactionalId) else {
                    state.errorCode = ErrorCode.transactionalIdNotFound.rawValue
                    return state
                }
                state.transactionState = metadata.phase.name
                state.transactionTimeoutMs = metadata.timeoutMs
                state.transactionStartTimeMs = metadata.startTimestampMs
                state.producerId = metadata.producerId
                state.producerEpoch = metadata.producerEpoch
                let byTopic = Dictionary(grouping: metadata.partitions.keys, by: \.topic)
                state.topics = byTopic.keys.sorted().map { topic in
                    .init(topic: topic, partitions: (byTopic[topic] ?? []).map(\.partition).sorted())
                }
                return state
            }
        )
    }

    /// ListTransactions: filtered by state names (unknown names are reported back), producer ids
    /// and (v1) how long the transaction has been running.
    func handleListTransactions(_ request: ListTransactionsRequest, _ context: Request) -> ListTransactionsResponse {
        let states = Set(request.stateFilters)
        let producerIds = Set(request.producerIdFilters)
        let durationMs = context.version >= 1 ? request.durationFilter : -1
        let now = nowMs
        return ListTransactionsResponse(
            throttleTimeMs: 0,
            errorCode: 0,
            unknownStateFilters: request.stateFilters.filter { !TransactionPhase.knownNames.contains($0) },
            transactionStates: transactionCoordinator.all.compactMap { metadata in
                guard states.isEmpty || states.contains(metadata.phase.name),
                    producerIds.isEmpty || producerIds.contains(metadata.producerId),
                    durationMs < 0 || now - metadata.startTimestampMs > durationMs
                else { return nil }
                return .init(
                    transactionalId: metadata.transactionalId,
                    producerId: metadata.producerId,
                    transactionState: metadata.phase.name
                )
            }
        )
    }

    /// DescribeProducers: every producer with state in each partition (idempotent or transactional).
    func handleDescribeProducers(_ request: DescribeProducersRequest) -> DescribeProducersResponse {
        DescribeProducersResponse(
            throttleTimeMs: 0,
            topics: request.topics.map { topic in
                let found = registry.topic(named: topic.name)
                return .init(
                    name: topic.name,
                    partitions: topic.partitionIndexes.map { index in
                        guard let partition = found?.partition(index) else {
                            return .init(
                                partitionIndex: index,
                                errorCode: ErrorCode.unknownTopicOrPartition.rawValue,
                                errorMessage: "This server does not host this topic-partition."
                            )
                        }
                        return .init(
                            partitionIndex: index,
                            errorCode: 0,
                            errorMessage: nil,
                            activeProducers: partition.producerDescriptions.map {
                                .init(
                                    producerId: $0.producerId,
                                    producerEpoch: Int32($0.producerEpoch),
                                    lastSequence: $0.lastSequence,
                                    lastTimestamp: $0.lastTimestampMs,
                                    coordinatorEpoch: 0,
                                    currentTxnStartOffset: $0.currentTransactionStartOffset
                                )
                            }
                        )
                    }
                )
            }
        )
    }
}
