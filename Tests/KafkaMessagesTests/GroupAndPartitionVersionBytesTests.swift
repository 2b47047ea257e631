import KafkaMessages
import NIOCore
import Testing

/// Bytes written by hand from Kafka 3.8's message definitions (clients/src/main/resources/common/
/// message/*.json), independent of the generator: classic fields big-endian with int16 string and
/// int32 array lengths; flexible ones with unsigned-varint lengths plus one, and a tagged-field
/// count after every struct.
private struct Wire {
    var bytes: [UInt8] = []

    mutating func int8(_ value: Int8) { bytes.append(UInt8(bitPattern: value)) }
    mutating func int16(_ value: Int16) { withUnsafeBytes(of: value.bigEndian) { bytes += $0 } }
    mutating func int32(_ value: Int32) { withUnsafeBytes(of: value.bigEndian) { bytes += $0 } }
    mutating func int64(_ value: Int64) { withUnsafeBytes(of: value.bigEndian) { bytes += $0 } }
    mutating func bool(_ value: Bool) { bytes.append(value ? 1 : 0) }
    /// Classic string (nil: length -1).
    mutating func string(_ value: String?) {
        guard let value else { return int16(-1) }
        int16(Int16(value.utf8.count))
        bytes += value.utf8
    }
    /// Compact string (nil: length 0).
    mutating func compact(_ value: String?) {
        guard let value else { return bytes.append(0) }
        bytes.append(UInt8(value.utf8.count + 1))
        bytes += value.utf8
    }
    mutating func count(_ value: Int) { int32(Int32(value)) }
    mutating func compactCount(_ value: Int?) { bytes.append(UInt8((value ?? -1) + 1)) }
    mutating func tags() { bytes.append(0) }

    var buffer: ByteBuffer { ByteBuffer(bytes: bytes) }
}

/// Decodes `wire` as `M` at `version`, expects it to equal `expected` and to consume the bytes,
/// and expects `expected` to encode to the same bytes.
private func expectRoundTrip<M: KafkaMessage>(_ expected: M, version: Int16, _ wire: Wire) throws {
    var buffer = wire.buffer
    let decoded = try M(from: &buffer, version: version)
    #expect(decoded == expected)
    #expect(buffer.readableBytes == 0)
    var written = ByteBuffer()
    expected.write(to: &written, version: version)
    #expect(Array(written.readableBytesView) == wire.bytes)
}

@Suite("Hand-built bytes of the issue 17 group and partition versions")
struct GroupAndPartitionVersionBytesTests {
    @Test func offsetCommitV0AndV1() throws {
        var v0 = Wire()
        v0.string("g")
        v0.count(1)
        v0.string("t")
        v0.count(1)
        v0.int32(2)
        v0.int64(40)
        v0.string(nil)
        try expectRoundTrip(
            OffsetCommitRequest(
                groupId: "g",
                topics: [
                    .init(
                        name: "t",
                        partitions: [.init(partitionIndex: 2, committedOffset: 40, committedMetadata: nil)]
                    )
                ]
            ),
            version: 0,
            v0
        )
        var v1 = Wire()
        v1.string("g")
        v1.int32(5)
        v1.string("m")
        v1.count(1)
        v1.string("t")
        v1.count(1)
        v1.int32(0)
        v1.int64(7)
        v1.int64(1_234)
        v1.string("md")
        try expectRoundTrip(
            OffsetCommitRequest(
                groupId: "g",
                generationIdOrMemberEpoch: 5,
                memberId: "m",
                topics: [
                    .init(
                        name: "t",
                        partitions: [
                            .init(
                                partitionIndex: 0,
                                committedOffset: 7,
                                commitTimestamp: 1_234,
                                committedMetadata: "md"
                            )
                        ]
                    )
                ]
            ),
            version: 1,
            v1
        )
        // The response of v0-2 has no throttle time.
        var response = Wire()
        response.count(1)
        response.string("t")
        response.count(1)
        response.int32(0)
        response.int16(25)
        try expectRoundTrip(
            OffsetCommitResponse(topics: [.init(name: "t", partitions: [.init(partitionIndex: 0, errorCode: 25)])]),
            version: 0,
            response
        )
    }

    @Test func offsetCommitV9() throws {
        var wire = Wire()
        wire.compact("g")
        wire.int32(3)
        wire.compact("m")
        wire.compact(nil)
        wire.compactCount(1)
        wire.compact("t")
        wire.compactCount(1)
        wire.int32(1)
        wire.int64(99)
        wire.int32(0)
        wire.compact("")
        wire.tags()
        wire.tags()
        wire.tags()
        try expectRoundTrip(
            OffsetCommitRequest(
                groupId: "g",
                generationIdOrMemberEpoch: 3,
                memberId: "m",
                groupInstanceId: nil,
                topics: [
                    .init(
                        name: "t",
                        partitions: [
                            .init(
                                partitionIndex: 1,
                                committedOffset: 99,
                                committedLeaderEpoch: 0,
                                committedMetadata: ""
                            )
                        ]
                    )
                ]
            ),
            version: 9,
            wire
        )
    }

    @Test func offsetFetchV0() throws {
        var request = Wire()
        request.string("g")
        request.count(1)
        request.string("t")
        request.count(2)
        request.int32(0)
        request.int32(1)
        try expectRoundTrip(
            OffsetFetchRequest(groupId: "g", topics: [.init(name: "t", partitionIndexes: [0, 1])]),
            version: 0,
            request
        )
        // v0-1: no throttle time, no leader epoch, no top-level error.
        var response = Wire()
        response.count(1)
        response.string("t")
        response.count(1)
        response.int32(0)
        response.int64(12)
        response.string("")
        response.int16(0)
        try expectRoundTrip(
            OffsetFetchResponse(
                topics: [
                    .init(
                        name: "t",
                        partitions: [.init(partitionIndex: 0, committedOffset: 12, metadata: "", errorCode: 0)]
                    )
                ]
            ),
            version: 0,
            response
        )
    }

    @Test func offsetFetchV9Groups() throws {
        var request = Wire()
        request.compactCount(2)
        request.compact("a")
        request.compact("member")
        request.int32(4)
        request.compactCount(1)
        request.compact("t")
        request.compactCount(1)
        request.int32(0)
        request.tags()
        request.tags()
        request.compact("b")
        request.compact(nil)
        request.int32(-1)
        request.compactCount(nil)
        request.tags()
        request.bool(true)
        request.tags()
        try expectRoundTrip(
            OffsetFetchRequest(
                groups: [
                    .init(
                        groupId: "a",
                        memberId: "member",
                        memberEpoch: 4,
                        topics: [.init(name: "t", partitionIndexes: [0])]
                    ),
                    .init(groupId: "b", memberId: nil, memberEpoch: -1, topics: nil),
                ],
                requireStable: true
            ),
            version: 9,
            request
        )
        var response = Wire()
        response.int32(0)
        response.compactCount(1)
        response.compact("a")
        response.compactCount(1)
        response.compact("t")
        response.compactCount(1)
        response.int32(0)
        response.int64(8)
        response.int32(-1)
        response.compact("")
        response.int16(0)
        response.tags()
        response.tags()
        response.int16(0)
        response.tags()
        response.tags()
        try expectRoundTrip(
            OffsetFetchResponse(
                groups: [
                    .init(
                        groupId: "a",
                        topics: [
                            .init(
                                name: "t",
                                partitions: [
                                    .init(
                                        partitionIndex: 0,
                                        committedOffset: 8,
                                        committedLeaderEpoch: -1,
                                        metadata: "",
                                        errorCode: 0
                                    )
                                ]
                            )
                        ],
                        errorCode: 0
                    )
                ]
            ),
            version: 8,
            response
        )
    }

    @Test func listOffsetsV0() throws {
        var request = Wire()
        request.int32(-1)
        request.count(1)
        request.string("t")
        request.count(1)
        request.int32(0)
        request.int64(-1)
        request.int32(3)
        try expectRoundTrip(
            ListOffsetsRequest(
                replicaId: -1,
                topics: [.init(name: "t", partitions: [.init(partitionIndex: 0, timestamp: -1, maxNumOffsets: 3)])]
            ),
            version: 0,
            request
        )
        var response = Wire()
        response.count(1)
        response.string("t")
        response.count(1)
        response.int32(0)
        response.int16(0)
        response.count(2)
        response.int64(9)
        response.int64(0)
        try expectRoundTrip(
            ListOffsetsResponse(
                topics: [
                    .init(name: "t", partitions: [.init(partitionIndex: 0, errorCode: 0, oldStyleOffsets: [9, 0])])
                ]
            ),
            version: 0,
            response
        )
    }

    @Test func findCoordinatorV4() throws {
        var request = Wire()
        request.int8(0)
        request.compactCount(2)
        request.compact("a")
        request.compact("b")
        request.tags()
        try expectRoundTrip(FindCoordinatorRequest(keyType: 0, coordinatorKeys: ["a", "b"]), version: 4, request)
        var response = Wire()
        response.int32(0)
        response.compactCount(1)
        response.compact("a")
        response.int32(1)
        response.compact("h")
        response.int32(9092)
        response.int16(0)
        response.compact(nil)
        response.tags()
        response.tags()
        try expectRoundTrip(
            FindCoordinatorResponse(
                coordinators: [.init(key: "a", nodeId: 1, host: "h", port: 9092, errorCode: 0, errorMessage: nil)]
            ),
            version: 5,
            response
        )
    }

    @Test func joinGroupV9AndLeaveGroupV5AndListGroupsV5() throws {
        var join = Wire()
        join.compact("g")
        join.int32(10_000)
        join.int32(20_000)
        join.compact("")
        join.compact(nil)
        join.compact("consumer")
        join.compactCount(1)
        join.compact("range")
        join.bytes += [2, 7]  // Compact bytes: length 1, then the byte.
        join.tags()
        join.compact("why")
        join.tags()
        try expectRoundTrip(
            JoinGroupRequest(
                groupId: "g",
                sessionTimeoutMs: 10_000,
                rebalanceTimeoutMs: 20_000,
                memberId: "",
                groupInstanceId: nil,
                protocolType: "consumer",
                protocols: [.init(name: "range", metadata: [7])],
                reason: "why"
            ),
            version: 8,
            join
        )
        var joined = Wire()
        joined.int32(0)
        joined.int16(0)
        joined.int32(1)
        joined.compact("consumer")
        joined.compact("range")
        joined.compact("old")
        joined.bool(true)
        joined.compact("new")
        joined.compactCount(1)
        joined.compact("new")
        joined.compact("i")
        joined.bytes += [1]  // Empty compact bytes.
        joined.tags()
        joined.tags()
        try expectRoundTrip(
            JoinGroupResponse(
                generationId: 1,
                protocolType: "consumer",
                protocolName: "range",
                leader: "old",
                skipAssignment: true,
                memberId: "new",
                members: [.init(memberId: "new", groupInstanceId: "i", metadata: [])]
            ),
            version: 9,
            joined
        )
        var leave = Wire()
        leave.compact("g")
        leave.compactCount(1)
        leave.compact("m")
        leave.compact(nil)
        leave.compact("bye")
        leave.tags()
        leave.tags()
        try expectRoundTrip(
            LeaveGroupRequest(groupId: "g", members: [.init(memberId: "m", groupInstanceId: nil, reason: "bye")]),
            version: 5,
            leave
        )
        var list = Wire()
        list.compactCount(1)
        list.compact("Stable")
        list.compactCount(1)
        list.compact("classic")
        list.tags()
        try expectRoundTrip(ListGroupsRequest(statesFilter: ["Stable"], typesFilter: ["classic"]), version: 5, list)
        var listed = Wire()
        listed.int32(0)
        listed.int16(0)
        listed.compactCount(1)
        listed.compact("g")
        listed.compact("consumer")
        listed.compact("Stable")
        listed.compact("classic")
        listed.tags()
        listed.tags()
        try expectRoundTrip(
            ListGroupsResponse(
                groups: [.init(groupId: "g", protocolType: "consumer", groupState: "Stable", groupType: "classic")]
            ),
            version: 5,
            listed
        )
    }

    @Test func offsetForLeaderEpochV0AndV4() throws {
        var v0 = Wire()
        v0.count(1)
        v0.string("t")
        v0.count(1)
        v0.int32(0)
        v0.int32(2)
        try expectRoundTrip(
            OffsetForLeaderEpochRequest(topics: [.init(topic: "t", partitions: [.init(partition: 0, leaderEpoch: 2)])]),
            version: 0,
            v0
        )
        var v0Response = Wire()
        v0Response.count(1)
        v0Response.string("t")
        v0Response.count(1)
        v0Response.int16(0)
        v0Response.int32(0)
        v0Response.int64(17)
        try expectRoundTrip(
            OffsetForLeaderEpochResponse(topics: [
                .init(topic: "t", partitions: [.init(errorCode: 0, partition: 0, endOffset: 17)])
            ]),
            version: 0,
            v0Response
        )
        var v4 = Wire()
        v4.int32(-1)
        v4.compactCount(1)
        v4.compact("t")
        v4.compactCount(1)
        v4.int32(0)
        v4.int32(0)
        v4.int32(0)
        v4.tags()
        v4.tags()
        v4.tags()
        try expectRoundTrip(
            OffsetForLeaderEpochRequest(
                replicaId: -1,
                topics: [.init(topic: "t", partitions: [.init(partition: 0, currentLeaderEpoch: 0, leaderEpoch: 0)])]
            ),
            version: 4,
            v4
        )
        var v4Response = Wire()
        v4Response.int32(0)
        v4Response.compactCount(1)
        v4Response.compact("t")
        v4Response.compactCount(1)
        v4Response.int16(0)
        v4Response.int32(0)
        v4Response.int32(0)
        v4Response.int64(17)
        v4Response.tags()
        v4Response.tags()
        v4Response.tags()
        try expectRoundTrip(
            OffsetForLeaderEpochResponse(
                topics: [
                    .init(topic: "t", partitions: [.init(errorCode: 0, partition: 0, leaderEpoch: 0, endOffset: 17)])
                ]
            ),
            version: 4,
            v4Response
        )
    }

    @Test func describeTopicPartitionsV0() throws {
        var request = Wire()
        request.compactCount(1)
        request.compact("t")
        request.tags()
        request.int32(100)
        request.int8(1)  // A present nullable struct.
        request.compact("t")
        request.int32(2)
        request.tags()
        request.tags()
        try expectRoundTrip(
            DescribeTopicPartitionsRequest(
                topics: [.init(name: "t")],
                responsePartitionLimit: 100,
                cursor: .init(topicName: "t", partitionIndex: 2)
            ),
            version: 0,
            request
        )
        let id = KafkaUUID(mostSignificantBits: 0x0102_0304_0506_0708, leastSignificantBits: 0x090A_0B0C_0D0E_0F10)
        var response = Wire()
        response.int32(0)
        response.compactCount(1)
        response.int16(0)
        response.compact("t")
        response.bytes += Array(1...16)
        response.bool(false)
        response.compactCount(1)
        response.int16(0)
        response.int32(2)
        response.int32(1)
        response.int32(0)
        response.compactCount(1)
        response.int32(1)
        response.compactCount(1)
        response.int32(1)
        response.compactCount(0)
        response.compactCount(nil)
        response.compactCount(0)
        response.tags()
        response.int32(3_576)
        response.tags()
        response.int8(-1)  // No next cursor.
        response.tags()
        try expectRoundTrip(
            DescribeTopicPartitionsResponse(
                topics: [
                    .init(
                        errorCode: 0,
                        name: "t",
                        topicId: id,
                        isInternal: false,
                        partitions: [
                            .init(
                                partitionIndex: 2,
                                leaderId: 1,
                                leaderEpoch: 0,
                                replicaNodes: [1],
                                isrNodes: [1],
                                eligibleLeaderReplicas: [],
                                lastKnownElr: nil,
                                offlineReplicas: []
                            )
                        ],
                        topicAuthorizedOperations: 3_576
                    )
                ],
                nextCursor: nil
            ),
            version: 0,
            response
        )
    }
}
