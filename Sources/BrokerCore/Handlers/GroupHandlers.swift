import KafkaMessages
import Logging
import StorageHost

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Settings of the group coordinator, taken from the broker configuration.
extension BrokerConfiguration {
    var groupSettings: GroupSettings {
        GroupSettings(
            initialRebalanceDelayMs: Int64(max(0, groupInitialRebalanceDelayMs)),
            minSessionTimeoutMs: groupMinSessionTimeoutMs,
            maxSessionTimeoutMs: groupMaxSessionTimeoutMs,
            maxSize: Int(max(1, groupMaxSize))
        )
    }

    var offsetsStoreSettings: OffsetsStoreSettings {
        OffsetsStoreSettings(
            metadataMaxBytes: Int(max(0, offsetMetadataMaxBytes)),
            compactionThresholdRecords: max(1, offsetsCompactionThresholdRecords)
        )
    }
}

extension Broker {
    /// Opens the transaction coordinator (replaying its log, recovering the partitions'
    /// transactions) during `start`; when that fails, closes what `start` opened before it.
    static func openTransactionCoordinator(
        _ configuration: BrokerConfiguration,
        _ storage: StorageEngine,
        _ registry: TopicRegistry,
        _ metadata: MetadataManager,
        _ groupCoordinator: GroupCoordinator,
        _ logger: Logger
    ) async throws -> TransactionCoordinator {
        do {
            return try await TransactionCoordinator.open(
                configuration: .init(
                    settings: TransactionSettings(
                        maxTimeoutMs: configuration.transactionMaxTimeoutMs,
                        transactionalIdExpirationMs: configuration.transactionalIdExpirationMs
                    ),
                    compactionThresholdEntries: configuration.transactionLogCompactionThresholdEntries,
                    clock: configuration.clock
                ),
                storage: storage,
                registry: registry,
                groups: groupCoordinator,
                metadata: metadata,
                logger: logger
            )
        } catch {
            await groupCoordinator.close()
            for topic in registry.all {
                for partition in topic.partitions { await partition.close() }
            }
            await metadata.close()
            throw error
        }
    }

    /// Opens the group coordinator (replaying committed offsets) during `start`; when that fails,
    /// closes what `start` opened before it.
    static func openGroupCoordinator(
        _ configuration: BrokerConfiguration,
        _ storage: StorageEngine,
        _ registry: TopicRegistry,
        _ metadata: MetadataManager,
        _ logger: Logger
    ) async throws -> GroupCoordinator {
        do {
            return try await GroupCoordinator.open(
                storage: storage,
                settings: configuration.groupSettings,
                offsetsSettings: configuration.offsetsStoreSettings,
                logger: logger
            )
        } catch {
            for topic in registry.all {
                for partition in topic.partitions { await partition.close() }
            }
            await metadata.close()
            throw error
        }
    }
}

/// The classic group protocol: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
/// OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups. The logic lives in
/// `ClassicGroup` / `GroupCoordinatorState`; these handlers translate the wire messages.
extension Broker {
    /// Group ids are stored in the offsets log with a 16-bit length; this is also the longest string
    /// a non-flexible request can carry, so only flexible requests can exceed it.
    static let groupIdBytesMax = Int(Int16.max)

    /// The AclOperation bits of a group (READ 3, DELETE 6, DESCRIBE 8): without an authorizer, every
    /// operation a group supports is allowed.
    static let groupAuthorizedOperations: Int32 = (1 << 3) | (1 << 6) | (1 << 8)

    /// JoinGroup/DescribeGroups client host: Kafka prints the peer address as Java's InetAddress
    /// does, "/127.0.0.1".
    static func clientHost(_ connection: ConnectionInfo) -> String {
        let address = connection.remoteAddress
        if address.hasPrefix("["), let close = address.firstIndex(of: "]") {
            return "/" + address[address.index(after: address.startIndex)..<close]
        }
        if let colon = address.lastIndex(of: ":"), address.firstIndex(of: ":") == colon {
            return "/" + address[..<colon]
        }
        return "/" + address
    }

    /// The ListGroups v5 type of every group Fjord runs (Kafka's `Group.GroupType.CLASSIC`).
    static let classicGroupType = "classic"

    private static func isValidMembershipGroupId(_ groupId: String) -> Bool {
        !groupId.isEmpty && groupId.utf8.count <= groupIdBytesMax
    }

    // MARK: FindCoordinator

    /// FindCoordinator: this broker coordinates every group and transactional id. v4+ asks for
    /// a batch of keys and answers each one on its own.
    func handleFindCoordinator(_ request: FindCoordinatorRequest, _ context: Request) -> FindCoordinatorResponse {
        guard context.version >= 4 else {
            let refusal = coordinatorRefusal(keyType: request.keyType, key: request.key)
            return FindCoordinatorResponse(
                throttleTimeMs: 0,
                errorCode: refusal?.error.rawValue ?? 0,
                errorMessage: refusal?.message,
                nodeId: refusal == nil ? configuration.nodeId : -1,
                host: refusal == nil ? configuration.advertisedHost : "",
                port: refusal == nil ? configuration.advertisedPort : -1
            )
        }
        return FindCoordinatorResponse(
            throttleTimeMs: 0,
            coordinators: request.coordinatorKeys.map { key in
                let refusal = coordinatorRefusal(keyType: request.keyType, key: key)
                return .init(
                    key: key,
                    nodeId: refusal == nil ? configuration.nodeId : -1,
                    host: refusal == nil ? configuration.advertisedHost : "",
                    port: refusal == nil ? configuration.advertisedPort : -1,
                    errorCode: refusal?.error.rawValue ?? 0,
                    errorMessage: refusal?.message
                )
            }
        )
    }

    /// Why a coordinator key is refused, or nil: its coordinator is this broker.
    private func coordinatorRefusal(keyType: Int8, key: String) -> (error: ErrorCode, message: String)? {
        switch keyType {
        case 0:
            return nil
        case 1:
            // Kafka refuses an empty transactional id.
            return key.isEmpty ? (.invalidRequest, "Transactional id must not be empty") : nil
        default:
            return (.invalidRequest, "Unknown coordinator key type \(keyType)")
        }
    }

    // MARK: JoinGroup, SyncGroup, Heartbeat, LeaveGroup

    /// JoinGroup: the member joins here, in the connection's order; the answer comes when the
    /// rebalance completes, and the member's other requests (and other members on the same
    /// connection) go ahead meanwhile.
    func handleJoinGroup(_ request: JoinGroupRequest, _ context: Request) -> RequestReply {
        let version = context.version
        guard Self.isValidMembershipGroupId(request.groupId) else {
            return .now(respond(Self.joinResponse(.error(.invalidGroupId, memberId: request.memberId)), to: context))
        }
        let groupInstanceId = version >= 5 ? request.groupInstanceId : nil
        let clientId = context.clientId
        let parameters = JoinGroupParameters(
            memberId: request.memberId,
            groupInstanceId: groupInstanceId,
            requireKnownMemberId: version >= 4 && groupInstanceId == nil,
            clientId: clientId,
            clientHost: Self.clientHost(context.context.connection),
            // v0 has no rebalance timeout: Kafka uses the session timeout.
            rebalanceTimeoutMs: version == 0 ? request.sessionTimeoutMs : request.rebalanceTimeoutMs,
            sessionTimeoutMs: request.sessionTimeoutMs,
            protocolType: request.protocolType,
            protocols: request.protocols.map { GroupProtocol(name: $0.name, metadata: $0.metadata) },
            // Kafka's member ids: the instance id (static) or client id, a dash and a random UUID.
            generatedMemberId: "\(groupInstanceId ?? clientId)-\(UUID().uuidString.lowercased())"
        )
        let waiter = groupCoordinator.join(groupId: request.groupId, parameters)
        let memberId = request.memberId
        return later(context) {
            guard case .join(let outcome) = await waiter.wait() else {
                return Self.joinResponse(.error(.notCoordinator, memberId: memberId))
            }
            return Self.joinResponse(outcome, version: version)
        }
    }

    /// The JoinGroup answer; `reason` (v8+) is only informative, as in Kafka.
    private static func joinResponse(_ outcome: JoinGroupOutcome, version: Int16 = 0) -> JoinGroupResponse {
        // Before v9 a member told to skip the assignment is not shown the members (KIP-814).
        let members = outcome.skipAssignment && version < 9 ? [] : outcome.members
        return JoinGroupResponse(
            throttleTimeMs: 0,
            errorCode: outcome.errorCode.rawValue,
            generationId: outcome.generationId,
            protocolType: outcome.protocolType,
            protocolName: outcome.protocolName,
            leader: outcome.leaderId,
            skipAssignment: outcome.skipAssignment && version >= 9,
            memberId: outcome.memberId,
            members: members.map {
                .init(memberId: $0.memberId, groupInstanceId: $0.groupInstanceId, metadata: $0.metadata)
            }
        )
    }

    /// SyncGroup: registered here, in order; followers' answers come when the leader's assignment
    /// arrives.
    func handleSyncGroup(_ request: SyncGroupRequest, _ context: Request) -> RequestReply {
        let version = context.version
        guard Self.isValidMembershipGroupId(request.groupId) else {
            return .now(
                respond(SyncGroupResponse(throttleTimeMs: 0, errorCode: ErrorCode.invalidGroupId.rawValue), to: context)
            )
        }
        var assignments: [String: [UInt8]] = [:]
        for entry in request.assignments { assignments[entry.memberId] = entry.assignment }
        let parameters = ClassicGroup.SyncParameters(
            memberId: request.memberId,
            groupInstanceId: version >= 3 ? request.groupInstanceId : nil,
            generationId: request.generationId,
            protocolType: version >= 5 ? request.protocolType : nil,
            protocolName: version >= 5 ? request.protocolName : nil,
            assignments: assignments
        )
        let waiter = groupCoordinator.sync(groupId: request.groupId, parameters)
        return later(context) {
            guard case .sync(let outcome) = await waiter.wait() else {
                return SyncGroupResponse(throttleTimeMs: 0, errorCode: ErrorCode.notCoordinator.rawValue)
            }
            return SyncGroupResponse(
                throttleTimeMs: 0,
                errorCode: outcome.errorCode.rawValue,
                protocolType: outcome.protocolType,
                protocolName: outcome.protocolName,
                assignment: outcome.assignment
            )
        }
    }

    func handleHeartbeat(_ request: HeartbeatRequest, _ context: Request) -> HeartbeatResponse {
        guard Self.isValidMembershipGroupId(request.groupId) else {
            return HeartbeatResponse(throttleTimeMs: 0, errorCode: ErrorCode.invalidGroupId.rawValue)
        }
        let error = groupCoordinator.heartbeat(
            groupId: request.groupId,
            memberId: request.memberId,
            groupInstanceId: context.version >= 3 ? request.groupInstanceId : nil,
            generationId: request.generationId
        )
        return HeartbeatResponse(throttleTimeMs: 0, errorCode: error.rawValue)
    }

    /// LeaveGroup: one member before v3, a batch (by member id or by group.instance.id) from v3.
    func handleLeaveGroup(_ request: LeaveGroupRequest, _ context: Request) -> LeaveGroupResponse {
        let version = context.version
        guard Self.isValidMembershipGroupId(request.groupId) else {
            return LeaveGroupResponse(throttleTimeMs: 0, errorCode: ErrorCode.invalidGroupId.rawValue, members: [])
        }
        let leaving: [(memberId: String, groupInstanceId: String?)] =
            version >= 3 ? request.members.map { ($0.memberId, $0.groupInstanceId) } : [(request.memberId, nil)]
        let errors = groupCoordinator.leave(groupId: request.groupId, members: leaving)
        if version < 3 {
            // Before v3 the single member's error is the response's error.
            return LeaveGroupResponse(throttleTimeMs: 0, errorCode: (errors.first { $0 != .none } ?? .none).rawValue)
        }
        return LeaveGroupResponse(
            throttleTimeMs: 0,
            errorCode: 0,
            members: zip(leaving, errors).map {
                .init(memberId: $0.0.memberId, groupInstanceId: $0.0.groupInstanceId, errorCode: $0.1.rawValue)
            }
        )
    }

    // MARK: OffsetCommit, OffsetFetch

    /// OffsetCommit: partitions of unknown topics and oversized metadata are refused one by one;
    /// the rest are validated against the group and applied here, in the connection's order, and
    /// answered once durable.
    func handleOffsetCommit(_ request: OffsetCommitRequest, _ context: Request) -> RequestReply {
        let version = context.version
        let commitTimestampMs = nowMs
        var errors: [[ErrorCode]] = []
        var valid: [TopicPartition: CommittedOffset] = [:]
        let groupIdValid = request.groupId.utf8.count <= Self.groupIdBytesMax
        for topic in request.topics {
            let known = registry.topic(named: topic.name)
            errors.append(
                topic.partitions.map { partition in
                    if !groupIdValid { return .invalidGroupId }
                    guard known?.partition(partition.partitionIndex) != nil else { return .unknownTopicOrPartition }
                    let metadata = partition.committedMetadata ?? ""
                    guard metadata.utf8.count <= groupCoordinator.offsetsSettings.metadataMaxBytes else {
                        return .offsetMetadataTooLarge
                    }
                    valid[TopicPartition(topic: topic.name, partition: partition.partitionIndex)] = CommittedOffset(
                        offset: partition.committedOffset,
                        leaderEpoch: version >= 6 ? partition.committedLeaderEpoch : -1,
                        metadata: metadata,
                        // v1 carries the client's commit time (-1: the broker's), as Kafka keeps it.
                        commitTimestampMs: version == 1 && partition.commitTimestamp != -1
                            ? partition.commitTimestamp : commitTimestampMs
                    )
                    return .none
                }
            )
        }
        // Kafka does not consult the group when no partition is left to commit.
        guard !valid.isEmpty else {
            return .now(respond(Self.offsetCommitResponse(request, errors, groupError: .none), to: context))
        }
        let ticket = groupCoordinator.submitCommit(
            groupId: request.groupId,
            memberId: request.memberId,
            groupInstanceId: version >= 7 ? request.groupInstanceId : nil,
            generationId: request.generationIdOrMemberEpoch,
            // v9 (KIP-848) tells a member of a group that does not exist so, for both protocols.
            unknownGroupError: version >= 9 ? .groupIdNotFound : .illegalGeneration,
            offsets: valid
        )
        if case .done(let error) = ticket {
            return .now(respond(Self.offsetCommitResponse(request, errors, groupError: error), to: context))
        }
        let partitionErrors = errors
        return later(context) {
            let groupError = await self.groupCoordinator.finishCommit(ticket)
            return Self.offsetCommitResponse(request, partitionErrors, groupError: groupError)
        }
    }

    private static func offsetCommitResponse(
        _ request: OffsetCommitRequest,
        _ errors: [[ErrorCode]],
        groupError: ErrorCode
    ) -> OffsetCommitResponse {
        OffsetCommitResponse(
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

    /// One partition's OffsetFetch answer, whatever the version's wire shape.
    struct FetchedOffset {
        var partition: Int32
        var offset: Int64 = -1
        var leaderEpoch: Int32 = -1
        var metadata: String = ""
        var error: ErrorCode = .none
    }

    /// OffsetFetch: committed offsets; a partition without one answers offset -1 without error.
    /// Null topics (v2+) ask for every partition the group has committed. v8+ asks for several
    /// groups at once; the member id and epoch of v9 (KIP-848) only concern consumer-protocol
    /// groups, and Fjord's groups are classic, which Kafka answers without checking them.
    func handleOffsetFetch(_ request: OffsetFetchRequest, _ context: Request) -> OffsetFetchResponse {
        // v7 RequireStable (read_committed consumers): a partition with offsets in an undecided
        // transaction is answered UNSTABLE_OFFSET_COMMIT (retriable) instead of a stale offset.
        let requireStable = context.version >= 7 && request.requireStable
        guard context.version >= 8 else {
            let topics = committedOffsets(
                groupId: request.groupId,
                request.topics.map { $0.map { (name: $0.name, partitions: $0.partitionIndexes) } },
                requireStable: requireStable
            )
            return OffsetFetchResponse(
                throttleTimeMs: 0,
                topics: topics.map { topic in
                    .init(
                        name: topic.name,
                        partitions: topic.partitions.map {
                            .init(
                                partitionIndex: $0.partition,
                                committedOffset: $0.offset,
                                committedLeaderEpoch: $0.leaderEpoch,
                                metadata: $0.metadata,
                                errorCode: $0.error.rawValue
                            )
                        }
                    )
                },
                errorCode: 0
            )
        }
        return OffsetFetchResponse(
            throttleTimeMs: 0,
            groups: request.groups.map { group in
                let topics = committedOffsets(
                    groupId: group.groupId,
                    group.topics.map { $0.map { (name: $0.name, partitions: $0.partitionIndexes) } },
                    requireStable: requireStable
                )
                return .init(
                    groupId: group.groupId,
                    topics: topics.map { topic in
                        .init(
                            name: topic.name,
                            partitions: topic.partitions.map {
                                .init(
                                    partitionIndex: $0.partition,
                                    committedOffset: $0.offset,
                                    committedLeaderEpoch: $0.leaderEpoch,
                                    metadata: $0.metadata,
                                    errorCode: $0.error.rawValue
                                )
                            }
                        )
                    },
                    errorCode: 0
                )
            }
        )
    }

    /// One group's committed offsets for the requested topics and partitions, in request order
    /// (nil: every partition the group has committed, by topic and partition).
    private func committedOffsets(
        groupId: String,
        _ topics: [(name: String, partitions: [Int32])]?,
        requireStable: Bool
    ) -> [(name: String, partitions: [FetchedOffset])] {
        let requested = topics.map { topics in
            topics.flatMap { topic in topic.partitions.map { TopicPartition(topic: topic.name, partition: $0) } }
        }
        let committed = groupCoordinator.fetchOffsets(groupId: groupId, partitions: requested)
        let unstable: Set<TopicPartition> =
            requireStable
            ? groupCoordinator.unstablePartitions(groupId: groupId, among: requested ?? Array(committed.keys)) : []
        func answer(_ partition: TopicPartition) -> FetchedOffset {
            if unstable.contains(partition) {
                return FetchedOffset(partition: partition.partition, error: .unstableOffsetCommit)
            }
            guard let found = committed[partition] else { return FetchedOffset(partition: partition.partition) }
            return FetchedOffset(
                partition: partition.partition,
                offset: found.offset,
                leaderEpoch: found.leaderEpoch,
                metadata: found.metadata
            )
        }
        if let topics {
            return topics.map { topic in
                let partitions = topic.partitions.map { answer(TopicPartition(topic: topic.name, partition: $0)) }
                return (name: topic.name, partitions: partitions)
            }
        }
        let byTopic = Dictionary(grouping: committed.keys, by: \.topic)
        return byTopic.keys.sorted().map { name in
            (name: name, partitions: byTopic[name]!.sorted().map(answer))  // Safe: own keys.
        }
    }

    // MARK: DescribeGroups, ListGroups, DeleteGroups

    func handleDescribeGroups(_ request: DescribeGroupsRequest, _ context: Request) -> DescribeGroupsResponse {
        DescribeGroupsResponse(
            throttleTimeMs: 0,
            groups: request.groups.map { groupId in
                let summary = groupCoordinator.describe(groupId: groupId)
                return .init(
                    errorCode: 0,
                    groupId: groupId,
                    groupState: summary.state,
                    protocolType: summary.protocolType,
                    protocolData: summary.protocolName,
                    members: summary.members.map {
                        .init(
                            memberId: $0.memberId,
                            groupInstanceId: $0.groupInstanceId,
                            clientId: $0.clientId,
                            clientHost: $0.clientHost,
                            memberMetadata: $0.metadata,
                            memberAssignment: $0.assignment
                        )
                    },
                    authorizedOperations: request.includeAuthorizedOperations
                        ? Self.groupAuthorizedOperations : Int32.min
                )
            }
        )
    }

    func handleListGroups(_ request: ListGroupsRequest, _ context: Request) -> ListGroupsResponse {
        let statesFilter = context.version >= 4 ? request.statesFilter : []
        // v5 TypesFilter (KIP-848): every Fjord group is a classic one; Kafka compares the type
        // names without case.
        let typesFilter = context.version >= 5 ? Set(request.typesFilter.map { $0.lowercased() }) : []
        guard typesFilter.isEmpty || typesFilter.contains(Self.classicGroupType) else {
            return ListGroupsResponse(throttleTimeMs: 0, errorCode: 0, groups: [])
        }
        return ListGroupsResponse(
            throttleTimeMs: 0,
            errorCode: 0,
            groups: groupCoordinator.list(statesFilter: statesFilter).map {
                .init(
                    groupId: $0.groupId,
                    protocolType: $0.protocolType,
                    groupState: $0.state,
                    groupType: Self.classicGroupType
                )
            }
        )
    }

    /// DeleteGroups: only groups without members; their committed offsets are removed durably.
    func handleDeleteGroups(_ request: DeleteGroupsRequest, _ context: Request) async -> DeleteGroupsResponse {
        var seen: Set<String> = []
        let groupIds = request.groupsNames.filter { seen.insert($0).inserted }
        let errors = await groupCoordinator.deleteGroups(groupIds)
        return DeleteGroupsResponse(
            throttleTimeMs: 0,
            results: zip(groupIds, errors).map { .init(groupId: $0, errorCode: $1.rawValue) }
        )
    }
}
