import CKStore
import Foundation
import KStoreFaulty
import Logging
import NIOCore
import StorageBackends
import Synchronization
import Testing

@testable import BrokerCore
@testable import KafkaMessages
@testable import StorageHost

/// The file backend wrapped in the faulty shim, whose sync completions a test can hold back.
final class HeldSyncStorage: Sendable {
    let engine: StorageEngine
    let directory: String

    init() throws {
        directory = NSTemporaryDirectory() + "fjord-held-sync-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let inner = try StorageBackend.builtin(named: "file").table.pointer
        // One shim table for the process: the shim has a fixed number of table slots.
        let table = try #require(Self.table(wrapping: inner))
        var logger = Logger(label: "held-sync")
        logger.logLevel = .warning
        engine = try StorageEngine.open(
            backend: StorageBackend(validating: table, origin: "faulty(file)"),
            options: [("path", directory)],
            logger: logger
        )
    }

    private static let tables = Mutex<UInt?>(nil)

    private static func table(wrapping inner: UnsafePointer<kstore_backend>) -> UnsafePointer<kstore_backend>? {
        let address = tables.withLock { address -> UInt? in
            if let address { return address }
            var config = kstore_faulty_config()
            config.struct_size = UInt32(MemoryLayout<kstore_faulty_config>.size)
            address = kstore_faulty_wrap(inner, &config).map { UInt(bitPattern: $0) }
            return address
        }
        return address.flatMap { UnsafePointer(bitPattern: $0) }
    }

    func holdSyncs() { precondition(engine.control(KSTORE_FAULTY_CONTROL_HOLD_SYNCS, nil) == KSTORE_OK) }
    func releaseSyncs() { precondition(engine.control(KSTORE_FAULTY_CONTROL_RELEASE_SYNCS, nil) == KSTORE_OK) }

    /// Replaces the shim's seeded failure schedule for this instance.
    func setFaults(seed: UInt64, openLogBusyPpm: UInt32) {
        var config = kstore_faulty_config()
        config.struct_size = UInt32(MemoryLayout<kstore_faulty_config>.size)
        config.seed = seed
        config.open_log_busy_ppm = openLogBusyPpm
        precondition(engine.control(KSTORE_FAULTY_CONTROL_SET_CONFIG, &config) == KSTORE_OK)
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }
}

/// Set once, read from any task.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .sequentiallyConsistent) }
    var isSet: Bool { value.load(ordering: .sequentiallyConsistent) }
}

/// Sends frames on one connection in a fixed order (the transport's order), so a later request's
/// answer proves the earlier ones were decided; `sequence` is the correlation id and says which
/// request of the connection each one is.
struct OrderedConnection {
    let test: TestBroker
    let connection: ConnectionInfo

    init(_ test: TestBroker) {
        self.test = test
        self.connection = test.newConnection()
    }

    /// A produce handed to the core; its answer is awaited separately.
    struct DispatchedProduce: Sendable {
        let reply: RequestReply
        let sequence: UInt64

        func result() async throws -> (Int16, Int64) {
            let outcome = await TestBroker.outcome(of: reply)
            let response = try TestBroker.decode(
                outcome,
                for: ProduceRequest.self,
                version: 9,
                correlationId: Int32(sequence)
            )
            let answer = response.responses[0].partitionResponses[0]
            return (answer.errorCode, answer.baseOffset)
        }
    }

    /// Hands a produce to the core now, in this connection's order.
    func dispatchProduce(_ topic: String, batch: ByteBuffer, acks: Int16, sequence: UInt64) async -> DispatchedProduce {
        let frame = TestBroker.frame(
            ProduceRequest(
                acks: acks,
                timeoutMs: 30_000,
                topicData: [.init(name: topic, partitionData: [.init(index: 0, records: batch)])]
            ),
            version: 9,
            correlationId: Int32(sequence)
        )
        return DispatchedProduce(reply: await test.dispatch(frame: frame, on: connection), sequence: sequence)
    }

    /// An ApiVersions request: answered only once every earlier request of the connection was decided.
    func barrier(sequence: UInt64) async throws {
        let frame = TestBroker.frame(ApiVersionsRequest(), version: 0, correlationId: Int32(sequence))
        let outcome = await TestBroker.outcome(of: await test.dispatch(frame: frame, on: connection))
        _ = try TestBroker.decode(outcome, for: ApiVersionsRequest.self, version: 0, correlationId: Int32(sequence))
    }
}

@Suite("What an acknowledgement means")
struct AcknowledgementTests {
    /// acks=all is answered only after the sync that covers the batch: with syncs held, the produce
    /// stays unanswered and the high watermark does not cover it; releasing them answers it.
    @Test func acksAllWaitsForTheSync() async throws {
        let storage = try HeldSyncStorage()
        defer { storage.remove() }
        let test = try await TestBroker.start(engine: storage.engine)
        try await test.createTopic("all")
        storage.holdSyncs()
        let connection = OrderedConnection(test)
        let answered = Flag()
        let dispatched = await connection.dispatchProduce("all", batch: makeBatch(count: 3), acks: -1, sequence: 0)
        let produce = Task {
            let result = try await dispatched.result()
            answered.set()
            return result
        }
        try await connection.barrier(sequence: 1)
        #expect(try await test.listOffset("all", timestamp: -1).offset == 0, "the watermark covers an unsynced batch")
        try await Task.sleep(for: .milliseconds(50))
        #expect(!answered.isSet, "acks=all was answered before its sync")
        storage.releaseSyncs()
        #expect(try await produce.value == (0, 0))
        #expect(try await test.listOffset("all", timestamp: -1).offset == 3)
        await test.broker.shutdown()
        await storage.engine.close()
    }

    /// acks=1 is answered when the batch is appended, without waiting for a sync.
    @Test func acksOneDoesNotWaitForASync() async throws {
        let storage = try HeldSyncStorage()
        defer { storage.remove() }
        let test = try await TestBroker.start(engine: storage.engine)
        try await test.createTopic("one")
        storage.holdSyncs()
        #expect(try await test.produce("one", batch: makeBatch(count: 2), acks: 1) == (0, 0))
        #expect(try await test.listOffset("one", timestamp: -1).offset == 2)
        storage.releaseSyncs()
        await test.broker.shutdown()
        await storage.engine.close()
    }

    /// A retry of an idempotent batch whose original still waits for its sync is answered with the
    /// original's outcome — not before that sync (it would acknowledge data a crash could lose).
    @Test func retryOfAnUnsyncedBatchWaitsForTheOriginalsSync() async throws {
        let storage = try HeldSyncStorage()
        defer { storage.remove() }
        let test = try await TestBroker.start(engine: storage.engine)
        try await test.createTopic("retry")
        storage.holdSyncs()
        let connection = OrderedConnection(test)
        let batch = makeBatch(count: 2, producerId: 5, producerEpoch: 0, baseSequence: 0)
        let retryAnswered = Flag()
        let dispatchedOriginal = await connection.dispatchProduce("retry", batch: batch, acks: -1, sequence: 0)
        let dispatchedRetry = await connection.dispatchProduce("retry", batch: batch, acks: -1, sequence: 1)
        let original = Task { try await dispatchedOriginal.result() }
        let retry = Task {
            let result = try await dispatchedRetry.result()
            retryAnswered.set()
            return result
        }
        try await connection.barrier(sequence: 2)
        try await Task.sleep(for: .milliseconds(50))
        #expect(!retryAnswered.isSet, "the retry was answered before the sync")
        storage.releaseSyncs()
        #expect(try await original.value == (0, 0))
        #expect(try await retry.value == (0, 0))
        #expect(try await test.listOffset("retry", timestamp: -1).offset == 2)
        await test.broker.shutdown()
        await storage.engine.close()
    }
}
