import KafkaMessages
import Logging
import NIOCore
import StorageHost
import Synchronization

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Broker-wide settings (the `fjord` command line maps onto these).
public struct BrokerConfiguration: Sendable {
    /// This broker's node id in Metadata responses.
    public var nodeId: Int32 = 1
    /// Host and port clients are told to connect to (Metadata brokers list).
    public var advertisedHost: String = "127.0.0.1"
    public var advertisedPort: Int32 = 9092
    /// Create unknown topics on Metadata (when the client allows it) and Produce, as Kafka does.
    public var autoCreateTopics: Bool = true
    /// Partition count of auto-created topics and of CreateTopics with NumPartitions -1.
    public var defaultPartitions: Int32 = 1
    /// `message.max.bytes`: the largest record batch accepted (Kafka's default, 1 MiB + 12).
    public var messageMaxBytes: Int32 = 1_048_588
    /// `fetch.max.bytes`: the most record bytes one Fetch response carries (Kafka's default).
    public var fetchMaxBytes: Int32 = 57_671_680
    /// `num.partitions` upper bound for one CreateTopics request: a guard against typos.
    public var partitionsPerTopicMax: Int32 = 10_000
    /// Broker defaults of the retention and segment topic configs (`log.retention.ms`, …).
    public var retentionMs: Int64 = 604_800_000
    public var retentionBytes: Int64 = -1
    public var segmentBytes: Int32 = 1_073_741_824
    public var segmentMs: Int64 = 604_800_000
    /// `producer.id.expiration.ms`: idle idempotent producers are forgotten after this.
    public var producerIdExpirationMs: Int64 = 86_400_000
    /// How many offsets at the end of each partition are re-read at startup to rebuild
    /// idempotent-producer state (retries of batches older than that are not recognized).
    public var producerStateRecoveryOffsets: Int64 = 10_000
    /// `log.retention.check.interval.ms`: how often retention is applied (Kafka's default).
    public var retentionCheckIntervalMs: Int64 = 300_000
    /// How often appends not yet covered by a sync (acks=0/1 on a durable backend) are synced:
    /// the most such data a power loss can take. acks=all is always synced before it is answered.
    public var flushIntervalMs: Int64 = 1_000
    /// `group.initial.rebalance.delay.ms`: the first rebalance of an empty group waits this long
    /// for more members (Kafka's default is 3000; Fjord's lets a lone consumer start at once).
    public var groupInitialRebalanceDelayMs: Int32 = 100
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms` (Kafka's defaults).
    public var groupMinSessionTimeoutMs: Int32 = 6000
    public var groupMaxSessionTimeoutMs: Int32 = 1_800_000
    /// `group.max.size`: members per group.
    public var groupMaxSize: Int32 = 1000
    /// `offset.metadata.max.bytes`: the longest metadata string an offset commit may carry.
    public var offsetMetadataMaxBytes: Int32 = 4096
    /// The committed-offsets log is compacted once it holds at least this many offset records (and
    /// twice as many as there are live offsets).
    public var offsetsCompactionThresholdRecords: Int = 10_000
    /// `transaction.max.timeout.ms`: the longest transaction timeout a producer may ask for.
    public var transactionMaxTimeoutMs: Int32 = 900_000
    /// `transactional.id.expiration.ms`: idle transactional ids are forgotten after this.
    public var transactionalIdExpirationMs: Int64 = 604_800_000
    /// The transaction state and aborted-transaction index logs are compacted once they hold at
    /// least this many entries (and twice as many as are live).
    public var transactionLogCompactionThresholdEntries: Int = 10_000
    /// Wall-clock milliseconds since the epoch (record timestamps, producer expiry, transaction
    /// timeouts); tests inject one.
    public var clock: @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }
    /// The Kafka names of the configs the operator set (`setStatic`): DescribeConfigs reports them
    /// as STATIC_BROKER_CONFIG, the others as DEFAULT_CONFIG.
    public internal(set) var staticConfigNames: Set<String> = []
    /// Broker configs without a typed field, by Kafka name (`BrokerConfigs.stored`).
    public internal(set) var untypedConfigs: [String: String] = [:]
    /// The absolute path of the data directory (DescribeLogDirs' log dir); nil reports "./data".
    public var logDirectory: String?
    /// Size and free space of the volume holding the log directory, in bytes (DescribeLogDirs v4);
    /// the executable measures it, the core does no file-system calls of its own.
    public var logDirectoryUsage: @Sendable () -> (totalBytes: Int64, usableBytes: Int64)? = { nil }

    public init() {}
}

/// The sans-I/O Kafka broker: decodes requests, runs handlers over partitions stored through
/// `StorageHost`, encodes responses. The transport (BrokerServer) owns sockets and framing.
public final class Broker: KafkaRequestHandler {
    /// Fjord is a single broker: every partition has one replica and its leader epoch never changes.
    static let leaderEpoch: Int32 = 0

    public let configuration: BrokerConfiguration
    let logger: Logger
    let storage: StorageEngine
    let registry: TopicRegistry
    let metadata: MetadataManager
    /// The broker configs in their layers (static, dynamic defaults, this broker's dynamic ones).
    let configs: BrokerConfigStore
    let groupCoordinator: GroupCoordinator
    let transactionCoordinator: TransactionCoordinator
    let clusterId: String
    let allocator = ByteBufferAllocator()
    /// The instruments the core records through (`BrokerMetrics.disabled` records nothing).
    public let metrics: BrokerMetrics

    private let shuttingDown = Atomic<Bool>(false)
    private let maintenance = Mutex<[Task<Void, Never>]>([])

    /// Opens the broker over an open storage engine: replays the metadata log, opens every
    /// partition's log and restores its state from what the backend recovered.
    public static func start(
        configuration: BrokerConfiguration,
        storage: StorageEngine,
        logger: Logger,
        metrics: BrokerMetrics = .disabled
    ) async throws -> Broker {
        let registry = TopicRegistry()
        let configs = BrokerConfigStore(configuration)
        let metadata = try await MetadataManager.open(
            storage: storage,
            registry: registry,
            configs: configs,
            logger: logger
        )
        let groupCoordinator = try await openGroupCoordinator(configuration, storage, registry, metadata, logger)
        let transactionCoordinator = try await openTransactionCoordinator(
            configuration,
            storage,
            registry,
            metadata,
            groupCoordinator,
            logger
        )
        let broker = Broker(
            configuration: configuration,
            logger: logger,
            storage: storage,
            registry: registry,
            metadata: metadata,
            configs: configs,
            coordinators: (groupCoordinator, transactionCoordinator),
            clusterId: metadata.clusterId,
            metrics: metrics
        )
        // A crash between a topic's deletion and its offsets' deletion leaves offsets of a topic
        // that no longer exists: drop them now.
        let gone = groupCoordinator.topicsWithOffsets.filter { registry.topic(named: $0) == nil }
        if !gone.isEmpty { await groupCoordinator.deleteOffsets(ofTopics: gone.sorted()) }
        broker.startMaintenance()
        return broker
    }

    private init(
        configuration: BrokerConfiguration,
        logger: Logger,
        storage: StorageEngine,
        registry: TopicRegistry,
        metadata: MetadataManager,
        configs: BrokerConfigStore,
        coordinators: (groups: GroupCoordinator, transactions: TransactionCoordinator),
        clusterId: String,
        metrics: BrokerMetrics
    ) {
        self.configuration = configuration
        self.logger = logger
        self.storage = storage
        self.registry = registry
        self.metadata = metadata
        self.configs = configs
        self.groupCoordinator = coordinators.groups
        self.transactionCoordinator = coordinators.transactions
        self.clusterId = clusterId
        self.metrics = metrics
    }

    var nowMs: Int64 { configuration.clock() }
    var isShuttingDown: Bool { shuttingDown.load(ordering: .relaxed) }

    // MARK: KafkaRequestHandler

    public func handle(frame: ByteBuffer, context: RequestContext) -> RequestReply {
        dispatch(frame: frame, context: context)
    }

    public func connectionClosed(_ connection: ConnectionInfo) {}

    /// Wakes every waiting long poll so in-flight requests finish promptly; new requests are
    /// still served until the transport stops reading.
    public func beginShutdown() {
        shuttingDown.store(true, ordering: .relaxed)
        for topic in registry.all {
            for partition in topic.partitions { partition.wakeWaiters() }
        }
        groupCoordinator.beginShutdown()
    }

    /// Stops the periodic flush and retention and the group coordinator's rebalances (its timers
    /// run no more rebalance; waiting joins are answered): the first half of `shutdown`, for a
    /// lifecycle that stops the timers before it closes the logs.
    public func stopMaintenance() {
        beginShutdown()
        maintenance.withLock { tasks in
            for task in tasks { task.cancel() }
        }
    }

    /// Closes every log and the metadata log. Call after the transport has stopped.
    public func shutdown() async {
        stopMaintenance()
        // Marker writers stop before the partitions they write to close.
        await transactionCoordinator.close()
        for topic in registry.all {
            for partition in topic.partitions { await partition.close() }
        }
        await groupCoordinator.close()
        await metadata.close()
    }

    /// Periodic housekeeping: flushing acks=0/1 data on durable backends, retention, and
    /// forgetting idle idempotent producers.
    private func startMaintenance() {
        let flush = repeatEvery(milliseconds: configuration.flushIntervalMs) { broker in
            for topic in broker.registry.all {
                for partition in topic.partitions { partition.flushIfDirty() }
            }
        }
        let retention = repeatEvery(milliseconds: configuration.retentionCheckIntervalMs) { broker in
            await broker.applyRetention()
            let cutoff = broker.nowMs - broker.configs.current.effective.producerIdExpirationMs
            for topic in broker.registry.all {
                for partition in topic.partitions { partition.expireProducers(olderThan: cutoff) }
            }
            await broker.transactionCoordinator.expireTransactionalIds()
            await broker.transactionCoordinator.index.maybeCompact(registry: broker.registry)
        }
        maintenance.withLock { $0 = [flush, retention] }
    }

    private func repeatEvery(
        milliseconds: Int64,
        _ work: @escaping @Sendable (Broker) async -> Void
    ) -> Task<Void, Never> {
        Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(max(milliseconds, 1)))
                guard let self, !Task.isCancelled, !self.isShuttingDown else { return }
                await work(self)
            }
        }
    }

    /// Applies every topic's retention.ms / retention.bytes once.
    func applyRetention() async {
        let now = nowMs
        for topic in registry.all {
            for partition in topic.partitions {
                do {
                    try await partition.enforceRetention(
                        retentionMs: topic.settings.retentionMs,
                        retentionBytes: topic.settings.retentionBytes,
                        nowMs: now
                    )
                } catch {
                    logger.warning(
                        "retention failed",
                        metadata: ["partition": "\(topic.name)-\(partition.index)", "error": "\(error)"]
                    )
                }
            }
        }
    }

    // MARK: Dispatch

    /// The smallest request: api key, api version, correlation id.
    static let requestHeaderPrefixBytes = 8

    private func dispatch(frame: ByteBuffer, context: RequestContext) -> RequestReply {
        let startedAt = metrics.startTime()
        guard frame.readableBytes >= Self.requestHeaderPrefixBytes,
            let rawKey = frame.getInteger(at: frame.readerIndex, as: Int16.self),
            let version = frame.getInteger(at: frame.readerIndex + 2, as: Int16.self),
            let correlationId = frame.getInteger(at: frame.readerIndex + 4, as: Int32.self)
        else {
            return .now(.close(reason: "request of \(frame.readableBytes) bytes is shorter than a request header"))
        }
        guard let apiKey = ApiKey(rawValue: rawKey) else {
            return .now(.close(reason: "unknown API key \(rawKey) (correlation id \(correlationId))"))
        }
        guard let supported = SupportedApis.versions(of: apiKey), supported.contains(version) else {
            if apiKey == .apiVersions {
                // KIP-511: answer an ApiVersions we cannot parse with a v0 body carrying
                // UNSUPPORTED_VERSION and our range, so the client retries with a version we know.
                return .now(
                    respond(
                        ApiVersionsResponse(
                            errorCode: ErrorCode.unsupportedVersion.rawValue,
                            apiKeys: [
                                .init(
                                    apiKey: ApiKey.apiVersions.rawValue,
                                    minVersion: SupportedApis.versions(of: .apiVersions)!.lowerBound,
                                    maxVersion: SupportedApis.versions(of: .apiVersions)!.upperBound
                                )
                            ]
                        ),
                        version: 0,
                        correlationId: correlationId
                    )
                )
            }
            let range = SupportedApis.versions(of: apiKey).map { "\($0.lowerBound)...\($0.upperBound)" } ?? "none"
            return .now(
                .close(
                    reason:
                        "unsupported \(apiKey.name) version \(version) (supported: \(range), correlation id \(correlationId))"
                )
            )
        }
        var body = frame
        do {
            let header = try RequestHeader(from: &body, version: apiKey.requestHeaderVersion(for: version))
            let request = Request(
                header: header,
                apiKey: apiKey,
                version: version,
                correlationId: correlationId,
                context: context,
                startedAt: startedAt,
                frameBytes: frame.readableBytes
            )
            return try route(request, body: &body)
        } catch {
            return .now(
                .close(
                    reason:
                        "malformed \(apiKey.name) v\(version) request (correlation id \(correlationId)) from \(context.connection): \(error)"
                )
            )
        }
    }

    /// One decoded request header with its transport context.
    struct Request: Sendable {
        var header: RequestHeader
        var apiKey: ApiKey
        var version: Int16
        var correlationId: Int32
        var context: RequestContext
        /// When `handle` was called (MonotonicClock; 0 without metrics) and the frame's size, for
        /// the request metrics.
        var startedAt: UInt64 = 0
        var frameBytes: Int = 0
        var clientId: String { header.clientId ?? "" }
    }

    /// Decodes the body and runs the handler. Handlers that only touch memory answer here, on the
    /// transport's thread; the others run their order-sensitive part here too and finish later
    /// (`later`), or, for rare admin requests, run whole in a task that holds the connection's
    /// order until it is done (`inOrder`).
    private func route(_ request: Request, body: inout ByteBuffer) throws -> RequestReply {
        let version = request.version
        switch request.apiKey {
        case .apiVersions:
            return .now(respond(handleApiVersions(try ApiVersionsRequest(from: &body, version: version)), to: request))
        case .metadata:
            return handleMetadata(try MetadataRequest(from: &body, version: version), request)
        case .produce:
            return handleProduce(try ProduceRequest(from: &body, version: version), request)
        case .fetch:
            let fetch = try FetchRequest(from: &body, version: version)
            let pending = PendingOutcome()
            Task {
                let (response, reservedBytes) = await self.handleFetch(fetch, request)
                if self.metrics.isEnabled { self.metrics.fetched(recordBytes: response.recordBytes) }
                pending.complete(building: {
                    // The transport charges the built response from here until it is written.
                    request.context.responseBudget?.release(reservedBytes)
                    return self.respond(response, to: request)
                })
            }
            return .later(pending)
        case .listOffsets:
            let listOffsets = try ListOffsetsRequest(from: &body, version: version)
            return later(request) { await self.handleListOffsets(listOffsets, request) }
        case .createTopics:
            let createTopics = try CreateTopicsRequest(from: &body, version: version)
            return inOrder(request) { await self.handleCreateTopics(createTopics, request) }
        case .deleteTopics:
            let deleteTopics = try DeleteTopicsRequest(from: &body, version: version)
            return inOrder(request) { await self.handleDeleteTopics(deleteTopics, request) }
        case .describeConfigs:
            let describe = try DescribeConfigsRequest(from: &body, version: version)
            return .now(respond(handleDescribeConfigs(describe, request), to: request))
        case .initProducerId:
            let initProducerId = try InitProducerIdRequest(from: &body, version: version)
            return inOrder(request) { await self.handleInitProducerId(initProducerId, version: version) }
        case .findCoordinator:
            let find = try FindCoordinatorRequest(from: &body, version: version)
            return .now(respond(handleFindCoordinator(find, request), to: request))
        case .joinGroup:
            return handleJoinGroup(try JoinGroupRequest(from: &body, version: version), request)
        case .syncGroup:
            return handleSyncGroup(try SyncGroupRequest(from: &body, version: version), request)
        case .heartbeat:
            return .now(
                respond(handleHeartbeat(try HeartbeatRequest(from: &body, version: version), request), to: request)
            )
        case .leaveGroup:
            return .now(
                respond(handleLeaveGroup(try LeaveGroupRequest(from: &body, version: version), request), to: request)
            )
        case .offsetCommit:
            return handleOffsetCommit(try OffsetCommitRequest(from: &body, version: version), request)
        case .offsetFetch:
            let offsetFetch = try OffsetFetchRequest(from: &body, version: version)
            return .now(respond(handleOffsetFetch(offsetFetch, request), to: request))
        case .describeGroups:
            let describe = try DescribeGroupsRequest(from: &body, version: version)
            return .now(respond(handleDescribeGroups(describe, request), to: request))
        case .listGroups:
            return .now(
                respond(handleListGroups(try ListGroupsRequest(from: &body, version: version), request), to: request)
            )
        case .deleteGroups:
            let deleteGroups = try DeleteGroupsRequest(from: &body, version: version)
            return inOrder(request) { await self.handleDeleteGroups(deleteGroups, request) }
        case .offsetDelete:
            let offsetDelete = try OffsetDeleteRequest(from: &body, version: version)
            return inOrder(request) { await self.handleOffsetDelete(offsetDelete, request) }
        case .addPartitionsToTxn, .addOffsetsToTxn, .endTxn, .txnOffsetCommit, .describeTransactions, .listTransactions,
            .describeProducers:
            return try routeTransactions(request, body: &body)
        default:
            return try routeAdmin(request, body: &body)
        }
    }

    /// The admin APIs of issue 15 and the partition descriptions of issue 17: changes (partitions,
    /// records, configs) hold the connection's order until they are durable; descriptions answer
    /// at once.
    private func routeAdmin(_ request: Request, body: inout ByteBuffer) throws -> RequestReply {
        let version = request.version
        switch request.apiKey {
        case .createPartitions:
            let create = try CreatePartitionsRequest(from: &body, version: version)
            return inOrder(request) { await self.handleCreatePartitions(create, request) }
        case .deleteRecords:
            let delete = try DeleteRecordsRequest(from: &body, version: version)
            return inOrder(request) { await self.handleDeleteRecords(delete, request) }
        case .alterConfigs:
            let alter = try AlterConfigsRequest(from: &body, version: version)
            return inOrder(request) { await self.handleAlterConfigs(alter, request) }
        case .incrementalAlterConfigs:
            let alter = try IncrementalAlterConfigsRequest(from: &body, version: version)
            return inOrder(request) { await self.handleIncrementalAlterConfigs(alter, request) }
        case .describeCluster:
            let describe = try DescribeClusterRequest(from: &body, version: version)
            return .now(respond(handleDescribeCluster(describe, request), to: request))
        case .describeLogDirs:
            let describe = try DescribeLogDirsRequest(from: &body, version: version)
            return .now(respond(handleDescribeLogDirs(describe, request), to: request))
        case .electLeaders:
            let elect = try ElectLeadersRequest(from: &body, version: version)
            return .now(respond(handleElectLeaders(elect, request), to: request))
        case .listPartitionReassignments:
            let list = try ListPartitionReassignmentsRequest(from: &body, version: version)
            return .now(respond(handleListPartitionReassignments(list, request), to: request))
        case .alterPartitionReassignments:
            let alter = try AlterPartitionReassignmentsRequest(from: &body, version: version)
            return .now(respond(handleAlterPartitionReassignments(alter, request), to: request))
        case .offsetForLeaderEpoch:
            let epochs = try OffsetForLeaderEpochRequest(from: &body, version: version)
            return .now(respond(handleOffsetForLeaderEpoch(epochs, request), to: request))
        case .describeTopicPartitions:
            let describe = try DescribeTopicPartitionsRequest(from: &body, version: version)
            return .now(respond(handleDescribeTopicPartitions(describe, request), to: request))
        default:
            // SupportedApis lists only what is routed here; reaching this is a bug, not bad input.
            preconditionFailure("\(request.apiKey.name) is advertised but not routed")
        }
    }

    /// The transaction APIs: the ones that change a transaction hold the connection's order until
    /// their change is durable (Kafka handles one request of a connection at a time); the
    /// descriptions answer at once.
    private func routeTransactions(_ request: Request, body: inout ByteBuffer) throws -> RequestReply {
        let version = request.version
        switch request.apiKey {
        case .addPartitionsToTxn:
            let add = try AddPartitionsToTxnRequest(from: &body, version: version)
            return inOrder(request) { await self.handleAddPartitionsToTxn(add, request) }
        case .addOffsetsToTxn:
            let add = try AddOffsetsToTxnRequest(from: &body, version: version)
            return inOrder(request) { await self.handleAddOffsetsToTxn(add, request) }
        case .endTxn:
            let end = try EndTxnRequest(from: &body, version: version)
            return inOrder(request) { await self.handleEndTxn(end, request) }
        case .txnOffsetCommit:
            return handleTxnOffsetCommit(try TxnOffsetCommitRequest(from: &body, version: version), request)
        case .describeTransactions:
            let describe = try DescribeTransactionsRequest(from: &body, version: version)
            return .now(respond(handleDescribeTransactions(describe), to: request))
        case .listTransactions:
            let list = try ListTransactionsRequest(from: &body, version: version)
            return .now(respond(handleListTransactions(list, request), to: request))
        case .describeProducers:
            let describe = try DescribeProducersRequest(from: &body, version: version)
            return .now(respond(handleDescribeProducers(describe), to: request))
        default:
            preconditionFailure("\(request.apiKey.name) is not a transaction API")
        }
    }

    /// Runs `work` in a task; later requests of the connection go ahead meanwhile (reads, long
    /// polls: nothing a later request could overtake).
    func later<M: KafkaResponseMessage>(
        _ request: Request,
        _ work: @escaping @Sendable () async -> M
    ) -> RequestReply {
        let pending = PendingOutcome()
        Task {
            let message = await work()
            pending.complete(building: { self.respond(message, to: request) })
        }
        return .later(pending)
    }

    /// Runs `work` in a task that holds the connection's order until it is done: a request that
    /// changes what later requests see (topics, producer ids, groups) is finished before they start.
    func inOrder<M: KafkaResponseMessage>(
        _ request: Request,
        _ work: @escaping @Sendable () async -> M
    ) -> RequestReply {
        let pending = PendingOutcome(holdsOrder: true)
        Task {
            let message = await work()
            pending.complete(building: { self.respond(message, to: request) })
        }
        return .later(pending)
    }

    // MARK: Responses

    func respond<M: KafkaResponseMessage>(_ message: M, to request: Request) -> RequestOutcome {
        let outcome = respond(message, version: request.version, correlationId: request.correlationId)
        if metrics.isEnabled, case .respond(let frame) = outcome {
            answered(request, message, responseBytes: frame.readableBytes)
        }
        return outcome
    }

    /// Records a request's metrics once it is answered (`responseBytes` 0: answered without a
    /// response, as a Produce with acks=0).
    func answered<M: KafkaResponseMessage>(_ request: Request, _ message: M, responseBytes: Int) {
        metrics.requestAnswered(
            request.apiKey,
            version: request.version,
            startedAt: request.startedAt,
            requestBytes: request.frameBytes + 4,
            responseBytes: responseBytes,
            response: message
        )
    }

    /// Encodes a complete response frame: size prefix, response header, body.
    func respond<M: KafkaResponseMessage>(_ message: M, version: Int16, correlationId: Int32) -> RequestOutcome {
        var buffer = allocator.buffer(capacity: 512)
        buffer.writeInteger(Int32(0))
        ResponseHeader(correlationId: correlationId).write(
            to: &buffer,
            version: M.apiKey.responseHeaderVersion(for: version)
        )
        message.write(to: &buffer, version: version)
        buffer.setInteger(Int32(buffer.readableBytes - 4), at: buffer.readerIndex)
        return .respond(buffer)
    }
}

/// The APIs and versions Fjord advertises in ApiVersions: exactly those it implements, each over
/// its whole generated range (Kafka 3.8's client-facing one). To serve part of a range only, narrow
/// the API's entry in `KafkaCodegen.generatedApis` and regenerate.
enum SupportedApis {
    static let implemented: [ApiKey] = [
        .produce, .fetch, .listOffsets, .metadata, .apiVersions, .createTopics, .deleteTopics,
        .describeConfigs, .initProducerId, .offsetForLeaderEpoch, .describeTopicPartitions,
        // The classic group protocol (Groups/, Handlers/GroupHandlers.swift).
        .findCoordinator, .joinGroup, .syncGroup, .heartbeat, .leaveGroup, .offsetCommit, .offsetFetch,
        .describeGroups, .listGroups, .deleteGroups, .offsetDelete,
        // The admin surface (Handlers/ConfigHandlers, PartitionAdminHandlers, ClusterHandlers).
        .createPartitions, .deleteRecords, .alterConfigs, .incrementalAlterConfigs, .describeCluster,
        .describeLogDirs, .electLeaders, .listPartitionReassignments, .alterPartitionReassignments,
        // Transactions (Transactions/, Handlers/TransactionHandlers.swift).
        .addPartitionsToTxn, .addOffsetsToTxn, .endTxn, .txnOffsetCommit, .describeTransactions, .listTransactions,
        .describeProducers,
    ]

    private static let table: [ApiKey: ClosedRange<Int16>] = Dictionary(
        uniqueKeysWithValues: implemented.compactMap { key in key.generatedVersions.map { (key, $0) } }
    )

    static func versions(of apiKey: ApiKey) -> ClosedRange<Int16>? { table[apiKey] }

    static var all: [(ApiKey, ClosedRange<Int16>)] {
        table.sorted { $0.key.rawValue < $1.key.rawValue }.map { ($0.key, $0.value) }
    }
}
