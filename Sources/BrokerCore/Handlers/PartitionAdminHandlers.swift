import KafkaMessages

/// The partition-level admin APIs: CreatePartitions and DeleteRecords change partitions (durably);
/// ElectLeaders and the partition reassignment APIs are answered as a single-broker Kafka answers
/// them (every partition has one replica, this broker, which is its leader). Kafka 3.8's KRaft
/// controller (`ReplicationControlManager`) is the reference for codes and messages.
extension Broker {
    // MARK: CreatePartitions

    func handleCreatePartitions(
        _ request: CreatePartitionsRequest,
        _ context: Request
    ) async -> CreatePartitionsResponse {
        var response = CreatePartitionsResponse(throttleTimeMs: 0, results: [])
        var seen: [String: Int] = [:]
        for topic in request.topics { seen[topic.name, default: 0] += 1 }
        for wanted in request.topics {
            var result = CreatePartitionsResponse.CreatePartitionsTopicResult(name: wanted.name)
            do throws(AdminFailure) {
                if (seen[wanted.name] ?? 0) > 1 {
                    throw AdminFailure(code: .invalidRequest, message: "Duplicate topic name.")
                }
                guard let topic = registry.topic(named: wanted.name) else {
                    throw AdminFailure(
                        code: .unknownTopicOrPartition,
                        message: "This server does not host this topic-partition."
                    )
                }
                try checkPartitionIncrease(topic, wanted)
                if !request.validateOnly {
                    do {
                        _ = try await metadata.addPartitions(to: topic, partitionCount: wanted.count)
                    } catch MetadataManager.ChangeError.topicDeleted {
                        throw AdminFailure(code: .unknownTopicOrPartition, message: "The topic was deleted meanwhile.")
                    } catch MetadataManager.ChangeError.stale {
                        throw AdminFailure(
                            code: .invalidPartitions,
                            message: "The topic's partition count changed meanwhile."
                        )
                    } catch {
                        logger.error(
                            "adding partitions failed",
                            metadata: ["topic": "\(wanted.name)", "error": "\(error)"]
                        )
                        throw AdminFailure(
                            code: .kafkaStorageError,
                            message: "Creating the partitions failed in storage: \(error)"
                        )
                    }
                }
            } catch {
                result.errorCode = error.code.rawValue
                result.errorMessage = error.message
            }
            response.results.append(result)
        }
        return response
    }

    /// Partition counts only grow; manual assignments name one partition each, on this broker alone.
    private func checkPartitionIncrease(
        _ topic: Topic,
        _ wanted: CreatePartitionsRequest.CreatePartitionsTopic
    )
        throws(AdminFailure)
    {
        let existing = Int32(topic.partitions.count)
        if wanted.count == existing {
            throw AdminFailure(code: .invalidPartitions, message: "Topic already has \(existing) partition(s).")
        }
        if wanted.count < existing {
            throw AdminFailure(
                code: .invalidPartitions,
                message:
                    "The topic \(topic.name) currently has \(existing) partition(s); \(wanted.count) would not be an increase."
            )
        }
        if wanted.count > configuration.partitionsPerTopicMax {
            throw AdminFailure(
                code: .invalidPartitions,
                message:
                    "Number of partitions \(wanted.count) is above the broker's limit of \(configuration.partitionsPerTopicMax)."
            )
        }
        guard let assignments = wanted.assignments else { return }
        let additional = wanted.count - existing
        if assignments.count != Int(additional) {
            throw AdminFailure(
                code: .invalidReplicaAssignment,
                message:
                    "Attempted to add \(additional) additional partition(s), but only \(assignments.count) assignment(s) were specified."
            )
        }
        for assignment in assignments {
            if let problem = replicaAssignmentProblem(assignment.brokerIds) {
                throw AdminFailure(code: .invalidReplicaAssignment, message: problem)
            }
        }
    }

    /// Kafka's `validateManualPartitionAssignment` against a cluster of this one broker.
    func replicaAssignmentProblem(_ replicas: [Int32]) -> String? {
        if replicas.isEmpty { return "The manual partition assignment includes an empty replica list." }
        var seen = Set<Int32>()
        for replica in replicas {
            if !seen.insert(replica).inserted {
                return "The manual partition assignment includes the broker \(replica) more than once."
            }
            if replica != configuration.nodeId {
                return "The manual partition assignment includes broker \(replica), but no such broker is registered."
            }
        }
        return nil
    }

    // MARK: DeleteRecords

    /// DeleteRecords: for each partition, moves the log start offset to the given offset (-1: the
    /// high watermark) and answers the new low watermark. Consumers below it then get
    /// OFFSET_OUT_OF_RANGE and their `auto.offset.reset` applies.
    func handleDeleteRecords(_ request: DeleteRecordsRequest, _ context: Request) async -> DeleteRecordsResponse {
        var response = DeleteRecordsResponse(throttleTimeMs: 0, topics: [])
        for wanted in request.topics {
            var topicResult = DeleteRecordsResponse.DeleteRecordsTopicResult(name: wanted.name, partitions: [])
            for target in wanted.partitions {
                var result = DeleteRecordsResponse.DeleteRecordsPartitionResult(
                    partitionIndex: target.partitionIndex,
                    lowWatermark: -1,
                    errorCode: ErrorCode.none.rawValue
                )
                defer { topicResult.partitions.append(result) }
                guard let partition = registry.topic(named: wanted.name)?.partition(target.partitionIndex) else {
                    result.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
                    continue
                }
                let snapshot = partition.snapshot
                guard snapshot.isOnline else {
                    result.errorCode = ErrorCode.kafkaStorageError.rawValue
                    continue
                }
                // Kafka: -1 is the high watermark; anything else must lie in [0, high watermark].
                let offset = target.offset == -1 ? snapshot.highWatermark : target.offset
                guard offset >= 0, offset <= snapshot.highWatermark else {
                    result.errorCode = ErrorCode.offsetOutOfRange.rawValue
                    continue
                }
                do {
                    result.lowWatermark = try await partition.deleteRecords(before: offset)
                } catch {
                    logger.error(
                        "deleting records failed",
                        metadata: ["partition": "\(wanted.name)-\(target.partitionIndex)", "error": "\(error)"]
                    )
                    result.errorCode = ErrorCode.kafkaStorageError.rawValue
                }
            }
            response.topics.append(topicResult)
        }
        return response
    }

    // MARK: ElectLeaders

    /// Kafka's `ElectionType` codes.
    enum ElectionType: Int8 {
        case preferred = 0
        case unclean = 1
    }

    /// ElectLeaders: this broker is already every partition's preferred (and only) leader, so each
    /// named partition answers ELECTION_NOT_NEEDED; with no partitions named (all of them), Kafka
    /// leaves out the partitions that need no election, which here is every one.
    func handleElectLeaders(_ request: ElectLeadersRequest, _ context: Request) -> ElectLeadersResponse {
        var response = ElectLeadersResponse(
            throttleTimeMs: 0,
            errorCode: ErrorCode.none.rawValue,
            replicaElectionResults: []
        )
        // v0 has no election type and always elects the preferred leader.
        guard context.version == 0 || ElectionType(rawValue: request.electionType) != nil else {
            response.errorCode = ErrorCode.invalidRequest.rawValue
            return response
        }
        guard let wanted = request.topicPartitions else { return response }
        for topicPartitions in wanted {
            let topic = registry.topic(named: topicPartitions.topic)
            response.replicaElectionResults.append(
                .init(
                    topic: topicPartitions.topic,
                    partitionResult: topicPartitions.partitions.map { index in
                        guard topic != nil else {
                            return .init(
                                partitionId: index,
                                errorCode: ErrorCode.unknownTopicOrPartition.rawValue,
                                errorMessage: "No such topic as \(topicPartitions.topic)"
                            )
                        }
                        guard topic?.partition(index) != nil else {
                            return .init(
                                partitionId: index,
                                errorCode: ErrorCode.unknownTopicOrPartition.rawValue,
                                errorMessage: "No such partition as \(topicPartitions.topic)-\(index)"
                            )
                        }
                        return .init(
                            partitionId: index,
                            errorCode: ErrorCode.electionNotNeeded.rawValue,
                            errorMessage: "Leader election not needed for topic partition."
                        )
                    }
                )
            )
        }
        return response
    }

    // MARK: Partition reassignments

    /// ListPartitionReassignments: a single broker never has a reassignment in progress (topics
    /// that do not exist are left out, as Kafka does).
    func handleListPartitionReassignments(
        _ request: ListPartitionReassignmentsRequest,
        _ context: Request
    )
        -> ListPartitionReassignmentsResponse
    {
        ListPartitionReassignmentsResponse(
            throttleTimeMs: 0,
            errorCode: ErrorCode.none.rawValue,
            errorMessage: nil,
            topics: []
        )
    }

    /// AlterPartitionReassignments: moving a partition onto this broker (where it is) succeeds and
    /// changes nothing; any other replica set names a broker that does not exist; cancelling finds
    /// no reassignment in progress.
    func handleAlterPartitionReassignments(
        _ request: AlterPartitionReassignmentsRequest,
        _ context: Request
    )
        -> AlterPartitionReassignmentsResponse
    {
        var response = AlterPartitionReassignmentsResponse(
            throttleTimeMs: 0,
            errorCode: ErrorCode.none.rawValue,
            errorMessage: nil,
            responses: []
        )
        for wanted in request.topics {
            let topic = registry.topic(named: wanted.name)
            response.responses.append(
                .init(
                    name: wanted.name,
                    partitions: wanted.partitions.map { target in
                        let (code, message) = reassignmentOutcome(topic, wanted.name, target)
                        return .init(
                            partitionIndex: target.partitionIndex,
                            errorCode: code.rawValue,
                            errorMessage: message
                        )
                    }
                )
            )
        }
        return response
    }

    private func reassignmentOutcome(
        _ topic: Topic?,
        _ name: String,
        _ target: AlterPartitionReassignmentsRequest.ReassignablePartition
    ) -> (ErrorCode, String?) {
        guard let topic else { return (.unknownTopicOrPartition, "Unable to find a topic named \(name).") }
        guard topic.partition(target.partitionIndex) != nil else {
            return (.unknownTopicOrPartition, "Unable to find partition \(name):\(target.partitionIndex).")
        }
        guard let replicas = target.replicas else {
            return (.noReassignmentInProgress, "No partition reassignment is in progress for this topic-partition.")
        }
        if let problem = replicaAssignmentProblem(replicas) { return (.invalidReplicaAssignment, problem) }
        return (.none, nil)
    }
}
