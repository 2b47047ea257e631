import Logging
import NIOCore
import StorageBackends
import StorageHost
import Synchronization
import Testing

@testable import BrokerCore
@testable import KafkaMessages
@testable import KafkaRecords

struct UnexpectedOutcome: Error, CustomStringConvertible {
    var description: String
}

/// A broker over a fresh memory-backend instance, and a client that talks to it through the
/// same entry point the transport uses (`handle(frame:context:)`), encoding real request frames.
final class TestBroker: Sendable {
    let engine: StorageEngine
    let broker: Broker
    private let nextSequence = Mutex<[UInt64: UInt64]>([:])
    private let nextConnection = Atomic<UInt64>(1)
    /// Per connection, the last pending request that held the order (see `dispatch`).
    private let holds = Mutex<[UInt64: PendingOutcome]>([:])

    static func start(
        engine: StorageEngine? = nil,
        metrics: BrokerMetrics = .disabled,
        configure: (inout BrokerConfiguration) -> Void = { _ in }
    ) async throws -> TestBroker {
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let engine = try engine ?? StorageEngine.open(backend: .builtin(named: "memory"), options: [], logger: logger)
        var configuration = BrokerConfiguration()
        configure(&configuration)
        let broker = try await Broker.start(
            configuration: configuration,
            storage: engine,
            logger: logger,
            metrics: metrics
        )
        return TestBroker(engine: engine, broker: broker)
    }

    private init(engine: StorageEngine, broker: Broker) {
        self.engine = engine
        self.broker = broker
    }

    func newConnection() -> ConnectionInfo {
        ConnectionInfo(id: nextConnection.add(1, ordering: .relaxed).newValue, remoteAddress: "test")
    }

    func takeSequence(_ connection: ConnectionInfo) -> UInt64 {
        nextSequence.withLock { sequences in
            defer { sequences[connection.id, default: 0] += 1 }
            return sequences[connection.id, default: 0]
        }
    }

    static func frame<R: KafkaRequestMessage>(_ request: R, version: Int16, correlationId: Int32) -> ByteBuffer {
        var frame = ByteBuffer()
        RequestHeader(
            requestApiKey: R.apiKey.rawValue,
            requestApiVersion: version,
            correlationId: correlationId,
            clientId: "core-tests"
        ).write(to: &frame, version: R.apiKey.requestHeaderVersion(for: version))
        request.write(to: &frame, version: version)
        return frame
    }

    /// Sends a raw frame on a connection and returns the outcome.
    func send(frame: ByteBuffer, on connection: ConnectionInfo? = nil) async -> RequestOutcome {
        await Self.outcome(of: await dispatch(frame: frame, on: connection ?? newConnection()))
    }

    /// Hands a frame to the core as the transport does: in the connection's order, one at a time,
    /// and not before a pending request that holds the order has released it. Returns the reply
    /// without waiting for a pending outcome, so a test can pipeline requests.
    func dispatch(frame: ByteBuffer, on connection: ConnectionInfo) async -> RequestReply {
        while true {
            if let hold = holds.withLock({ $0[connection.id] }), !hold.isOrderReleased {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    hold.whenOrderReleased { continuation.resume() }
                }
                continue
            }
            let reply = holds.withLock { holds -> RequestReply? in
                if let hold = holds[connection.id], !hold.isOrderReleased { return nil }
                let sequence = takeSequence(connection)
                let reply = broker.handle(
                    frame: frame,
                    context: RequestContext(connection: connection, sequence: sequence)
                )
                if case .later(let pending) = reply, pending.holdsOrder { holds[connection.id] = pending }
                return reply
            }
            if let reply { return reply }
        }
    }

    /// Waits for a reply's outcome and builds it.
    static func outcome(of reply: RequestReply) async -> RequestOutcome {
        switch reply {
        case .now(let outcome):
            return outcome
        case .later(let pending):
            return await withCheckedContinuation { (continuation: CheckedContinuation<RequestOutcome, Never>) in
                pending.whenComplete { builder in continuation.resume(returning: builder()) }
            }
        }
    }

    static func decode<R: KafkaRequestMessage>(
        _ outcome: RequestOutcome,
        for _: R.Type,
        version: Int16,
        correlationId: Int32
    )
        throws -> R.Response
    {
        guard case .respond(var buffer) = outcome else { throw UnexpectedOutcome(description: "\(outcome)") }
        let size = buffer.readInteger(as: Int32.self)
        #expect(Int(size ?? -1) == buffer.readableBytes)
        let header = try ResponseHeader(from: &buffer, version: R.apiKey.responseHeaderVersion(for: version))
        #expect(header.correlationId == correlationId)
        let response = try R.Response(from: &buffer, version: version)
        #expect(buffer.readableBytes == 0, "response has trailing bytes")
        return response
    }

    func send<R: KafkaRequestMessage>(
        _ request: R,
        version: Int16,
        on connection: ConnectionInfo? = nil
    ) async throws
        -> R.Response
    {
        let outcome = await send(frame: Self.frame(request, version: version, correlationId: 7), on: connection)
        return try Self.decode(outcome, for: R.self, version: version, correlationId: 7)
    }

    // MARK: Conveniences

    func createTopic(_ name: String, partitions: Int32 = 1, configs: [String: String] = [:]) async throws {
        let response = try await send(
            CreateTopicsRequest(
                topics: [
                    .init(
                        name: name,
                        numPartitions: partitions,
                        replicationFactor: 1,
                        configs: configs.map { .init(name: $0.key, value: $0.value) }
                    )
                ],
                timeoutMs: 1000
            ),
            version: 7
        )
        #expect(response.topics.first?.errorCode == 0, "\(response.topics.first?.errorMessage ?? "")")
    }

    /// Produces one batch and returns (error code, base offset).
    func produce(
        _ topic: String,
        partition: Int32 = 0,
        batch: ByteBuffer,
        acks: Int16 = -1,
        version: Int16 = 9,
        on connection: ConnectionInfo? = nil
    ) async throws -> (errorCode: Int16, baseOffset: Int64) {
        let response = try await send(
            ProduceRequest(
                acks: acks,
                timeoutMs: 30_000,
                topicData: [.init(name: topic, partitionData: [.init(index: partition, records: batch)])]
            ),
            version: version,
            on: connection
        )
        let answer = response.responses[0].partitionResponses[0]
        return (answer.errorCode, answer.baseOffset)
    }

    func listOffset(
        _ topic: String,
        partition: Int32 = 0,
        timestamp: Int64,
        version: Int16 = 7
    ) async throws
        -> ListOffsetsResponse.ListOffsetsPartitionResponse
    {
        let response = try await send(
            ListOffsetsRequest(
                replicaId: -1,
                topics: [.init(name: topic, partitions: [.init(partitionIndex: partition, timestamp: timestamp)])]
            ),
            version: version
        )
        return response.topics[0].partitions[0]
    }

    func fetch(
        _ topic: String,
        partition: Int32 = 0,
        offset: Int64,
        maxWaitMs: Int32 = 0,
        minBytes: Int32 = 1,
        partitionMaxBytes: Int32 = 1 << 20,
        version: Int16 = 12
    ) async throws -> FetchResponse.PartitionData {
        let response = try await send(
            FetchRequest(
                replicaId: -1,
                maxWaitMs: maxWaitMs,
                minBytes: minBytes,
                maxBytes: 50 << 20,
                topics: [
                    .init(
                        topic: topic,
                        partitions: [
                            .init(partition: partition, fetchOffset: offset, partitionMaxBytes: partitionMaxBytes)
                        ]
                    )
                ]
            ),
            version: version
        )
        return response.responses[0].partitions[0]
    }

    /// Every record of a partition from `offset` to the high watermark, with absolute offsets.
    func consumeAll(_ topic: String, partition: Int32 = 0, from offset: Int64 = 0) async throws -> [(Int64, Record)] {
        var records: [(Int64, Record)] = []
        var next = offset
        while true {
            let data = try await fetch(topic, partition: partition, offset: next)
            #expect(data.errorCode == 0)
            guard let bytes = data.records, bytes.readableBytes > 0 else { break }
            for batch in RecordBatchReader.batches(in: bytes) {
                let header = try RecordBatchHeader(parsing: batch)
                #expect(
                    CRC32C.checksum(batch.getSlice(at: batch.readerIndex + 21, length: batch.readableBytes - 21)!)
                        == header.crc
                )
                for record in try RecordBatchReader.records(of: batch, maxDecompressedBytes: 1 << 30) {
                    let absolute = header.baseOffset + Int64(record.offsetDelta)
                    if absolute >= next { records.append((absolute, record)) }
                }
                next = header.baseOffset + Int64(header.lastOffsetDelta) + 1
            }
            if next >= data.highWatermark { break }
        }
        return records
    }
}

/// A batch of `count` records with values "\(prefix)\(i)".
func makeBatch(
    count: Int,
    prefix: String = "m",
    timestamp: Int64 = 1_700_000_000_000,
    timestampStep: Int64 = 1,
    producerId: Int64 = -1,
    producerEpoch: Int16 = -1,
    baseSequence: Int32 = -1,
    compression: CompressionCodec = .none
) -> ByteBuffer {
    var builder = RecordBatchBuilder(
        compression: compression,
        producerId: producerId,
        producerEpoch: producerEpoch,
        baseSequence: baseSequence
    )
    for i in 0..<count {
        builder.append(
            key: ByteBuffer(string: "k\(i)"),
            value: ByteBuffer(string: "\(prefix)\(i)"),
            timestamp: timestamp + Int64(i) * timestampStep
        )
    }
    return builder.build()
}

func value(_ record: Record) -> String {
    record.value.map { String(buffer: $0) } ?? "<null>"
}
