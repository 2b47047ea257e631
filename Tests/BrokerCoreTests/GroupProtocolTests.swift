import NIOCore
import StorageHost
import Testing

@testable import BrokerCore
@testable import KafkaMessages

/// The versions of the other group APIs a client speaking JoinGroup `join` would use (the
/// versions that arrived together in Kafka releases).
struct GroupVersions: Sendable, CustomTestStringConvertible {
    var join: Int16
    var sync: Int16 { [0, 0, 1, 2, 3, 3, 4, 5, 5, 5][Int(join)] }
    var heartbeat: Int16 { [0, 0, 1, 2, 3, 3, 4, 4, 4, 4][Int(join)] }
    var leave: Int16 { [0, 0, 1, 2, 3, 3, 4, 4, 5, 5][Int(join)] }
    var testDescription: String { "JoinGroup v\(join)" }

    static let all = (Int16(0)...9).map { GroupVersions(join: $0) }
}

extension TestBroker {
    static func startForGroups(
        engine: StorageEngine? = nil,
        configure: (inout BrokerConfiguration) -> Void = { _ in }
    ) async throws -> TestBroker {
        try await TestBroker.start(engine: engine) {
            // No initial delay: a lone member's join completes at once.
            $0.groupInitialRebalanceDelayMs = 0
            configure(&$0)
        }
    }

    static func joinRequest(
        group: String = "g",
        memberId: String = "",
        instance: String? = nil,
        sessionTimeoutMs: Int32 = 10_000
    )
        -> JoinGroupRequest
    {
        JoinGroupRequest(
            groupId: group,
            sessionTimeoutMs: sessionTimeoutMs,
            rebalanceTimeoutMs: 10_000,
            memberId: memberId,
            groupInstanceId: instance,
            protocolType: "consumer",
            protocols: [.init(name: "range", metadata: [1, 2, 3])]
        )
    }

    /// JoinGroup including the MEMBER_ID_REQUIRED round trip of v4+.
    func joinGroup(
        group: String = "g",
        instance: String? = nil,
        version: Int16 = 7,
        on connection: ConnectionInfo? = nil,
        sessionTimeoutMs: Int32 = 10_000
    ) async throws -> JoinGroupResponse {
        var request = Self.joinRequest(group: group, instance: instance, sessionTimeoutMs: sessionTimeoutMs)
        var response = try await send(request, version: version, on: connection)
        if version >= 4 && instance == nil {
            #expect(response.errorCode == ErrorCode.memberIdRequired.rawValue)
            #expect(!response.memberId.isEmpty)
            request.memberId = response.memberId
            response = try await send(request, version: version, on: connection)
        }
        return response
    }

    func syncGroup(
        group: String = "g",
        generation: Int32,
        memberId: String,
        instance: String? = nil,
        assignments: [String: [UInt8]] = [:],
        version: Int16 = 5,
        on connection: ConnectionInfo? = nil
    ) async throws -> SyncGroupResponse {
        try await send(
            SyncGroupRequest(
                groupId: group,
                generationId: generation,
                memberId: memberId,
                groupInstanceId: instance,
                protocolType: "consumer",
                protocolName: "range",
                assignments: assignments.keys.sorted().map { .init(memberId: $0, assignment: assignments[$0]!) }
            ),
            version: version,
            on: connection
        )
    }

    func heartbeat(
        group: String = "g",
        generation: Int32,
        memberId: String,
        version: Int16 = 4
    ) async throws -> ErrorCode {
        ErrorCode(
            try await send(
                HeartbeatRequest(groupId: group, generationId: generation, memberId: memberId),
                version: version
            ).errorCode
        )
    }

    func describeGroup(_ group: String = "g", version: Int16 = 5) async throws -> DescribeGroupsResponse.DescribedGroup
    {
        try await send(DescribeGroupsRequest(groups: [group]), version: version).groups[0]
    }

    /// OffsetCommit of one partition per entry; returns the error codes in request order.
    func commit(
        group: String = "g",
        _ offsets: [(topic: String, partition: Int32, offset: Int64)],
        generation: Int32 = -1,
        memberId: String = "",
        metadata: String? = "",
        leaderEpoch: Int32 = -1,
        version: Int16 = 8
    ) async throws -> [ErrorCode] {
        var topics: [OffsetCommitRequest.OffsetCommitRequestTopic] = []
        for entry in offsets {
            let partition = OffsetCommitRequest.OffsetCommitRequestPartition(
                partitionIndex: entry.partition,
                committedOffset: entry.offset,
                committedLeaderEpoch: leaderEpoch,
                committedMetadata: metadata
            )
            if let index = topics.firstIndex(where: { $0.name == entry.topic }) {
                topics[index].partitions.append(partition)
            } else {
                topics.append(.init(name: entry.topic, partitions: [partition]))
            }
        }
        let response = try await send(
            OffsetCommitRequest(
                groupId: group,
                generationIdOrMemberEpoch: generation,
                memberId: memberId,
                topics: topics
            ),
            version: version
        )
        #expect(response.topics.map(\.name) == topics.map(\.name))
        return response.topics.flatMap { $0.partitions.map { ErrorCode($0.errorCode) } }
    }

    /// OffsetFetch of the given partitions (nil: all); returns (topic, partition) → answer.
    func fetchOffsets(
        group: String = "g",
        _ partitions: [(String, Int32)]?,
        version: Int16 = 7
    ) async throws
        -> [String: OffsetFetchResponse.OffsetFetchResponsePartition]
    {
        let topics = partitions.map { list in
            Dictionary(grouping: list, by: \.0).sorted { $0.key < $1.key }.map {
                OffsetFetchRequest.OffsetFetchRequestTopic(name: $0.key, partitionIndexes: $0.value.map(\.1))
            }
        }
        let response = try await send(OffsetFetchRequest(groupId: group, topics: topics), version: version)
        #expect(response.errorCode == 0)
        var answers: [String: OffsetFetchResponse.OffsetFetchResponsePartition] = [:]
        for topic in response.topics {
            for partition in topic.partitions { answers["\(topic.name)-\(partition.partitionIndex)"] = partition }
        }
        return answers
    }
}

@Suite("Group APIs through the broker")
struct GroupProtocolTests {
    /// FindCoordinator names this broker for groups and (v1+) transactional ids at every version;
    /// an empty transactional id is refused.
    @Test(arguments: [Int16(0), 1, 2, 3])
    func findCoordinator(version: Int16) async throws {
        let test = try await TestBroker.startForGroups {
            $0.nodeId = 4
            $0.advertisedHost = "broker.example"
            $0.advertisedPort = 19092
        }
        let group = try await test.send(FindCoordinatorRequest(key: "g", keyType: 0), version: version)
        #expect(group.errorCode == 0)
        #expect(group.nodeId == 4)
        #expect(group.host == "broker.example")
        #expect(group.port == 19092)
        guard version >= 1 else { return }
        let transaction = try await test.send(FindCoordinatorRequest(key: "tx", keyType: 1), version: version)
        #expect(transaction.errorCode == 0)
        #expect(transaction.nodeId == 4)
        #expect(transaction.host == "broker.example")
        #expect(transaction.port == 19092)
        let empty = try await test.send(FindCoordinatorRequest(key: "", keyType: 1), version: version)
        #expect(empty.errorCode == ErrorCode.invalidRequest.rawValue)
        #expect(empty.nodeId == -1)
    }

    /// Join, sync, heartbeat, describe and leave work at every version (MEMBER_ID_REQUIRED from JoinGroup v4).
    @Test(arguments: GroupVersions.all)
    func groupLifecycle(versions: GroupVersions) async throws {
        let test = try await TestBroker.startForGroups()
        let joined = try await test.joinGroup(version: versions.join)
        #expect(joined.errorCode == 0)
        #expect(joined.generationId == 1)
        #expect(joined.leader == joined.memberId)
        #expect(joined.memberId.hasPrefix("core-tests-"))
        #expect(joined.protocolName == "range")
        if versions.join >= 7 { #expect(joined.protocolType == "consumer") }
        #expect(joined.members.map(\.memberId) == [joined.memberId])
        #expect(joined.members.first?.metadata == [1, 2, 3])

        let synced = try await test.syncGroup(
            generation: joined.generationId,
            memberId: joined.memberId,
            assignments: [joined.memberId: [7, 7]],
            version: versions.sync
        )
        #expect(synced.errorCode == 0)
        #expect(synced.assignment == [7, 7])
        if versions.sync >= 5 {
            #expect(synced.protocolType == "consumer")
            #expect(synced.protocolName == "range")
        }
        let beat = try await test.heartbeat(
            generation: joined.generationId,
            memberId: joined.memberId,
            version: versions.heartbeat
        )
        #expect(beat == .none)
        let stale = try await test.heartbeat(generation: 0, memberId: joined.memberId, version: versions.heartbeat)
        #expect(stale == .illegalGeneration)
        let unknown = try await test.heartbeat(generation: 1, memberId: "nobody", version: versions.heartbeat)
        #expect(unknown == .unknownMemberId)

        let described = try await test.describeGroup()
        #expect(described.groupState == "Stable")
        #expect(described.protocolType == "consumer")
        #expect(described.protocolData == "range")
        #expect(described.members.map(\.memberId) == [joined.memberId])
        #expect(described.members.first?.clientId == "core-tests")
        #expect(described.members.first?.clientHost == "/test")
        #expect(described.members.first?.memberAssignment == [7, 7])
        #expect(described.members.first?.memberMetadata == [1, 2, 3])

        let leave =
            versions.leave >= 3
            ? LeaveGroupRequest(groupId: "g", members: [.init(memberId: joined.memberId)])
            : LeaveGroupRequest(groupId: "g", memberId: joined.memberId)
        let left = try await test.send(leave, version: versions.leave)
        #expect(left.errorCode == 0)
        if versions.leave >= 3 { #expect(left.members.map(\.errorCode) == [0]) }
        let leftAgain = try await test.send(leave, version: versions.leave)
        if versions.leave >= 3 {
            #expect(leftAgain.members.map(\.errorCode) == [ErrorCode.unknownMemberId.rawValue])
        } else {
            #expect(leftAgain.errorCode == ErrorCode.unknownMemberId.rawValue)
        }
        // A group with neither members nor offsets is gone.
        #expect(try await test.describeGroup().groupState == "Dead")
    }

    /// A second member joining a Stable group rebalances it: the first learns by heartbeat, both get generation 2 and their assignments.
    @Test func secondMemberRebalancesTheGroup() async throws {
        let test = try await TestBroker.startForGroups()
        let first = try await test.joinGroup()
        _ = try await test.syncGroup(generation: 1, memberId: first.memberId, assignments: [first.memberId: [1]])

        async let secondJoin = test.joinGroup()
        // The first member learns of the rebalance from its heartbeat (polled: the second join runs concurrently).
        var beat = ErrorCode.none
        for _ in 0..<500 where beat == .none {
            beat = try await test.heartbeat(generation: 1, memberId: first.memberId)
            if beat == .none { try await Task.sleep(for: .milliseconds(5)) }
        }
        #expect(beat == .rebalanceInProgress)
        var rejoin = TestBroker.joinRequest()
        rejoin.memberId = first.memberId
        let firstAgain = try await test.send(rejoin, version: 7)
        let second = try await secondJoin
        #expect(firstAgain.generationId == 2)
        #expect(second.generationId == 2)
        #expect(firstAgain.leader == first.memberId)
        #expect(Set(firstAgain.members.map(\.memberId)) == [first.memberId, second.memberId])
        #expect(second.members.isEmpty)

        async let followerSync = test.syncGroup(generation: 2, memberId: second.memberId)
        let leaderSync = try await test.syncGroup(
            generation: 2,
            memberId: first.memberId,
            assignments: [first.memberId: [1], second.memberId: [2]]
        )
        #expect(leaderSync.assignment == [1])
        #expect(try await followerSync.assignment == [2])
        #expect(try await test.describeGroup().groupState == "Stable")
    }

    /// A parked JoinGroup passes its connection's turn on: a later request on the same connection is answered meanwhile.
    @Test func parkedJoinDoesNotBlockItsConnection() async throws {
        let test = try await TestBroker.startForGroups()
        let first = try await test.joinGroup()
        _ = try await test.syncGroup(generation: 1, memberId: first.memberId, assignments: [first.memberId: [1]])

        let connection = test.newConnection()
        let idRound = try await test.send(TestBroker.joinRequest(), version: 7, on: connection)
        var join = TestBroker.joinRequest()
        join.memberId = idRound.memberId
        let parkedReply = await test.dispatch(
            frame: TestBroker.frame(join, version: 7, correlationId: 1),
            on: connection
        )
        async let parked = TestBroker.outcome(of: parkedReply)
        let heartbeat = await test.send(
            frame: TestBroker.frame(
                HeartbeatRequest(groupId: "g", generationId: 1, memberId: first.memberId),
                version: 4,
                correlationId: 2
            ),
            on: connection
        )
        let beat = try TestBroker.decode(heartbeat, for: HeartbeatRequest.self, version: 4, correlationId: 2)
        #expect(beat.errorCode == ErrorCode.rebalanceInProgress.rawValue)
        // The first member rejoins; that completes the parked join.
        var rejoin = TestBroker.joinRequest()
        rejoin.memberId = first.memberId
        _ = try await test.send(rejoin, version: 7)
        let second = try TestBroker.decode(await parked, for: JoinGroupRequest.self, version: 7, correlationId: 1)
        #expect(second.errorCode == 0)
        #expect(second.generationId == 2)
    }

    /// A static member (JoinGroup v5+) that restarts with its group.instance.id keeps its assignment without a rebalance.
    /// A restarted static leader is told the previous leader id, so it does not assign; from v9
    /// (KIP-814) it also gets the members with skip_assignment.
    @Test(arguments: [Int16(5), 6, 7, 8, 9])
    func staticMemberRestartsWithoutRebalance(joinVersion: Int16) async throws {
        let test = try await TestBroker.startForGroups()
        let joined = try await test.joinGroup(instance: "instance-a", version: joinVersion)
        #expect(joined.errorCode == 0)
        #expect(joined.memberId.hasPrefix("instance-a-"))
        _ = try await test.syncGroup(
            generation: 1,
            memberId: joined.memberId,
            instance: "instance-a",
            assignments: [joined.memberId: [4]]
        )

        let restarted = try await test.joinGroup(instance: "instance-a", version: joinVersion)
        #expect(restarted.errorCode == 0)
        #expect(restarted.generationId == 1)
        #expect(restarted.memberId != joined.memberId)
        #expect(restarted.leader == joined.memberId)
        #expect(restarted.skipAssignment == (joinVersion >= 9))
        #expect(restarted.members.map(\.memberId) == (joinVersion >= 9 ? [restarted.memberId] : []))
        let synced = try await test.syncGroup(generation: 1, memberId: restarted.memberId, instance: "instance-a")
        #expect(synced.assignment == [4])
        let fenced = try await test.send(
            HeartbeatRequest(groupId: "g", generationId: 1, memberId: joined.memberId, groupInstanceId: "instance-a"),
            version: 4
        )
        #expect(fenced.errorCode == ErrorCode.fencedInstanceId.rawValue)
        // LeaveGroup v3+ removes a static member by its instance id alone.
        let left = try await test.send(
            LeaveGroupRequest(groupId: "g", members: [.init(memberId: "", groupInstanceId: "instance-a")]),
            version: 4
        )
        #expect(left.members.map(\.errorCode) == [0])
    }

    /// Membership APIs refuse an empty group id with INVALID_GROUP_ID.
    @Test func emptyGroupIdIsInvalid() async throws {
        let test = try await TestBroker.startForGroups()
        let invalid = ErrorCode.invalidGroupId.rawValue
        #expect(try await test.send(TestBroker.joinRequest(group: ""), version: 7).errorCode == invalid)
        #expect(
            try await test.send(SyncGroupRequest(groupId: "", generationId: 1, memberId: "m"), version: 5).errorCode
                == invalid
        )
        #expect(
            try await test.send(HeartbeatRequest(groupId: "", generationId: 1, memberId: "m"), version: 4).errorCode
                == invalid
        )
        #expect(
            try await test.send(LeaveGroupRequest(groupId: "", members: [.init(memberId: "m")]), version: 4).errorCode
                == invalid
        )
        #expect(try await test.send(LeaveGroupRequest(groupId: "", memberId: "m"), version: 0).errorCode == invalid)
    }

    /// Group ids up to 32,767 bytes are accepted (the offsets log stores them with a 16-bit length); longer ones are INVALID_GROUP_ID.
    @Test func groupIdLengthLimit() async throws {
        let test = try await TestBroker.startForGroups()
        try await test.createTopic("t")
        let longest = String(repeating: "g", count: Broker.groupIdBytesMax)
        let tooLong = longest + "g"
        #expect(
            try await test.send(TestBroker.joinRequest(group: longest), version: 7).errorCode
                == ErrorCode.memberIdRequired.rawValue
        )
        #expect(
            try await test.send(TestBroker.joinRequest(group: tooLong), version: 7).errorCode
                == ErrorCode.invalidGroupId.rawValue
        )
        #expect(try await test.commit(group: longest, [("t", 0, 1)]) == [.none])
        #expect(try await test.commit(group: tooLong, [("t", 0, 1)]) == [.invalidGroupId])
    }

    /// JoinGroup session timeouts outside the broker's bounds answer INVALID_SESSION_TIMEOUT.
    @Test func sessionTimeoutOutOfBounds() async throws {
        let test = try await TestBroker.startForGroups()
        let response = try await test.send(TestBroker.joinRequest(sessionTimeoutMs: 5999), version: 3)
        #expect(response.errorCode == ErrorCode.invalidSessionTimeout.rawValue)
    }

    /// A member that stops heartbeating is evicted after its session timeout by the coordinator's timer.
    @Test func silentMemberIsEvicted() async throws {
        let test = try await TestBroker.startForGroups { $0.groupMinSessionTimeoutMs = 10 }
        let joined = try await test.joinGroup(sessionTimeoutMs: 200)
        _ = try await test.syncGroup(generation: 1, memberId: joined.memberId, assignments: [joined.memberId: [1]])
        var state = try await test.describeGroup().groupState
        // Bounded by rounds rather than wall time: on a loaded machine the timer and this loop are
        // delayed alike.
        for _ in 0..<600 where state == "Stable" {
            try await Task.sleep(for: .milliseconds(50))
            state = try await test.describeGroup().groupState
        }
        #expect(state == "Dead", "the group is gone once its only member expired")
        #expect(try await test.heartbeat(generation: 1, memberId: joined.memberId) == .unknownMemberId)
    }

    /// Shutdown answers a parked JoinGroup with NOT_COORDINATOR instead of leaving it to the rebalance timeout.
    @Test func shutdownAnswersParkedJoins() async throws {
        let test = try await TestBroker.startForGroups()
        let first = try await test.joinGroup()
        _ = try await test.syncGroup(generation: 1, memberId: first.memberId, assignments: [first.memberId: [1]])
        async let parked = test.joinGroup()
        while try await test.describeGroup().groupState == "Stable" { try await Task.sleep(for: .milliseconds(5)) }
        test.broker.beginShutdown()
        #expect(try await parked.errorCode == ErrorCode.notCoordinator.rawValue)
        await test.broker.shutdown()
    }

    /// DescribeGroups reports groups at every version; unknown groups are Dead; v3+ reports authorized operations when asked.
    @Test(arguments: [Int16(0), 1, 2, 3, 4, 5])
    func describeGroups(version: Int16) async throws {
        let test = try await TestBroker.startForGroups()
        let joined = try await test.joinGroup()
        _ = try await test.syncGroup(generation: 1, memberId: joined.memberId, assignments: [joined.memberId: [5]])
        let response = try await test.send(
            DescribeGroupsRequest(groups: ["g", "unknown"], includeAuthorizedOperations: true),
            version: version
        )
        #expect(response.groups.map(\.groupId) == ["g", "unknown"])
        #expect(response.groups.map(\.errorCode) == [0, 0])
        #expect(response.groups.map(\.groupState) == ["Stable", "Dead"])
        #expect(response.groups[0].members.first?.memberAssignment == [5])
        if version >= 4 { #expect(response.groups[0].members.first?.groupInstanceId == nil) }
        if version >= 3 { #expect(response.groups[0].authorizedOperations == Broker.groupAuthorizedOperations) }
    }

    /// ListGroups lists every group at every version; v4 filters by state, case-insensitively.
    @Test(arguments: [Int16(0), 1, 2, 3, 4])
    func listGroups(version: Int16) async throws {
        let test = try await TestBroker.startForGroups()
        try await test.createTopic("t")
        let joined = try await test.joinGroup(group: "active")
        _ = try await test.syncGroup(group: "active", generation: 1, memberId: joined.memberId, assignments: [:])
        #expect(try await test.commit(group: "offsets-only", [("t", 0, 1)]) == [.none])
        let all = try await test.send(ListGroupsRequest(), version: version)
        #expect(all.errorCode == 0)
        #expect(all.groups.map(\.groupId) == ["active", "offsets-only"])
        #expect(all.groups.map(\.protocolType) == ["consumer", ""])
        if version >= 4 {
            #expect(all.groups.map(\.groupState) == ["Stable", "Empty"])
            let stable = try await test.send(ListGroupsRequest(statesFilter: ["stable"]), version: version)
            #expect(stable.groups.map(\.groupId) == ["active"])
        }
    }

    /// DeleteGroups deletes empty groups with their offsets and refuses others with Kafka's errors, at every version.
    @Test(arguments: [Int16(0), 1, 2])
    func deleteGroups(version: Int16) async throws {
        let test = try await TestBroker.startForGroups()
        try await test.createTopic("t", partitions: 2)
        #expect(try await test.commit(group: "done", [("t", 0, 10), ("t", 1, 20)]) == [.none, .none])
        let joined = try await test.joinGroup(group: "busy")
        #expect(joined.errorCode == 0)
        let response = try await test.send(
            DeleteGroupsRequest(groupsNames: ["done", "busy", "never", "done"]),
            version: version
        )
        #expect(response.results.map(\.groupId) == ["done", "busy", "never"])
        #expect(
            response.results.map(\.errorCode) == [
                0, ErrorCode.nonEmptyGroup.rawValue, ErrorCode.groupIdNotFound.rawValue,
            ]
        )
        let fetched = try await test.fetchOffsets(group: "done", [("t", 0), ("t", 1)])
        #expect(fetched["t-0"]?.committedOffset == -1)
        #expect(fetched["t-1"]?.committedOffset == -1)
        #expect(try await test.describeGroup("done").groupState == "Dead")
    }
}

@Suite("Committed offsets through the broker")
struct OffsetCommitFetchTests {
    /// Offsets committed at every OffsetCommit version are fetched back at every OffsetFetch version; unknown partitions answer -1 without error.
    @Test(arguments: [Int16(2), 3, 4, 5, 6, 7, 8])
    func commitAndFetchEveryVersion(commitVersion: Int16) async throws {
        let test = try await TestBroker.startForGroups()
        try await test.createTopic("t", partitions: 3)
        let errors = try await test.commit(
            [("t", 0, 42), ("t", 1, 7), ("t", 99, 1), ("nope", 0, 1)],
            metadata: "meta",
            leaderEpoch: 3,
            version: commitVersion
        )
        #expect(errors == [.none, .none, .unknownTopicOrPartition, .unknownTopicOrPartition])
        for fetchVersion in Int16(1)...7 {
            let answers = try await test.fetchOffsets(
                [("t", 0), ("t", 1), ("t", 2), ("nope", 0)],
                version: fetchVersion
            )
            #expect(answers["t-0"]?.committedOffset == 42)
            #expect(answers["t-0"]?.metadata == "meta")
            #expect(answers["t-0"]?.errorCode == 0)
            #expect(answers["t-1"]?.committedOffset == 7)
            #expect(answers["t-2"]?.committedOffset == -1)
            #expect(answers["t-2"]?.metadata == "")
            #expect(answers["t-2"]?.errorCode == 0)
            #expect(answers["nope-0"]?.committedOffset == -1)
            if fetchVersion >= 5 {
                #expect(answers["t-0"]?.committedLeaderEpoch == (commitVersion >= 6 ? 3 : -1))
                #expect(answers["t-2"]?.committedLeaderEpoch == -1)
            }
            if fetchVersion >= 2 {
                let all = try await test.fetchOffsets(nil, version: fetchVersion)
                #expect(Set(all.keys) == ["t-0", "t-1"])
            }
        }
        let noGroup = try await test.fetchOffsets(group: "no-such-group", [("t", 0)], version: 1)
        #expect(noGroup["t-0"]?.committedOffset == -1)
        #expect(noGroup["t-0"]?.errorCode == 0)
    }

    /// Metadata up to offset.metadata.max.bytes is stored; one byte more is OFFSET_METADATA_TOO_LARGE; null is stored as "".
    @Test func metadataSizeLimit() async throws {
        let test = try await TestBroker.startForGroups { $0.offsetMetadataMaxBytes = 16 }
        try await test.createTopic("t")
        #expect(try await test.commit([("t", 0, 1)], metadata: String(repeating: "x", count: 16)) == [.none])
        #expect(
            try await test.commit([("t", 0, 2)], metadata: String(repeating: "x", count: 17)) == [
                .offsetMetadataTooLarge
            ]
        )
        #expect(try await test.fetchOffsets([("t", 0)])["t-0"]?.committedOffset == 1)
        #expect(try await test.commit([("t", 0, 3)], metadata: nil) == [.none])
        #expect(try await test.fetchOffsets([("t", 0)])["t-0"]?.metadata == "")
    }

    /// Commits from group members are checked against the member and generation.
    @Test func memberCommitsAreValidated() async throws {
        let test = try await TestBroker.startForGroups()
        try await test.createTopic("t")
        #expect(
            try await test.commit(group: "unknown", [("t", 0, 1)], generation: 3, memberId: "m") == [.illegalGeneration]
        )
        let joined = try await test.joinGroup()
        // Joined but not synced: the member must finish the rebalance first.
        #expect(
            try await test.commit([("t", 0, 1)], generation: 1, memberId: joined.memberId) == [.rebalanceInProgress]
        )
        _ = try await test.syncGroup(generation: 1, memberId: joined.memberId, assignments: [joined.memberId: [1]])
        #expect(try await test.commit([("t", 0, 5)], generation: 1, memberId: joined.memberId) == [.none])
        #expect(try await test.commit([("t", 0, 6)], generation: 2, memberId: joined.memberId) == [.illegalGeneration])
        #expect(try await test.commit([("t", 0, 6)], generation: 1, memberId: "stranger") == [.unknownMemberId])
        #expect(
            try await test.commit([("t", 0, 6)]) == [.unknownMemberId],
            "a group with members takes no simple commits"
        )
        #expect(try await test.fetchOffsets([("t", 0)])["t-0"]?.committedOffset == 5)
    }
}

@Suite("Committed offsets store")
struct GroupOffsetsStoreTests {
    /// A broker restarted over the same storage finds the committed offsets, and not those of deleted groups.
    @Test func offsetsSurviveABrokerRestart() async throws {
        let first = try await TestBroker.startForGroups()
        try await first.createTopic("t", partitions: 2)
        #expect(
            try await first.commit(group: "kept", [("t", 0, 11), ("t", 1, 12)], metadata: "m", leaderEpoch: 2) == [
                .none, .none,
            ]
        )
        #expect(try await first.commit(group: "kept", [("t", 0, 13)]) == [.none])
        #expect(try await first.commit(group: "dropped", [("t", 0, 99)]) == [.none])
        _ = try await first.send(DeleteGroupsRequest(groupsNames: ["dropped"]), version: 2)
        await first.broker.shutdown()

        let second = try await TestBroker.startForGroups(engine: first.engine)
        let kept = try await second.fetchOffsets(group: "kept", [("t", 0), ("t", 1)])
        #expect(kept["t-0"]?.committedOffset == 13)
        #expect(kept["t-1"]?.committedOffset == 12)
        #expect(kept["t-1"]?.committedLeaderEpoch == 2)
        #expect(kept["t-1"]?.metadata == "m")
        #expect(try await second.fetchOffsets(group: "dropped", [("t", 0)])["t-0"]?.committedOffset == -1)
        #expect(try await second.send(ListGroupsRequest(), version: 4).groups.map(\.groupId) == ["kept"])
        #expect(try await second.engine.listLogs().contains(GroupCoordinator.logName))
    }

    /// The offsets log is compacted once it holds many more records than live offsets, and replay after compaction gives the same offsets.
    @Test(arguments: [20, 50])
    func compactionKeepsTheLogShort(thresholdRecords: Int) async throws {
        let first = try await TestBroker.startForGroups { $0.offsetsCompactionThresholdRecords = thresholdRecords }
        try await first.createTopic("t", partitions: 3)
        for round in Int64(1)...200 {
            let errors = try await first.commit(
                group: "busy",
                [("t", 0, round), ("t", 1, round * 2), ("t", 2, round * 3)]
            )
            #expect(errors == [.none, .none, .none])
            if round % 50 == 0 { #expect(try await first.commit(group: "g\(round)", [("t", 0, round)]) == [.none]) }
        }
        #expect(try await first.send(DeleteGroupsRequest(groupsNames: ["g100"]), version: 2).results[0].errorCode == 0)
        await first.broker.groupCoordinator.waitForCompaction()
        let log = try first.broker.groupCoordinator.offsetsLogState()
        #expect(log.startOffset > 0, "compaction deleted the history")
        // 200 commits and 5 other records were appended; what is left is at most a threshold's worth.
        #expect(log.endOffset - log.startOffset <= Int64(thresholdRecords), "\(log)")
        await first.broker.shutdown()

        let second = try await TestBroker.startForGroups(engine: first.engine)
        let busy = try await second.fetchOffsets(group: "busy", [("t", 0), ("t", 1), ("t", 2)])
        #expect(busy["t-0"]?.committedOffset == 200)
        #expect(busy["t-1"]?.committedOffset == 400)
        #expect(busy["t-2"]?.committedOffset == 600)
        let groups = try await second.send(ListGroupsRequest(), version: 4).groups.map(\.groupId)
        #expect(groups == ["busy", "g150", "g200", "g50"])
    }

    /// Offsets log records encode and decode losslessly; a truncated entry is an error.
    @Test func recordsRoundTrip() throws {
        let committed = CommittedOffset(
            offset: 5,
            leaderEpoch: 2,
            metadata: "häh",
            commitTimestampMs: 1_700_000_000_000
        )
        let entry = OffsetsLogRecord.Entry(
            topicPartition: TopicPartition(topic: "t", partition: 3),
            committed: committed
        )
        let records: [OffsetsLogRecord] = [
            .commit(.init(group: "g", entries: [entry, entry])),
            .groupDeleted(group: "gone"),
            .snapshotBegin(id: 9),
            .snapshotChunk(id: 9, groups: [.init(group: "a", entries: [entry]), .init(group: "b", entries: [])]),
            .snapshotEnd(id: 9, offsetCount: 1),
        ]
        var all = ByteBuffer()
        for record in records {
            var encoded = record.encode()
            all.writeBuffer(&encoded)
        }
        #expect(try OffsetsLogRecord.decodeAll(all) == records)
        var truncated = all
        truncated.moveWriterIndex(to: truncated.writerIndex - 1)
        #expect(throws: OffsetsLogRecord.DecodeError.self) { try OffsetsLogRecord.decodeAll(truncated) }
    }

    /// Replay applies a complete snapshot as the whole state and ignores one that was cut short.
    @Test func replayAppliesOnlyCompleteSnapshots() {
        func commit(_ group: String, _ offset: Int64) -> OffsetsLogRecord {
            .commit(
                .init(
                    group: group,
                    entries: [
                        .init(
                            topicPartition: .init(topic: "t", partition: 0),
                            committed: .init(offset: offset, leaderEpoch: -1, metadata: "", commitTimestampMs: 0)
                        )
                    ]
                )
            )
        }
        var live = CommittedOffsets()
        live.store(
            group: "a",
            OffsetsReplay.table([
                .init(
                    topicPartition: .init(topic: "t", partition: 0),
                    committed: .init(offset: 1, leaderEpoch: -1, metadata: "", commitTimestampMs: 0)
                )
            ])
        )
        let snapshot = OffsetsLogRecord.snapshot(id: 7, of: live, chunkOffsetsMax: 1)

        var complete = OffsetsReplay()
        for record in [commit("a", 0), commit("stale", 3)] + snapshot + [commit("b", 2)] { complete.apply(record) }
        #expect(complete.offsets.byGroup.keys.sorted() == ["a", "b"], "the snapshot replaced everything before it")
        #expect(complete.recordCount == 2)

        var cut = OffsetsReplay()
        for record in [commit("a", 0), commit("stale", 3)] + snapshot.dropLast() + [commit("b", 2)] {
            cut.apply(record)
        }
        #expect(cut.offsets.byGroup.keys.sorted() == ["a", "b", "stale"], "an unfinished snapshot changes nothing")
        #expect(cut.offsets.offsets(of: "a")?.values.first?.offset == 0)
    }

    /// Snapshots split into chunks of at most the limit, and count every offset.
    @Test(arguments: [1, 2, 1000])
    func snapshotChunks(chunkOffsetsMax: Int) {
        var live = CommittedOffsets()
        for group in ["x", "y"] {
            var table: [TopicPartition: CommittedOffset] = [:]
            for partition in Int32(0)..<3 {
                table[TopicPartition(topic: "t", partition: partition)] = CommittedOffset(
                    offset: 1,
                    leaderEpoch: -1,
                    metadata: "",
                    commitTimestampMs: 0
                )
            }
            live.store(group: group, table)
        }
        let records = OffsetsLogRecord.snapshot(id: 1, of: live, chunkOffsetsMax: chunkOffsetsMax)
        #expect(records.first == .snapshotBegin(id: 1))
        #expect(records.last == .snapshotEnd(id: 1, offsetCount: 6))
        let chunks = records.dropFirst().dropLast()
        #expect(chunks.allSatisfy { $0.offsetRecordCount <= chunkOffsetsMax && $0.offsetRecordCount > 0 })
        #expect(chunks.reduce(0) { $0 + $1.offsetRecordCount } == 6)
        var replay = OffsetsReplay()
        for record in records { replay.apply(record) }
        #expect(replay.offsets == live)
    }
}

@Suite("Committed offsets of deleted topics")
struct DeletedTopicOffsetsTests {
    /// Deleting a topic deletes every group's committed offsets of it, durably: a topic recreated
    /// under the same name starts without them, also after a restart; other topics keep theirs.
    @Test func offsetsGoWithTheirTopic() async throws {
        let first = try await TestBroker.startForGroups()
        try await first.createTopic("doomed", partitions: 2)
        try await first.createTopic("kept")
        #expect(try await first.commit([("doomed", 0, 5), ("doomed", 1, 7), ("kept", 0, 3)]) == [.none, .none, .none])
        _ = try await first.send(DeleteTopicsRequest(topicNames: ["doomed"], timeoutMs: 1000), version: 5)
        try await first.createTopic("doomed", partitions: 2)
        var answers = try await first.fetchOffsets([("doomed", 0), ("kept", 0)])
        #expect(answers["doomed-0"]?.committedOffset == -1)
        #expect(answers["kept-0"]?.committedOffset == 3)
        await first.broker.shutdown()

        let second = try await TestBroker.start(engine: first.engine)
        answers = try await second.fetchOffsets([("doomed", 0), ("doomed", 1), ("kept", 0)])
        #expect(answers["doomed-0"]?.committedOffset == -1)
        #expect(answers["doomed-1"]?.committedOffset == -1)
        #expect(answers["kept-0"]?.committedOffset == 3)
    }

    /// The offsets record of a deleted topic encodes and decodes losslessly.
    @Test func topicDeletedRecordRoundTrips() throws {
        let record = OffsetsLogRecord.topicDeleted(topic: "t")
        #expect(try OffsetsLogRecord.decodeAll(record.encode()) == [record])
    }
}
