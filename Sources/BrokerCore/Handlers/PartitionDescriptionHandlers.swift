import KafkaMessages

/// OffsetForLeaderEpoch and DescribeTopicPartitions: what a client learns about partitions beyond
/// Metadata. Fjord is a single broker whose partitions never change leader, so every partition has
/// had one leader epoch (`Broker.leaderEpoch`), starting at its log start offset.
extension Broker {
    /// Kafka's `max.request.partition.size.limit`: the most partitions one DescribeTopicPartitions
    /// response lists, whatever the request's limit.
    static let describeTopicPartitionsLimitMax: Int32 = 2000

    // MARK: OffsetForLeaderEpoch

    /// OffsetForLeaderEpoch (KIP-101, KIP-320): the end offset of the requested epoch, which
    /// consumers compare with their position after a leader change to detect truncation. Kafka's
    /// `LeaderEpochFileCache.endOffsetFor`: the current epoch ends at the log end offset; an epoch
    /// older than every known one ends where the first known one starts; an unknown later epoch
    /// or -1 is answered with epoch and offset -1 without error. A current_leader_epoch (v2+) that
    /// is not ours is refused first: older FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH.
    func handleOffsetForLeaderEpoch(
        _ request: OffsetForLeaderEpochRequest,
        _ context: Request
    )
        -> OffsetForLeaderEpochResponse
    {
        OffsetForLeaderEpochResponse(
            throttleTimeMs: 0,
            topics: request.topics.map { topic in
                let known = registry.topic(named: topic.topic)
                return .init(
                    topic: topic.topic,
                    partitions: topic.partitions.map { requested -> OffsetForLeaderEpochResponse.EpochEndOffset in
                        guard let partition = known?.partition(requested.partition) else {
                            return .init(
                                errorCode: ErrorCode.unknownTopicOrPartition.rawValue,
                                partition: requested.partition
                            )
                        }
                        return epochEndOffset(requested, partition.snapshot)
                    }
                )
            }
        )
    }

    private func epochEndOffset(
        _ requested: OffsetForLeaderEpochRequest.OffsetForLeaderPartition,
        _ snapshot: Partition.Snapshot
    ) -> OffsetForLeaderEpochResponse.EpochEndOffset {
        var answer = OffsetForLeaderEpochResponse.EpochEndOffset(partition: requested.partition)
        // -1: the client does not know the leader's epoch (and v0-1 cannot say).
        if requested.currentLeaderEpoch != -1 && requested.currentLeaderEpoch != Self.leaderEpoch {
            let error: ErrorCode =
                requested.currentLeaderEpoch < Self.leaderEpoch ? .fencedLeaderEpoch : .unknownLeaderEpoch
            answer.errorCode = error.rawValue
            return answer
        }
        guard snapshot.isOnline else {
            answer.errorCode = ErrorCode.kafkaStorageError.rawValue
            return answer
        }
        switch requested.leaderEpoch {
        case Self.leaderEpoch:
            answer.leaderEpoch = Self.leaderEpoch
            answer.endOffset = snapshot.logEndOffset
        case let older where older < Self.leaderEpoch && older != -1:
            answer.leaderEpoch = older
            answer.endOffset = snapshot.logStartOffset
        default:
            break
        }
        return answer
    }

    // MARK: DescribeTopicPartitions

    /// DescribeTopicPartitions (KIP-966): the named topics (none: every topic) in name order, from
    /// the cursor's topic and partition on, with at most `response_partition_limit` partitions;
    /// `next_cursor` says where the next request continues. Named topics that do not exist are
    /// answered with an error (when listing every topic there are none).
    func handleDescribeTopicPartitions(
        _ request: DescribeTopicPartitionsRequest,
        _ context: Request
    )
        -> DescribeTopicPartitionsResponse
    {
        let listAll = request.topics.isEmpty
        let names = listAll ? registry.all.map(\.name) : Set(request.topics.map(\.name)).sorted()
        if let cursor = request.cursor {
            // Kafka refuses a cursor outside the named topics, or with a negative partition.
            guard listAll || names.contains(cursor.topicName), cursor.partitionIndex >= 0 else {
                return DescribeTopicPartitionsResponse(
                    throttleTimeMs: 0,
                    topics: request.topics.map {
                        .init(errorCode: ErrorCode.invalidRequest.rawValue, name: $0.name, partitions: [])
                    }
                )
            }
        }
        var remaining = Int(max(1, min(Self.describeTopicPartitionsLimitMax, request.responsePartitionLimit)))
        var response = DescribeTopicPartitionsResponse(throttleTimeMs: 0, topics: [])
        for name in names where request.cursor.map({ name >= $0.topicName }) ?? true {
            guard remaining > 0 else {
                response.nextCursor = DescribeTopicPartitionsResponse.Cursor(topicName: name, partitionIndex: 0)
                break
            }
            guard let topic = registry.topic(named: name) else {
                if !listAll { response.topics.append(Self.undescribedTopic(name)) }
                continue
            }
            let first = request.cursor?.topicName == name ? Int(request.cursor!.partitionIndex) : 0  // Safe: compared.
            let end = min(topic.partitions.count, first + remaining)
            let listed = first < end ? Array(topic.partitions[first..<end]) : []
            response.topics.append(
                .init(
                    errorCode: 0,
                    name: name,
                    topicId: topic.id,
                    isInternal: topic.isInternal,
                    partitions: listed.map(describePartition),
                    topicAuthorizedOperations: Self.topicAuthorizedOperations
                )
            )
            if end < topic.partitions.count {
                response.nextCursor = DescribeTopicPartitionsResponse.Cursor(
                    topicName: name,
                    partitionIndex: Int32(end)
                )
                break
            }
            remaining -= listed.count
        }
        return response
    }

    private static func undescribedTopic(
        _ name: String
    ) -> DescribeTopicPartitionsResponse.DescribeTopicPartitionsResponseTopic {
        let error: ErrorCode = TopicName.problem(with: name) == nil ? .unknownTopicOrPartition : .invalidTopicException
        return .init(
            errorCode: error.rawValue,
            name: name,
            isInternal: Topic.internalNames.contains(name),
            partitions: []
        )
    }

    /// One partition as Metadata describes it, with the KIP-966 eligible leader replicas (none: a
    /// single replica never leaves the ISR but by going offline).
    private func describePartition(
        _ partition: Partition
    ) -> DescribeTopicPartitionsResponse.DescribeTopicPartitionsResponsePartition {
        let node = configuration.nodeId
        let online = partition.snapshot.isOnline
        return .init(
            errorCode: online ? ErrorCode.none.rawValue : ErrorCode.kafkaStorageError.rawValue,
            partitionIndex: partition.index,
            leaderId: node,
            leaderEpoch: Self.leaderEpoch,
            replicaNodes: [node],
            isrNodes: online ? [node] : [],
            eligibleLeaderReplicas: [],
            lastKnownElr: [],
            offlineReplicas: online ? [] : [node]
        )
    }
}
