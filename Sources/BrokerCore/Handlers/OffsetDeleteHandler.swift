import KafkaMessages

extension Broker {
    /// OffsetDelete (KIP-496): removes a group's committed offsets of some partitions. Partitions of
    /// topics that do not exist answer UNKNOWN_TOPIC_OR_PARTITION (Kafka checks the metadata cache
    /// first); the group coordinator decides the rest.
    func handleOffsetDelete(_ request: OffsetDeleteRequest, _ context: Request) async -> OffsetDeleteResponse {
        var errors: [TopicPartition: ErrorCode] = [:]
        var known: [TopicPartition] = []
        for topic in request.topics {
            let live = registry.topic(named: topic.name)
            for partition in topic.partitions {
                let key = TopicPartition(topic: topic.name, partition: partition.partitionIndex)
                if live?.partition(partition.partitionIndex) == nil {
                    errors[key] = .unknownTopicOrPartition
                } else {
                    known.append(key)
                }
            }
        }
        var groupError = ErrorCode.none
        if request.groupId.isEmpty {
            groupError = .invalidGroupId
        } else if !known.isEmpty {
            let outcome = await groupCoordinator.deleteOffsets(groupId: request.groupId, partitions: known)
            groupError = outcome.error
            errors.merge(outcome.partitions) { first, _ in first }
        }
        // Topics and partitions in request order, each once.
        var response = OffsetDeleteResponse(errorCode: groupError.rawValue, throttleTimeMs: 0, topics: [])
        var listed = Set<TopicPartition>()
        for topic in request.topics {
            let partitions: [OffsetDeleteResponse.OffsetDeleteResponsePartition] = topic.partitions.compactMap {
                partition in
                let key = TopicPartition(topic: topic.name, partition: partition.partitionIndex)
                guard let error = errors[key], listed.insert(key).inserted else { return nil }
                return .init(partitionIndex: partition.partitionIndex, errorCode: error.rawValue)
            }
            if let index = response.topics.firstIndex(where: { $0.name == topic.name }) {
                response.topics[index].partitions += partitions
            } else if !partitions.isEmpty {
                response.topics.append(.init(name: topic.name, partitions: partitions))
            }
        }
        return response
    }
}
