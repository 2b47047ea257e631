import KafkaMessages
import KafkaWire
import NIOCore
import Testing

/// Produce v0 and Fetch v0 (the first generation) and Fetch v15-16 (replica state, node endpoints),
/// decoded from and re-encoded to bytes written by hand from Kafka 3.8's message definitions.
@Suite("Hand-built frames of the oldest and newest Produce and Fetch versions")
struct OldAndNewVersionFrameTests {
    static let set: [UInt8] = [0xDE, 0xAD, 0xBE, 0xEF]

    private func roundTrip<M: KafkaMessage & Equatable>(_ bytes: [UInt8], as type: M.Type, version: Int16) throws -> M {
        var buffer = ByteBuffer(bytes: bytes)
        let message = try M(from: &buffer, version: version)
        #expect(buffer.readableBytes == 0)
        var encoded = ByteBuffer()
        message.write(to: &encoded, version: version)
        #expect(Array(encoded.readableBytesView) == bytes)
        return message
    }

    /// Produce v0: Acks, TimeoutMs, [Name, [Index, Records]]; no transactional id.
    @Test func produceV0Request() throws {
        let bytes: [UInt8] =
            [0x00, 0x01, 0x00, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x74]
            + [0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x04] + Self.set
        let request = try roundTrip(bytes, as: ProduceRequest.self, version: 0)
        #expect(request.acks == 1 && request.timeoutMs == 1000 && request.transactionalId == nil)
        #expect(request.topicData.map(\.name) == ["t"])
        #expect(request.topicData[0].partitionData[0].index == 2)
        #expect(request.topicData[0].partitionData[0].records.map { Array($0.readableBytesView) } == Self.set)
    }

    /// Produce v0 response: [Name, [Index, ErrorCode, BaseOffset]]; no throttle time, no append time.
    @Test func produceV0Response() throws {
        let bytes: [UInt8] = [
            0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x74, 0x00, 0x00, 0x00, 0x01,
            0x00, 0x00, 0x00, 0x02, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2A,
        ]
        let response = try roundTrip(bytes, as: ProduceResponse.self, version: 0)
        let partition = response.responses[0].partitionResponses[0]
        #expect(partition.index == 2 && partition.errorCode == 2 && partition.baseOffset == 42)
    }

    /// Fetch v0: ReplicaId, MaxWaitMs, MinBytes, [Topic, [Partition, FetchOffset, PartitionMaxBytes]].
    @Test func fetchV0Request() throws {
        let bytes: [UInt8] = [
            0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x01, 0xF4, 0x00, 0x00, 0x00, 0x01,
            0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x74, 0x00, 0x00, 0x00, 0x01,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x10, 0x00, 0x00,
        ]
        let request = try roundTrip(bytes, as: FetchRequest.self, version: 0)
        #expect(request.replicaId == -1 && request.maxWaitMs == 500 && request.minBytes == 1)
        #expect(request.topics[0].topic == "t")
        #expect(request.topics[0].partitions[0].fetchOffset == 7)
        #expect(request.topics[0].partitions[0].partitionMaxBytes == 1 << 20)
    }

    /// Fetch v0 response: [Topic, [PartitionIndex, ErrorCode, HighWatermark, Records]]; no throttle.
    @Test func fetchV0Response() throws {
        let bytes: [UInt8] =
            [0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x74, 0x00, 0x00, 0x00, 0x01]
            + [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09]
            + [0x00, 0x00, 0x00, 0x04] + Self.set
        let response = try roundTrip(bytes, as: FetchResponse.self, version: 0)
        let partition = response.responses[0].partitions[0]
        #expect(response.responses[0].topic == "t" && partition.highWatermark == 9)
        #expect(partition.records.map { Array($0.readableBytesView) } == Self.set)
    }

    /// Fetch v15 (flexible, topic ids): no ReplicaId field; ReplicaState is tagged field 1.
    @Test func fetchV15RequestCarriesReplicaStateTagged() throws {
        let topicId: [UInt8] = Array(1...16)
        let bytes: [UInt8] =
            [0x00, 0x00, 0x01, 0xF4, 0x00, 0x00, 0x00, 0x01, 0x7F, 0xFF, 0xFF, 0xFF, 0x00]  // wait, min, max, isolation
            + [0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF]  // session id 0, epoch -1
            + [0x02] + topicId + [0x02]  // one topic, its id, one partition
            + [0x00, 0x00, 0x00, 0x03, 0xFF, 0xFF, 0xFF, 0xFF]  // partition 3, current leader epoch -1
            + [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0xFF, 0xFF, 0xFF, 0xFF]  // fetch offset 5, last epoch -1
            + [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x10, 0x00, 0x00, 0x00]  // log start -1, max bytes, tags
            + [0x00, 0x01, 0x01]  // topic tags; no forgotten topics; rack ""
            + [0x01, 0x01, 0x0D, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00]
        let request = try roundTrip(bytes, as: FetchRequest.self, version: 15)
        #expect(request.replicaState == .init(replicaId: 7, replicaEpoch: 2))
        #expect(
            request.topics[0].topicId
                == KafkaUUID(mostSignificantBits: 0x0102_0304_0506_0708, leastSignificantBits: 0x090A_0B0C_0D0E_0F10)
        )
        #expect(request.topics[0].partitions[0].partition == 3 && request.topics[0].partitions[0].fetchOffset == 5)
    }

    /// Fetch v16 response: NodeEndpoints is top-level tagged field 0 (KIP-951).
    @Test func fetchV16ResponseCarriesNodeEndpointsTagged() throws {
        let bytes: [UInt8] =
            [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]  // throttle, error, session id
            + [0x01]  // no topic responses
            // one tagged field: tag 0, 13 bytes: one endpoint (node 1, host "h", port 9092, rack null, no tags)
            + [0x01, 0x00, 0x0D, 0x02, 0x00, 0x00, 0x00, 0x01, 0x02, 0x68, 0x00, 0x00, 0x23, 0x84, 0x00, 0x00]
        let response = try roundTrip(bytes, as: FetchResponse.self, version: 16)
        #expect(response.nodeEndpoints == [.init(nodeId: 1, host: "h", port: 9092, rack: nil)])
    }
}
