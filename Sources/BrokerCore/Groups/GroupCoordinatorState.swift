import KafkaMessages

/// What DescribeGroups reports for one group (Kafka's `GroupSummary`).
struct GroupSummary: Sendable, Equatable {
    struct Member: Sendable, Equatable {
        var memberId: String
        var groupInstanceId: String?
        var clientId: String
        var clientHost: String
        var metadata: [UInt8]
        var assignment: [UInt8]
    }

    var state: String
    var protocolType: String
    var protocolName: String
    var members: [Member]

    /// A group this coordinator does not know (Kafka answers it as Dead, without an error, up to v5).
    static let dead = GroupSummary(
        state: ClassicGroup.State.dead.rawValue,
        protocolType: "",
        protocolName: "",
        members: []
    )
}

/// What ListGroups reports for one group.
struct GroupOverview: Sendable, Equatable {
    var groupId: String
    var protocolType: String
    var state: String
}

extension ClassicGroup {
    /// Kafka's `GroupMetadata.summary`: member metadata and assignments only once the group is Stable.
    var summary: GroupSummary {
        let stableProtocol = state == .stable ? protocolName : nil
        return GroupSummary(
            state: state.rawValue,
            protocolType: protocolType ?? "",
            protocolName: stableProtocol ?? "",
            members: orderedMembers.map { member in
                GroupSummary.Member(
                    memberId: member.memberId,
                    groupInstanceId: member.groupInstanceId,
                    clientId: member.clientId,
                    clientHost: member.clientHost,
                    metadata: stableProtocol.map { member.metadata(for: $0) } ?? [],
                    assignment: stableProtocol == nil ? [] : member.assignment
                )
            }
        )
    }
}

extension ClassicGroup {
    /// The topics a consumer group's members subscribe to, from their subscriptions for the chosen
    /// protocol (Kafka's `GroupMetadata.subscribedTopics`); nil when that is not known (not a
    /// consumer group, no protocol chosen, or metadata that does not parse).
    var subscribedTopics: Set<String>? {
        guard protocolType == "consumer", let protocolName else { return nil }
        var topics = Set<String>()
        for member in members.values {
            guard let subscribed = Self.subscriptionTopics(member.metadata(for: protocolName)) else { return nil }
            topics.formUnion(subscribed)
        }
        return topics
    }

    /// The topic list of a ConsumerProtocolSubscription (any version): int16 version, then an
    /// int32 count of int16-length strings. What follows (user data, owned partitions) is not read.
    static func subscriptionTopics(_ metadata: [UInt8]) -> [String]? {
        var cursor = 2
        func int(_ width: Int) -> Int? {
            guard cursor + width <= metadata.count else { return nil }
            defer { cursor += width }
            return metadata[cursor..<cursor + width].reduce(0) { $0 << 8 | Int($1) }
        }
        guard metadata.count >= 2, let count = int(4), count <= metadata.count else { return nil }
        var topics: [String] = []
        for _ in 0..<count {
            guard let length = int(2), cursor + length <= metadata.count else { return nil }
            topics.append(String(decoding: metadata[cursor..<cursor + length], as: UTF8.self))
            cursor += length
        }
        return topics
    }
}

/// Every group of this coordinator and every committed offset, as one value: the group state
/// machines plus the rules that span groups (which groups exist, creation, deletion, listing).
///
/// A group exists while it has members, pending members or committed offsets. An idle group
/// (Empty, no members) without offsets is dropped from `groups`: Kafka keeps such groups until
/// its periodic cleanup, which clients cannot tell apart. One with offsets stays (so it keeps its
/// protocol type and generation) until it is deleted.
struct GroupCoordinatorState: Sendable {
    let settings: GroupSettings
    private(set) var groups: [String: ClassicGroup] = [:]
    private(set) var offsets: CommittedOffsets

    init(settings: GroupSettings, offsets: CommittedOffsets = CommittedOffsets()) {
        self.settings = settings
        self.offsets = offsets
    }

    func exists(_ groupId: String) -> Bool { groups[groupId] != nil || offsets.hasOffsets(groupId) }

    private func group(_ groupId: String) -> ClassicGroup {
        groups[groupId] ?? ClassicGroup(groupId: groupId, settings: settings)
    }

    private mutating func put(_ group: ClassicGroup) {
        if group.isIdle && !offsets.hasOffsets(group.groupId) {
            groups.removeValue(forKey: group.groupId)
        } else {
            groups[group.groupId] = group
        }
    }

    /// The earliest deadline of any group.
    var nextDeadline: Int64? {
        groups.values.compactMap(\.nextDeadline).min()
    }

    // MARK: Membership

    mutating func join(groupId: String, _ parameters: JoinGroupParameters, token: UInt64, now: Int64) -> [GroupAction] {
        if parameters.sessionTimeoutMs < settings.minSessionTimeoutMs
            || parameters.sessionTimeoutMs > settings.maxSessionTimeoutMs
        {
            return [.completeJoin(token: token, .error(.invalidSessionTimeout, memberId: parameters.memberId))]
        }
        // Only a member without an id creates a group; a member id for an unknown group is stale.
        if !parameters.memberId.isEmpty && !exists(groupId) {
            return [.completeJoin(token: token, .error(.unknownMemberId, memberId: parameters.memberId))]
        }
        var group = group(groupId)
        let actions = group.join(parameters, token: token, now: now)
        put(group)
        return actions
    }

    mutating func sync(
        groupId: String,
        _ parameters: ClassicGroup.SyncParameters,
        token: UInt64,
        now: Int64
    ) -> [GroupAction] {
        guard var group = groups[groupId] else {
            return [.completeSync(token: token, .error(.unknownMemberId))]
        }
        let actions = group.sync(parameters, token: token, now: now)
        put(group)
        return actions
    }

    mutating func heartbeat(
        groupId: String,
        memberId: String,
        groupInstanceId: String?,
        generationId: Int32,
        now: Int64
    )
        -> ErrorCode
    {
        guard var group = groups[groupId] else { return .unknownMemberId }
        let error = group.heartbeat(
            memberId: memberId,
            groupInstanceId: groupInstanceId,
            generationId: generationId,
            now: now
        )
        put(group)
        return error
    }

    /// LeaveGroup: one error per leaving member, in order.
    mutating func leave(
        groupId: String,
        members: [(memberId: String, groupInstanceId: String?)],
        now: Int64
    )
        -> (errors: [ErrorCode], actions: [GroupAction])
    {
        guard var group = groups[groupId] else {
            return (Array(repeating: .unknownMemberId, count: members.count), [])
        }
        var actions: [GroupAction] = []
        let errors = members.map {
            group.leave(memberId: $0.memberId, groupInstanceId: $0.groupInstanceId, now: now, actions: &actions)
        }
        put(group)
        return (errors, actions)
    }

    mutating func expire(now: Int64) -> [GroupAction] {
        var actions: [GroupAction] = []
        for (groupId, deadline) in groups.compactMapValues(\.nextDeadline) where deadline <= now {
            guard var group = groups[groupId] else { continue }
            actions += group.expire(now: now)
            put(group)
        }
        return actions
    }

    /// Answers every parked request with `error` and marks every group Dead, so members learn
    /// to look for the coordinator again (offsets stay).
    mutating func unloadAll(error: ErrorCode) -> [GroupAction] {
        var actions: [GroupAction] = []
        for groupId in groups.keys.sorted() {
            actions += groups[groupId]?.unload(error: error) ?? []
        }
        return actions
    }

    // MARK: Offsets

    /// Whether an OffsetCommit (or, `isTransactional`, a TxnOffsetCommit) may store offsets now
    /// (nil) or the error for all its partitions.
    mutating func validateOffsetCommit(
        groupId: String,
        memberId: String,
        groupInstanceId: String?,
        generationId: Int32,
        isTransactional: Bool = false,
        unknownGroupError: ErrorCode = .illegalGeneration,
        now: Int64
    )
        -> ErrorCode?
    {
        if !exists(groupId) {
            if isTransactional {
                // Kafka creates the group (Empty) for a TxnOffsetCommit; only a member of it could
                // name a generation or member id.
                return generationId < 0 && memberId.isEmpty && groupInstanceId == nil ? nil : .unknownMemberId
            }
            // A commit with a generation (from a group member) for a group this coordinator does
            // not know belongs to an older generation (OffsetCommit v9+: GROUP_ID_NOT_FOUND, KIP-848);
            // one without creates a "simple" group.
            return generationId < 0 ? nil : unknownGroupError
        }
        var group = group(groupId)
        let error = group.validateOffsetCommit(
            memberId: memberId,
            groupInstanceId: groupInstanceId,
            generationId: generationId,
            isTransactional: isTransactional,
            now: now
        )
        put(group)
        return error
    }

    mutating func storeOffsets(groupId: String, _ committed: [TopicPartition: CommittedOffset]) {
        offsets.store(group: groupId, committed)
    }

    /// TxnOffsetCommit: the offsets wait for the producer's transaction to be decided.
    mutating func storeTransactionalOffsets(
        groupId: String,
        producerId: Int64,
        _ pending: [TopicPartition: CommittedOffset]
    ) {
        offsets.storePending(group: groupId, producerId: producerId, pending)
    }

    /// The transaction's marker for this group: its offsets are committed or dropped.
    mutating func completeTransactionalOffsets(groupId: String, producerId: Int64, commit: Bool) {
        offsets.completePending(group: groupId, producerId: producerId, commit: commit)
        if let group = groups[groupId] { put(group) }
    }

    /// Removes every group's offsets of a deleted topic; returns how many there were.
    mutating func removeOffsets(ofTopic topic: String) -> Int {
        offsets.removeTopic(topic)
    }

    /// DeleteGroups for one group: only groups without members can be deleted; their offsets go too.
    mutating func deleteGroup(_ groupId: String) -> ErrorCode {
        guard exists(groupId) else { return .groupIdNotFound }
        var group = group(groupId)
        let error = group.markDeleted()
        guard error == .none else { return error }
        groups.removeValue(forKey: groupId)
        offsets.removeGroup(groupId)
        return .none
    }

    /// OffsetDelete (Kafka's `GroupCoordinator.handleDeleteOffsets`): an Empty group loses the
    /// offsets asked for; an active consumer group keeps those of topics it subscribes to
    /// (GROUP_SUBSCRIBED_TO_TOPIC) and loses the others; other active groups answer NON_EMPTY_GROUP.
    /// Returns the group error, the partition errors, and the partitions whose offsets went.
    mutating func deleteOffsets(
        groupId: String,
        partitions: [TopicPartition]
    )
        -> (error: ErrorCode, partitions: [TopicPartition: ErrorCode], removed: [TopicPartition])
    {
        guard exists(groupId) else { return (.groupIdNotFound, [:], []) }
        let group = group(groupId)
        var errors: [TopicPartition: ErrorCode] = [:]
        var eligible: [TopicPartition] = []
        switch group.state {
        case .dead:
            return (.groupIdNotFound, [:], [])
        case .empty:
            eligible = partitions
        case .preparingRebalance, .completingRebalance, .stable:
            guard group.protocolType == "consumer" else { return (.nonEmptyGroup, [:], []) }
            let subscribed = group.subscribedTopics ?? []
            for partition in partitions {
                if subscribed.contains(partition.topic) {
                    errors[partition] = .groupSubscribedToTopic
                } else {
                    eligible.append(partition)
                }
            }
        }
        let present = eligible.filter { offsets.offsets(of: groupId)?[$0] != nil }
        offsets.remove(group: groupId, partitions: eligible)
        for partition in eligible { errors[partition] = ErrorCode.none }
        if groups[groupId]?.isIdle == true && !offsets.hasOffsets(groupId) { groups.removeValue(forKey: groupId) }
        return (.none, errors, present)
    }

    // MARK: Describing

    func describe(_ groupId: String) -> GroupSummary {
        exists(groupId) ? group(groupId).summary : .dead
    }

    /// ListGroups: every group, optionally only those in the given states (compared case-insensitively).
    func list(statesFilter: [String]) -> [GroupOverview] {
        let states = Set(statesFilter.map { $0.lowercased() })
        let ids = Set(groups.keys).union(offsets.byGroup.keys)
        return ids.sorted().compactMap { id in
            let group = group(id)
            guard group.state != .dead, states.isEmpty || states.contains(group.state.rawValue.lowercased()) else {
                return nil
            }
            return GroupOverview(groupId: id, protocolType: group.protocolType ?? "", state: group.state.rawValue)
        }
    }
}
