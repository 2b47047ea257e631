import NIOCore
import Testing

@testable import BrokerCore
@testable import KafkaMessages

/// Issue 17: the oldest and newest versions of the group and offset APIs, with Kafka 3.8's
/// semantics for each.
@Suite("Kafka 3.8 version ranges of the group and offset APIs")
struct GroupAndOffsetVersionTests {
    /// OffsetCommit v0 carries no generation or member: it commits for a group without members
    /// (a "simple" group), and OffsetFetch v0 and v1 read it back from the coordinator.
    @Test func offsetCommitV0CommitsForASimpleGroup() async throws {
        let test = try await TestBroker.startForGroups()
        try await test.createTopic("t", partitions: 2)
        let errors = try await test.commit([("t", 0, 5), ("t", 1, 9)], metadata: "v0", version: 0)
        #expect(errors == [.none, .none])
        for version in [Int16(0), 1] {
            let fetched = try await test.fetchOffsets([("t", 0), ("t", 1)], version: version)
            #expect(fetched["t-0"]?.committedOffset == 5)
            #expect(fetched["t-0"]?.metadata == "v0")
            #expect(fetched["t-1"]?.committedOffset == 9)
            #expect(fetched["t-1"]?.errorCode == 0)
        }
        // A partition without a commit answers -1 without error at v0 too.
        let other = try await test.fetchOffsets(group: "other", [("t", 0)], version: 0)
        #expect(other["t-0"]?.committedOffset == -1)
        #expect(other["t-0"]?.errorCode == 0)
    }

    /// A v0 commit names no member, so a group with members refuses it (UNKNOWN_MEMBER_ID).
    @Test func offsetCommitV0IsRefusedByAGroupWithMembers() async throws {
        let test = try await TestBroker.startForGroups()
        try await test.createTopic("t")
        let joined = try await test.joinGroup()
        _ = try await test.syncGroup(generation: joined.generationId, memberId: joined.memberId)
        #expect(try await test.commit([("t", 0, 1)], version: 0) == [.unknownMemberId])
    }

    /// OffsetCommit v1 is checked against the member's generation and keeps the client's commit
    /// timestamp (-1: the broker's clock).
    @Test func offsetCommitV1ChecksTheGenerationAndKeepsTheTimestamp() async throws {
        let test = try await TestBroker.startForGroups()
        try await test.createTopic("t", partitions: 2)
        let joined = try await test.joinGroup()
        _ = try await test.syncGroup(generation: joined.generationId, memberId: joined.memberId)
        let response = try await test.send(
            OffsetCommitRequest(
                groupId: "g",
                generationIdOrMemberEpoch: joined.generationId,
                memberId: joined.memberId,
                topics: [
                    .init(
                        name: "t",
                        partitions: [
                            .init(partitionIndex: 0, committedOffset: 3, commitTimestamp: 42),
                            .init(partitionIndex: 1, committedOffset: 4, commitTimestamp: -1),
                        ]
                    )
                ]
            ),
            version: 1
        )
        let after = test.broker.nowMs
        #expect(response.topics[0].partitions.map(\.errorCode) == [0, 0])
        let stored = test.broker.groupCoordinator.fetchOffsets(groupId: "g", partitions: nil)
        #expect(stored[TopicPartition(topic: "t", partition: 0)]?.commitTimestampMs == 42)
        let brokerTime = try #require(stored[TopicPartition(topic: "t", partition: 1)]?.commitTimestampMs)
        #expect(brokerTime > 42 && brokerTime <= after)
        let stale = try await test.commit(
            [("t", 0, 8)],
            generation: joined.generationId + 1,
            memberId: joined.memberId,
            version: 1
        )
        #expect(stale == [.illegalGeneration])
    }

    /// A commit with a generation for a group the coordinator does not know: ILLEGAL_GENERATION
    /// up to v8, GROUP_ID_NOT_FOUND from v9 (KIP-848). Without a generation, v9 commits as before.
    @Test func offsetCommitV9NamesAnUnknownGroup() async throws {
        let test = try await TestBroker.startForGroups()
        try await test.createTopic("t")
        #expect(
            try await test.commit(group: "nobody", [("t", 0, 1)], generation: 3, memberId: "m", version: 8) == [
                .illegalGeneration
            ]
        )
        #expect(
            try await test.commit(group: "nobody", [("t", 0, 1)], generation: 3, memberId: "m", version: 9) == [
                .groupIdNotFound
            ]
        )
        #expect(try await test.commit(group: "simple", [("t", 0, 6)], version: 9) == [.none])
        // A classic group's member commits at v9 with its generation as the member epoch.
        let joined = try await test.joinGroup()
        _ = try await test.syncGroup(generation: joined.generationId, memberId: joined.memberId)
        let committed = try await test.commit(
            [("t", 0, 2)],
            generation: joined.generationId,
            memberId: joined.memberId,
            version: 9
        )
        #expect(committed == [.none])
    }

    /// OffsetFetch v8+ asks for several groups at once, each with its topics or null for all its
    /// offsets; v9's member id and epoch are not checked for classic groups.
    @Test(arguments: [Int16(8), 9])
    func offsetFetchAnswersSeveralGroups(version: Int16) async throws {
        let test = try await TestBroker.startForGroups()
        try await test.createTopic("a", partitions: 2)
        try await test.createTopic("b")
        _ = try await test.commit(group: "g1", [("a", 0, 10), ("b", 0, 20)], metadata: "m1", leaderEpoch: 0)
        _ = try await test.commit(group: "g2", [("a", 1, 30)])
        let response = try await test.send(
            OffsetFetchRequest(
                groups: [
                    .init(
                        groupId: "g1",
                        memberId: "someone",
                        memberEpoch: 7,
                        topics: [.init(name: "a", partitionIndexes: [0, 1])]
                    ),
                    .init(groupId: "g2", topics: nil),
                    .init(groupId: "g3", topics: [.init(name: "b", partitionIndexes: [0])]),
                ]
            ),
            version: version
        )
        #expect(response.groups.map(\.groupId) == ["g1", "g2", "g3"])
        #expect(response.groups.map(\.errorCode) == [0, 0, 0])
        let first = response.groups[0].topics
        #expect(first.map(\.name) == ["a"])
        #expect(first[0].partitions.map(\.committedOffset) == [10, -1])
        #expect(first[0].partitions.map(\.committedLeaderEpoch) == [0, -1])
        #expect(first[0].partitions[0].metadata == "m1")
        let all = response.groups[1].topics
        #expect(all.map(\.name) == ["a"])
        #expect(all[0].partitions.map(\.partitionIndex) == [1])
        #expect(all[0].partitions.map(\.committedOffset) == [30])
        #expect(response.groups[2].topics[0].partitions.map(\.committedOffset) == [-1])
    }

    /// FindCoordinator v4+ answers each key of a batch on its own; v5 is the same request (it only
    /// lets the broker answer TRANSACTION_ABORTABLE).
    @Test(arguments: [Int16(4), 5])
    func findCoordinatorAnswersABatch(version: Int16) async throws {
        let test = try await TestBroker.startForGroups {
            $0.nodeId = 3
            $0.advertisedHost = "broker.example"
            $0.advertisedPort = 29092
        }
        let groups = try await test.send(
            FindCoordinatorRequest(keyType: 0, coordinatorKeys: ["a", "b"]),
            version: version
        )
        #expect(groups.coordinators.map(\.key) == ["a", "b"])
        #expect(groups.coordinators.map(\.errorCode) == [0, 0])
        #expect(groups.coordinators.map(\.nodeId) == [3, 3])
        #expect(groups.coordinators.map(\.host) == ["broker.example", "broker.example"])
        #expect(groups.coordinators.map(\.port) == [29092, 29092])
        let transactions = try await test.send(
            FindCoordinatorRequest(keyType: 1, coordinatorKeys: ["tx", ""]),
            version: version
        )
        #expect(transactions.coordinators.map(\.errorCode) == [0, ErrorCode.invalidRequest.rawValue])
        #expect(transactions.coordinators.map(\.nodeId) == [3, -1])
        let unknownType = try await test.send(
            FindCoordinatorRequest(keyType: 9, coordinatorKeys: ["x"]),
            version: version
        )
        #expect(unknownType.coordinators.map(\.errorCode) == [ErrorCode.invalidRequest.rawValue])
    }

    /// ListGroups v5 filters by group type: Fjord's groups are all "classic" (compared without case).
    @Test func listGroupsV5FiltersByType() async throws {
        let test = try await TestBroker.startForGroups()
        let joined = try await test.joinGroup(version: 9)
        _ = try await test.syncGroup(generation: joined.generationId, memberId: joined.memberId)
        let cases: [(types: [String], expected: [String])] = [
            ([], ["g"]), (["classic"], ["g"]), (["Classic", "consumer"], ["g"]), (["consumer"], []),
        ]
        for (types, expected) in cases {
            let listed = try await test.send(ListGroupsRequest(statesFilter: [], typesFilter: types), version: 5)
            #expect(listed.errorCode == 0)
            #expect(listed.groups.map(\.groupId) == expected, "types filter \(types)")
            #expect(listed.groups.allSatisfy { $0.groupType == "classic" && $0.groupState == "Stable" })
        }
        let stable = try await test.send(
            ListGroupsRequest(statesFilter: ["Empty"], typesFilter: ["classic"]),
            version: 5
        )
        #expect(stable.groups.isEmpty)
    }

    /// JoinGroup v8 and LeaveGroup v5 carry a reason, which changes nothing.
    @Test func reasonsAreAccepted() async throws {
        let test = try await TestBroker.startForGroups()
        var join = TestBroker.joinRequest(instance: "i")
        join.reason = "rebalance requested by test"
        let joined = try await test.send(join, version: 8)
        #expect(joined.errorCode == 0)
        let left = try await test.send(
            LeaveGroupRequest(
                groupId: "g",
                members: [.init(memberId: joined.memberId, groupInstanceId: "i", reason: "bye")]
            ),
            version: 5
        )
        #expect(left.errorCode == 0)
        #expect(left.members.map(\.errorCode) == [0])
    }
}

@Suite("Kafka 3.8 version ranges of ListOffsets, OffsetForLeaderEpoch, DescribeTopicPartitions")
struct PartitionVersionTests {
    static func listOffsetsV0(
        _ test: TestBroker,
        timestamp: Int64,
        maxNumOffsets: Int32,
        replicaId: Int32 = -1
    ) async throws -> ListOffsetsResponse.ListOffsetsPartitionResponse {
        let response = try await test.send(
            ListOffsetsRequest(
                replicaId: replicaId,
                topics: [
                    .init(
                        name: "t",
                        partitions: [.init(partitionIndex: 0, timestamp: timestamp, maxNumOffsets: maxNumOffsets)]
                    )
                ]
            ),
            version: 0
        )
        return response.topics[0].partitions[0]
    }

    /// ListOffsets v0 answers `old_style_offsets`: the log end and start offsets newest first,
    /// cut to max_num_offsets, from the latest one at or before the timestamp.
    @Test func listOffsetsV0AnswersOldStyleOffsets() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t")
        #expect(try await Self.listOffsetsV0(test, timestamp: -1, maxNumOffsets: 5).oldStyleOffsets == [0])
        _ = try await test.produce("t", batch: makeBatch(count: 3, timestamp: 1_000))
        let latest = try await Self.listOffsetsV0(test, timestamp: -1, maxNumOffsets: 1)
        #expect(latest.errorCode == 0)
        #expect(latest.oldStyleOffsets == [3])
        #expect(try await Self.listOffsetsV0(test, timestamp: -1, maxNumOffsets: 10).oldStyleOffsets == [3, 0])
        #expect(try await Self.listOffsetsV0(test, timestamp: -2, maxNumOffsets: 10).oldStyleOffsets == [0])
        // The log was last written at its newest record's time (1002): before that, nothing.
        #expect(try await Self.listOffsetsV0(test, timestamp: 500, maxNumOffsets: 10).oldStyleOffsets == [])
        #expect(try await Self.listOffsetsV0(test, timestamp: 1_500, maxNumOffsets: 10).oldStyleOffsets == [0])
        let unknown = try await test.send(
            ListOffsetsRequest(
                replicaId: -1,
                topics: [.init(name: "nope", partitions: [.init(partitionIndex: 0, timestamp: -1)])]
            ),
            version: 0
        )
        #expect(unknown.topics[0].partitions[0].errorCode == ErrorCode.unknownTopicOrPartition.rawValue)
    }

    /// ListOffsets -4 (earliest local) is the log start offset, -5 (latest tiered, v8) is -1 with
    /// epoch -1: nothing is tiered.
    @Test(arguments: [Int16(7), 8])
    func listOffsetsTieredTimestamps(version: Int16) async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t")
        _ = try await test.produce("t", batch: makeBatch(count: 4))
        let earliestLocal = try await test.listOffset("t", timestamp: -4, version: version)
        #expect(earliestLocal.errorCode == 0)
        #expect(earliestLocal.offset == 0)
        #expect(earliestLocal.leaderEpoch == 0)
        let latestTiered = try await test.listOffset("t", timestamp: -5, version: version)
        #expect(latestTiered.errorCode == 0)
        #expect(latestTiered.offset == -1)
        #expect(latestTiered.timestamp == -1)
        #expect(latestTiered.leaderEpoch == -1)
        #expect(try await test.listOffset("t", timestamp: -1, version: version).offset == 4)
    }

    static func endOffset(
        _ test: TestBroker,
        topic: String = "t",
        epoch: Int32,
        current: Int32 = -1,
        version: Int16
    ) async throws -> OffsetForLeaderEpochResponse.EpochEndOffset {
        let response = try await test.send(
            OffsetForLeaderEpochRequest(
                replicaId: -1,
                topics: [
                    .init(
                        topic: topic,
                        partitions: [.init(partition: 0, currentLeaderEpoch: current, leaderEpoch: epoch)]
                    )
                ]
            ),
            version: version
        )
        #expect(response.topics.map(\.topic) == [topic])
        return response.topics[0].partitions[0]
    }

    /// OffsetForLeaderEpoch: Fjord's one epoch (0) ends at the log end offset; a later epoch is
    /// unknown (-1, -1); a current leader epoch other than 0 is refused (v2+).
    @Test(arguments: [Int16(0), 1, 2, 3, 4])
    func offsetForLeaderEpoch(version: Int16) async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t")
        _ = try await test.produce("t", batch: makeBatch(count: 5))
        let current = try await Self.endOffset(test, epoch: 0, version: version)
        #expect(current.errorCode == 0)
        #expect(current.endOffset == 5)
        if version >= 1 { #expect(current.leaderEpoch == 0) }
        let later = try await Self.endOffset(test, epoch: 3, version: version)
        #expect(later.errorCode == 0)
        #expect(later.endOffset == -1)
        #expect(later.leaderEpoch == -1)
        let unknown = try await Self.endOffset(test, topic: "nope", epoch: 0, version: version)
        #expect(unknown.errorCode == ErrorCode.unknownTopicOrPartition.rawValue)
        guard version >= 2 else { return }
        #expect(try await Self.endOffset(test, epoch: 0, current: 0, version: version).endOffset == 5)
        let ahead = try await Self.endOffset(test, epoch: 0, current: 1, version: version)
        #expect(ahead.errorCode == ErrorCode.unknownLeaderEpoch.rawValue)
        #expect(ahead.endOffset == -1)
    }

    /// DescribeTopicPartitions lists topics in name order up to the partition limit, and the
    /// cursor it answers continues where it stopped.
    @Test func describeTopicPartitionsPagesWithACursor() async throws {
        let test = try await TestBroker.start { $0.nodeId = 2 }
        try await test.createTopic("a", partitions: 3)
        try await test.createTopic("b", partitions: 2)
        let first = try await test.send(
            DescribeTopicPartitionsRequest(topics: [], responsePartitionLimit: 4),
            version: 0
        )
        #expect(first.topics.map(\.name) == ["a", "b"])
        #expect(first.topics[0].partitions.map(\.partitionIndex) == [0, 1, 2])
        #expect(first.topics[1].partitions.map(\.partitionIndex) == [0])
        #expect(first.nextCursor == DescribeTopicPartitionsResponse.Cursor(topicName: "b", partitionIndex: 1))
        let partition = first.topics[0].partitions[0]
        #expect(partition.leaderId == 2)
        #expect(partition.leaderEpoch == 0)
        #expect(partition.replicaNodes == [2])
        #expect(partition.isrNodes == [2])
        #expect(partition.eligibleLeaderReplicas == [])
        #expect(partition.lastKnownElr == [])
        #expect(partition.offlineReplicas == [])
        #expect(first.topics[0].topicId == test.broker.registry.topic(named: "a")?.id)
        #expect(first.topics[0].topicAuthorizedOperations == Broker.topicAuthorizedOperations)

        let rest = try await test.send(
            DescribeTopicPartitionsRequest(
                topics: [],
                responsePartitionLimit: 4,
                cursor: .init(topicName: "b", partitionIndex: 1)
            ),
            version: 0
        )
        #expect(rest.topics.map(\.name) == ["b"])
        #expect(rest.topics[0].partitions.map(\.partitionIndex) == [1])
        #expect(rest.nextCursor == nil)
        // A limit that ends exactly at a topic's end points the cursor at the next topic.
        let exact = try await test.send(
            DescribeTopicPartitionsRequest(topics: [], responsePartitionLimit: 3),
            version: 0
        )
        #expect(exact.topics.map(\.name) == ["a"])
        #expect(exact.nextCursor == DescribeTopicPartitionsResponse.Cursor(topicName: "b", partitionIndex: 0))
    }

    /// Named topics are described in name order; unknown ones get UNKNOWN_TOPIC_OR_PARTITION, and
    /// a cursor outside the named topics is an invalid request.
    @Test func describeTopicPartitionsOfNamedTopics() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("a")
        try await test.createTopic("b")
        let named = try await test.send(
            DescribeTopicPartitionsRequest(topics: [
                .init(name: "b"), .init(name: "zz"), .init(name: "a"), .init(name: "b"),
            ]),
            version: 0
        )
        #expect(named.topics.map(\.name) == ["a", "b", "zz"])
        #expect(named.topics.map(\.errorCode) == [0, 0, ErrorCode.unknownTopicOrPartition.rawValue])
        #expect(named.topics[2].topicId == .zero)
        let badCursor = try await test.send(
            DescribeTopicPartitionsRequest(
                topics: [.init(name: "a")],
                cursor: .init(topicName: "b", partitionIndex: 0)
            ),
            version: 0
        )
        #expect(badCursor.topics.map(\.errorCode) == [ErrorCode.invalidRequest.rawValue])
    }

    /// ApiVersions advertises Kafka 3.8's whole ranges of the APIs issue 17 completed, and a
    /// version beyond them closes the connection.
    @Test func advertisedRangesAndBeyond() async throws {
        let test = try await TestBroker.start()
        let versions = try await test.send(ApiVersionsRequest(), version: 3)
        var ranges: [Int16: ClosedRange<Int16>] = [:]
        for key in versions.apiKeys { ranges[key.apiKey] = key.minVersion...key.maxVersion }
        let expected: [(ApiKey, ClosedRange<Int16>)] = [
            (.listOffsets, 0...8), (.offsetCommit, 0...9), (.offsetFetch, 0...9), (.findCoordinator, 0...5),
            (.joinGroup, 0...9), (.leaveGroup, 0...5), (.listGroups, 0...5), (.offsetForLeaderEpoch, 0...4),
            (.describeTopicPartitions, 0...0),
        ]
        for (key, range) in expected { #expect(ranges[key.rawValue] == range, "\(key.name)") }
        for (key, version) in [
            (ApiKey.offsetForLeaderEpoch, Int16(5)), (.describeTopicPartitions, 1), (.joinGroup, 10),
        ] {
            var frame = ByteBuffer()
            frame.writeInteger(key.rawValue)
            frame.writeInteger(version)
            frame.writeInteger(Int32(1))
            frame.writeInteger(Int16(-1))
            guard case .close(let reason) = await test.send(frame: frame) else {
                Issue.record("\(key.name) v\(version) was answered")
                continue
            }
            #expect(reason.contains("unsupported \(key.name) version \(version)"))
        }
    }
}
