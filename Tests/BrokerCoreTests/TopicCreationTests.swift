import CKStore
import KStoreFaulty
import Testing

@testable import BrokerCore
@testable import KafkaMessages
@testable import StorageHost

@Suite("Topic creation is atomic")
struct TopicCreationTests {
    /// A CreateTopics whose partitions cannot all be created (the backend refuses an open_log half
    /// way) fails with an error, leaves no partition log behind, and the same topic can be created
    /// once the backend works again; a restart over the same data directory works.
    @Test(arguments: [UInt64(7), 21, 99])
    func failedCreationLeavesNothingBehind(seed: UInt64) async throws {
        let storage = try HeldSyncStorage()
        defer { storage.remove() }
        let test = try await TestBroker.start(engine: storage.engine)
        // Half of the open_log calls answer BUSY (seeded): with 40 partitions the creation fails
        // after creating some of them.
        storage.setFaults(seed: seed, openLogBusyPpm: 500_000)
        let failed = try await test.send(
            CreateTopicsRequest(topics: [.init(name: "big", numPartitions: 40, replicationFactor: 1)], timeoutMs: 1000),
            version: 7
        ).topics[0]
        storage.setFaults(seed: seed, openLogBusyPpm: 0)
        #expect(failed.errorCode != ErrorCode.none.rawValue, "seed \(seed): creation should have failed")
        let left = try await storage.engine.listLogs().filter { $0.hasPrefix("big-") }
        #expect(left.isEmpty, "seed \(seed): partitions left behind: \(left)")
        #expect(test.broker.registry.topic(named: "big") == nil)

        try await test.createTopic("big", partitions: 40)
        #expect(try await storage.engine.listLogs().filter { $0.hasPrefix("big-") }.count == 40)
        await test.broker.shutdown()

        let restarted = try await TestBroker.start(engine: storage.engine)
        #expect(restarted.broker.registry.topic(named: "big")?.partitions.count == 40)
        await restarted.broker.shutdown()
        await storage.engine.close()
    }
}
