import BrokerCore
import BrokerServer

/// `--log-format`.
public enum LogFormat: String, Sendable, CaseIterable {
    /// swift-log's stream format: one human-readable line per event.
    case text
    /// One JSON object per line (timestamp, level, label, message, metadata).
    case json
}

/// One `--backend-option` / `fjord.backend.<key>`: handed to the storage backend as is.
public struct BackendOption: Sendable, Hashable {
    public var key: String
    public var value: String

    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }
}

/// Everything `fjord` runs with, resolved from the command line, FJORD_ environment variables,
/// a server.properties file and the defaults (in that order of precedence), with the effective
/// value and source of every setting in `effectiveConfigs`.
public struct BrokerSettings: Sendable {
    public var broker = BrokerConfiguration()
    public var server = ServerConfiguration()
    /// The Kafka listener (`listeners`; one PLAINTEXT listener for now).
    public var listener = Listener.plaintext(HostPort(host: "127.0.0.1", port: 9092))
    /// `advertised.listeners`; nil: the listener's address, with 127.0.0.1 for a wildcard host.
    public var advertisedListener: Listener?
    public var dataDirectory = "./data"
    /// `fjord.backend`; nil (and no library): the default backend.
    public var backendName: String?
    /// `fjord.backend.library`: a third-party backend built against kstore.h.
    public var backendLibrary: String?
    public var backendOptions: [BackendOption] = []
    /// `num.io.threads`: storage threads for a blocking backend.
    public var ioThreads = 32
    /// `fjord.metrics.listen`: the operations listener (/metrics, /health); nil: off.
    public var metricsListen: HostPort?
    /// A swift-log level name (trace … critical).
    public var logLevel = "info"
    public var logFormat = LogFormat.text
    /// Every setting under its Kafka (or `fjord.`) name with its effective value and source, sorted
    /// by name: logged at startup and served by DescribeConfigs.
    public var effectiveConfigs: [BrokerConfigEntry] = []

    public init() {}

    /// The address clients are told to connect to (Metadata).
    public var advertisedAddress: HostPort {
        if let advertisedListener { return advertisedListener.address }
        let address = listener.address
        return HostPort(host: address.isWildcard ? "127.0.0.1" : address.host, port: address.port)
    }

    /// The broker configuration with what is derived from the other settings filled in: the
    /// advertised address, and the static layer of its configs (every broker config the operator
    /// set, in the file, the environment or on the command line, which DescribeConfigs reports as
    /// STATIC_BROKER_CONFIG as Kafka does).
    public func brokerConfiguration() throws(BrokerConfigError) -> BrokerConfiguration {
        var configuration = broker
        configuration.advertisedHost = advertisedAddress.host
        configuration.advertisedPort = Int32(advertisedAddress.port)
        var configs: [String: String] = [:]
        for entry in effectiveConfigs
        where entry.origin != .defaultValue && BrokerConfiguration.isBrokerConfig(entry.name) {
            if let value = entry.value { configs[entry.name] = value }
        }
        try configuration.setStatic(configs)
        return configuration
    }

    /// The Kafka listener's configuration, bound to `listener`.
    public var serverConfiguration: ServerConfiguration {
        var configuration = server
        configuration.host = listener.address.host
        configuration.port = listener.address.port
        return configuration
    }
}
