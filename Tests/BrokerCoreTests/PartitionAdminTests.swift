import NIOCore
import StorageHost
import Testing

@testable import BrokerCore
@testable import KafkaMessages

@Suite("CreatePartitions, DeleteRecords, ElectLeaders, reassignments, DescribeCluster, DescribeLogDirs, OffsetDelete")
struct PartitionAdminTests {
    func createPartitions(
        _ test: TestBroker,
        _ topic: String,
        count: Int32,
        assignments: [[Int32]]? = nil,
        validateOnly: Bool = false,
        version: Int16 = 3
    ) async throws -> CreatePartitionsResponse.CreatePartitionsTopicResult {
        try await test.send(
            CreatePartitionsRequest(
                topics: [.init(name: topic, count: count, assignments: assignments?.map { .init(brokerIds: $0) })],
                timeoutMs: 1000,
                validateOnly: validateOnly
            ),
            version: version
        ).results[0]
    }

    /// CreatePartitions (every version) grows a topic: Metadata lists the new partitions, which take
    /// produces and fetches; validate-only changes nothing.
    @Test(arguments: [Int16(0), 1, 2, 3])
    func createPartitionsGrowsATopic(version: Int16) async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t", partitions: 2)
        let dry = try await createPartitions(test, "t", count: 3, validateOnly: true, version: version)
        #expect(dry.errorCode == 0)
        #expect(test.broker.registry.topic(named: "t")?.partitions.count == 2)
        let grown = try await createPartitions(test, "t", count: 5, assignments: [[1], [1], [1]], version: version)
        #expect(grown.errorCode == 0, "\(grown.errorMessage ?? "")")
        let meta = try await test.send(MetadataRequest(topics: [.init(name: "t")]), version: 12)
        #expect(meta.topics[0].partitions.map(\.partitionIndex) == [0, 1, 2, 3, 4])
        #expect(try await test.produce("t", partition: 4, batch: makeBatch(count: 3)) == (0, 0))
        #expect(try await test.consumeAll("t", partition: 4).count == 3)
    }

    /// Only growth is allowed, with assignments of one partition each on this broker.
    @Test func createPartitionsErrors() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t", partitions: 3)
        let cases: [(String, Int32, [[Int32]]?, ErrorCode, String?)] = [
            ("t", 3, nil, .invalidPartitions, "Topic already has 3 partition(s)."),
            ("t", 2, nil, .invalidPartitions, "The topic t currently has 3 partition(s); 2 would not be an increase."),
            (
                "t", 5, [[1]], .invalidReplicaAssignment,
                "Attempted to add 2 additional partition(s), but only 1 assignment(s) were specified."
            ),
            (
                "t", 4, [[2]], .invalidReplicaAssignment,
                "The manual partition assignment includes broker 2, but no such broker is registered."
            ),
            (
                "t", 4, [[]], .invalidReplicaAssignment,
                "The manual partition assignment includes an empty replica list."
            ),
            (
                "t", 4, [[1, 1]], .invalidReplicaAssignment,
                "The manual partition assignment includes the broker 1 more than once."
            ),
            ("missing", 4, nil, .unknownTopicOrPartition, nil),
            ("t", 20_000, nil, .invalidPartitions, nil),
        ]
        for (topic, count, assignments, code, message) in cases {
            let result = try await createPartitions(test, topic, count: count, assignments: assignments)
            #expect(result.errorCode == code.rawValue, "\(topic) \(count): \(result.errorMessage ?? "")")
            if let message { #expect(result.errorMessage == message) }
        }
        #expect(test.broker.registry.topic(named: "t")?.partitions.count == 3)
    }

    /// New partitions are in the metadata log: a restarted broker has them, with their data.
    @Test func addedPartitionsSurviveARestart() async throws {
        let first = try await TestBroker.start()
        try await first.createTopic("t", partitions: 1)
        #expect(try await createPartitions(first, "t", count: 3).errorCode == 0)
        _ = try await first.produce("t", partition: 2, batch: makeBatch(count: 4))
        await first.broker.shutdown()
        let second = try await TestBroker.start(engine: first.engine)
        #expect(second.broker.registry.topic(named: "t")?.partitions.count == 3)
        #expect(try await second.listOffset("t", partition: 2, timestamp: -1).offset == 4)
        // Deleting the grown topic removes every partition's log.
        _ = try await second.send(DeleteTopicsRequest(topicNames: ["t"], timeoutMs: 1000), version: 5)
        #expect(try await second.engine.listLogs().filter { $0.hasPrefix("t-") }.isEmpty)
    }

    func deleteRecords(
        _ test: TestBroker,
        _ topic: String,
        partition: Int32 = 0,
        before offset: Int64,
        version: Int16 = 2
    )
        async throws -> DeleteRecordsResponse.DeleteRecordsPartitionResult
    {
        try await test.send(
            DeleteRecordsRequest(
                topics: [.init(name: topic, partitions: [.init(partitionIndex: partition, offset: offset)])],
                timeoutMs: 1000
            ),
            version: version
        ).topics[0].partitions[0]
    }

    /// DeleteRecords (every version) moves the low watermark; fetches below it are out of range;
    /// -1 means the high watermark; beyond it is OFFSET_OUT_OF_RANGE; the start survives a restart.
    @Test(arguments: [Int16(0), 1, 2])
    func deleteRecordsMovesTheLowWatermark(version: Int16) async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t")
        for _ in 0..<4 { _ = try await test.produce("t", batch: makeBatch(count: 5)) }
        let deleted = try await deleteRecords(test, "t", before: 7, version: version)
        #expect(deleted.errorCode == 0)
        #expect(deleted.lowWatermark == 7)
        #expect(try await test.listOffset("t", timestamp: -2).offset == 7)
        #expect(try await test.fetch("t", offset: 3).errorCode == ErrorCode.offsetOutOfRange.rawValue)
        let records = try await test.consumeAll("t", from: 7)
        #expect(records.map(\.0) == Array(7..<20))
        // Below the start: no change, the low watermark is answered.
        #expect(try await deleteRecords(test, "t", before: 2, version: version).lowWatermark == 7)
        #expect(
            try await deleteRecords(test, "t", before: 21, version: version).errorCode
                == ErrorCode.offsetOutOfRange.rawValue
        )
        #expect(
            try await deleteRecords(test, "t", before: -5, version: version).errorCode
                == ErrorCode.offsetOutOfRange.rawValue
        )
        #expect(
            try await deleteRecords(test, "t", partition: 3, before: 1, version: version).errorCode
                == ErrorCode.unknownTopicOrPartition.rawValue
        )
        let all = try await deleteRecords(test, "t", before: -1, version: version)
        #expect(all.lowWatermark == 20)
        #expect(try await test.produce("t", batch: makeBatch(count: 1)).baseOffset == 20)
    }

    /// ElectLeaders: named partitions need no election; unknown ones are reported; all partitions
    /// (null) leaves nothing to report.
    @Test(arguments: [Int16(0), 1, 2])
    func electLeadersAnswersAsASingleBroker(version: Int16) async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t", partitions: 2)
        let named = try await test.send(
            ElectLeadersRequest(
                electionType: 0,
                topicPartitions: [.init(topic: "t", partitions: [0, 1, 9]), .init(topic: "x", partitions: [0])]
            ),
            version: version
        )
        #expect(named.errorCode == 0)
        #expect(named.replicaElectionResults[0].partitionResult.map(\.errorCode) == [84, 84, 3])
        #expect(named.replicaElectionResults[1].partitionResult.map(\.errorCode) == [3])
        let all = try await test.send(ElectLeadersRequest(electionType: 1, topicPartitions: nil), version: version)
        #expect(all.replicaElectionResults.isEmpty)
    }

    /// No reassignment is ever in progress; reassigning to this broker is a no-op success.
    @Test func partitionReassignments() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t", partitions: 1)
        let listed = try await test.send(ListPartitionReassignmentsRequest(timeoutMs: 1000, topics: nil), version: 0)
        #expect(listed.errorCode == 0)
        #expect(listed.topics.isEmpty)
        let altered = try await test.send(
            AlterPartitionReassignmentsRequest(
                timeoutMs: 1000,
                topics: [
                    .init(
                        name: "t",
                        partitions: [
                            .init(partitionIndex: 0, replicas: [1]), .init(partitionIndex: 0, replicas: [2]),
                            .init(partitionIndex: 0, replicas: nil), .init(partitionIndex: 5, replicas: [1]),
                        ]
                    ),
                    .init(name: "x", partitions: [.init(partitionIndex: 0, replicas: [1])]),
                ]
            ),
            version: 0
        )
        #expect(altered.responses[0].partitions.map(\.errorCode) == [0, 39, 85, 3])
        #expect(altered.responses[1].partitions.map(\.errorCode) == [3])
    }

    /// DescribeCluster names this broker as the only broker and the controller.
    @Test(arguments: [Int16(0), 1])
    func describeCluster(version: Int16) async throws {
        let test = try await TestBroker.start { $0.nodeId = 4 }
        let response = try await test.send(
            DescribeClusterRequest(includeClusterAuthorizedOperations: true),
            version: version
        )
        #expect(response.errorCode == 0)
        #expect(response.controllerId == 4)
        #expect(response.brokers.map(\.brokerId) == [4])
        #expect(response.clusterId == test.broker.clusterId)
        #expect(response.clusterAuthorizedOperations != Int32.min)
        if version >= 1 {
            let controllers = try await test.send(DescribeClusterRequest(endpointType: 2), version: 1)
            #expect(controllers.errorCode == ErrorCode.unsupportedEndpointType.rawValue)
        }
    }

    /// DescribeLogDirs lists partitions with their stored sizes (every version; v4 the volume).
    @Test(arguments: [Int16(0), 1, 2, 3, 4])
    func describeLogDirsReportsSizes(version: Int16) async throws {
        let test = try await TestBroker.start {
            $0.logDirectory = "/data/fjord"
            $0.logDirectoryUsage = { (totalBytes: 1000, usableBytes: 400) }
        }
        try await test.createTopic("a", partitions: 2)
        try await test.createTopic("b")
        let batch = makeBatch(count: 10)
        _ = try await test.produce("a", partition: 1, batch: batch)
        let all = try await test.send(DescribeLogDirsRequest(topics: nil), version: version)
        #expect(all.results.count == 1)
        let dir = all.results[0]
        #expect(dir.logDir == "/data/fjord")
        #expect(dir.topics.map(\.name) == ["a", "b"])
        #expect(dir.topics[0].partitions.map(\.partitionSize) == [0, Int64(batch.readableBytes)])
        if version >= 4 {
            #expect(dir.totalBytes == 1000)
            #expect(dir.usableBytes == 400)
        }
        let some = try await test.send(
            DescribeLogDirsRequest(topics: [
                .init(topic: "a", partitions: [1, 7]), .init(topic: "zz", partitions: [0]),
            ]),
            version: version
        )
        #expect(some.results[0].topics.map(\.name) == ["a"])
        #expect(some.results[0].topics[0].partitions.map(\.partitionIndex) == [1])
    }

    /// OffsetDelete removes an Empty group's offsets (durably), refuses unknown groups and topics,
    /// and keeps the offsets of topics an active consumer group subscribes to.
    @Test func offsetDelete() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t", partitions: 2)
        try await test.createTopic("u")
        let commit = try await test.send(
            OffsetCommitRequest(
                groupId: "g",
                generationIdOrMemberEpoch: -1,
                memberId: "",
                topics: [
                    .init(
                        name: "t",
                        partitions: [
                            .init(partitionIndex: 0, committedOffset: 5), .init(partitionIndex: 1, committedOffset: 6),
                        ]
                    ),
                    .init(name: "u", partitions: [.init(partitionIndex: 0, committedOffset: 7)]),
                ]
            ),
            version: 8
        )
        #expect(commit.topics.flatMap(\.partitions).allSatisfy { $0.errorCode == 0 })
        let deleted = try await test.send(
            OffsetDeleteRequest(
                groupId: "g",
                topics: [
                    .init(name: "t", partitions: [.init(partitionIndex: 0)]),
                    .init(name: "nope", partitions: [.init(partitionIndex: 0)]),
                ]
            ),
            version: 0
        )
        #expect(deleted.errorCode == 0)
        #expect(deleted.topics.map(\.name) == ["t", "nope"])
        #expect(deleted.topics.flatMap(\.partitions).map(\.errorCode) == [0, 3])
        let fetched = test.broker.groupCoordinator.fetchOffsets(groupId: "g", partitions: nil)
        #expect(
            fetched.keys.sorted() == [
                TopicPartition(topic: "t", partition: 1), TopicPartition(topic: "u", partition: 0),
            ]
        )
        let unknown = try await test.send(
            OffsetDeleteRequest(groupId: "other", topics: [.init(name: "t", partitions: [.init(partitionIndex: 0)])]),
            version: 0
        )
        #expect(unknown.errorCode == ErrorCode.groupIdNotFound.rawValue)
        await test.broker.shutdown()
        let restarted = try await TestBroker.start(engine: test.engine)
        #expect(restarted.broker.groupCoordinator.fetchOffsets(groupId: "g", partitions: nil).count == 2)
    }

    /// The topics of a ConsumerProtocolSubscription are read from its bytes; garbage gives nil.
    @Test func subscriptionTopicsParse() {
        let bytes: [UInt8] = [0, 1, 0, 0, 0, 2, 0, 1, 0x61, 0, 2, 0x62, 0x63, 0xff, 0xff, 0xff, 0xff]
        #expect(ClassicGroup.subscriptionTopics(bytes) == ["a", "bc"])
        #expect(ClassicGroup.subscriptionTopics([0, 1, 0, 0, 0, 9, 0]) == nil)
        #expect(ClassicGroup.subscriptionTopics([]) == nil)
    }
}
