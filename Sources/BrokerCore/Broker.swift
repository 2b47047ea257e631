import Logging
import NIOCore
import StorageHost

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

    public init() {}
}

/// The sans-I/O Kafka broker: decodes requests, runs handlers over partitions stored through
/// `StorageHost`, encodes responses.
public final class Broker: KafkaRequestHandler {
    public let configuration: BrokerConfiguration
    let logger: Logger

    /// Opens the broker over an open storage engine: replays the metadata log, opens every
    /// partition's log and restores its state.
    public static func start(
        configuration: BrokerConfiguration,
        storage: StorageEngine,
        logger: Logger
    ) async throws -> Broker {
        Broker(configuration: configuration, logger: logger)
    }

    init(configuration: BrokerConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    public func handle(frame: ByteBuffer, context: RequestContext) async -> RequestOutcome {
        .close(reason: "not implemented yet")
    }

    public func connectionClosed(_ connection: ConnectionInfo) {}

    /// Wakes every waiting long poll so in-flight requests finish promptly; new requests are still
    /// served until the transport stops reading.
    public func beginShutdown() {}

    /// Closes every log and the metadata log. Call after the transport has stopped.
    public func shutdown() async {}
}
