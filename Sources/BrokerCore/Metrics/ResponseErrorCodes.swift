import KafkaMessages

/// The error codes a response carries, for `fjord_request_errors_total` (Kafka's
/// `AbstractResponse.errorCounts`: one per top-level, topic, partition or member error field).
/// A response type without this conformance reports no errors.
protocol ResponseErrorCodes {
    /// Calls `body` with every error code field of the response, zeros included.
    func forEachErrorCode(_ body: (Int16) -> Void)
}

extension ProduceResponse: ResponseErrorCodes {
    func forEachErrorCode(_ body: (Int16) -> Void) {
        for topic in responses { for partition in topic.partitionResponses { body(partition.errorCode) } }
    }
}

extension FetchResponse: ResponseErrorCodes {
    func forEachErrorCode(_ body: (Int16) -> Void) {
        body(errorCode)
        for topic in responses { for partition in topic.partitions { body(partition.errorCode) } }
    }
}

extension ListOffsetsResponse: ResponseErrorCodes {
    func forEachErrorCode(_ body: (Int16) -> Void) {
        for topic in topics { for partition in topic.partitions { body(partition.errorCode) } }
    }
}

extension MetadataResponse: ResponseErrorCodes {
    func forEachErrorCode(_ body: (Int16) -> Void) {
        for topic in topics {
            body(topic.errorCode)
            for partition in topic.partitions { body(partition.errorCode) }
        }
    }
}

extension ApiVersionsResponse: ResponseErrorCodes {
    func forEachErrorCode(_ body: (Int16) -> Void) { body(errorCode) }
}

extension CreateTopicsResponse: ResponseErrorCodes {
    func forEachErrorCode(_ body: (Int16) -> Void) { for topic in topics { body(topic.errorCode) } }
}

extension DeleteTopicsResponse: ResponseErrorCodes {
    func forEachErrorCode(_ body: (Int16) -> Void) { for topic in responses { body(topic.errorCode) } }
}

extension DescribeConfigsResponse: ResponseErrorCodes {
    func forEachErrorCode(_ body: (Int16) -> Void) { for result in results { body(result.errorCode) } }
}

extension InitProducerIdResponse: ResponseErrorCodes {
    func forEachErrorCode(_ body: (Int16) -> Void) { body(errorCode) }
}

extension FindCoordinatorResponse: ResponseErrorCodes {
    func forEachErrorCode(_ body: (Int16) -> Void) {
        // v0-3 answer in the top-level field, v4+ per coordinator key.
        if coordinators.isEmpty { body(errorCode) }
        for coordinator in coordinators { body(coordinator.errorCode) }
    }
}

extension JoinGroupResponse: ResponseErrorCodes {
    func forEachErrorCode(_ body: (Int16) -> Void) { body(errorCode) }
}

extension SyncGroupResponse: ResponseErrorCodes {
    func forEachErrorCode(_ body: (Int16) -> Void) { body(errorCode) }
}

extension HeartbeatResponse: ResponseErrorCodes {
    func forEachErrorCode(_ body: (Int16) -> Void) { body(errorCode) }
}

extension LeaveGroupResponse: ResponseErrorCodes {
    func forEachErrorCode(_ body: (Int16) -> Void) {
        body(errorCode)
        for member in members { body(member.errorCode) }
    }
}

extension OffsetCommitResponse: ResponseErrorCodes {
    func forEachErrorCode(_ body: (Int16) -> Void) {
        for topic in topics { for partition in topic.partitions { body(partition.errorCode) } }
    }
}

extension OffsetFetchResponse: ResponseErrorCodes {
    func forEachErrorCode(_ body: (Int16) -> Void) {
        // v0-7 answer one group (top level), v8+ several.
        if groups.isEmpty {
            body(errorCode)
            for topic in topics { for partition in topic.partitions { body(partition.errorCode) } }
        }
        for group in groups {
            body(group.errorCode)
            for topic in group.topics { for partition in topic.partitions { body(partition.errorCode) } }
        }
    }
}

extension DescribeGroupsResponse: ResponseErrorCodes {
    func forEachErrorCode(_ body: (Int16) -> Void) { for group in groups { body(group.errorCode) } }
}

extension ListGroupsResponse: ResponseErrorCodes {
    func forEachErrorCode(_ body: (Int16) -> Void) { body(errorCode) }
}

extension DeleteGroupsResponse: ResponseErrorCodes {
    func forEachErrorCode(_ body: (Int16) -> Void) { for result in results { body(result.errorCode) } }
}

extension OffsetForLeaderEpochResponse: ResponseErrorCodes {
    func forEachErrorCode(_ body: (Int16) -> Void) {
        for topic in topics { for partition in topic.partitions { body(partition.errorCode) } }
    }
}

extension DescribeTopicPartitionsResponse: ResponseErrorCodes {
    func forEachErrorCode(_ body: (Int16) -> Void) {
        for topic in topics {
            body(topic.errorCode)
            for partition in topic.partitions { body(partition.errorCode) }
        }
    }
}
