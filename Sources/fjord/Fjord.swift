import ArgumentParser
import BrokerCore
import BrokerServer
import FjordConfiguration
import Logging

/// `fjord`: the command line. Every setting can also come from a server.properties file
/// (`--config`) or an FJORD_ environment variable; a flag given here overrides both. Options are
/// declared without defaults so that an option not given does not override the file: the
/// defaults live with the settings (FjordConfiguration) and are shown in the help.
@main
struct Fjord: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fjord",
        abstract: "A Kafka-compatible message broker with pluggable storage backends.",
        discussion: """
            Settings come from, in order of precedence: these flags; FJORD_ environment variables \
            (FJORD_ and the server.properties key in upper case, '.' as '_': FJORD_NUM_PARTITIONS, \
            FJORD_BACKEND); the --config file in Kafka's server.properties format; the defaults.
            """
    )

    @Option(
        help: ArgumentHelp(
            "A configuration file in Kafka's server.properties format (also FJORD_CONFIG).",
            valueName: "file"
        )
    )
    var config: String?

    @Flag(
        help: "Print the storage backends linked into fjord, one per line (name, capabilities, description), and exit."
    )
    var listBackends: Bool = false

    @Option(
        help: ArgumentHelp(
            "Storage backend linked into fjord (default: \(defaultBackendName); fjord.backend); see --list-backends.",
            valueName: "name"
        )
    )
    var backend: String?

    @Option(
        help: ArgumentHelp(
            "Load a third-party storage backend from a shared library instead (fjord.backend.library).",
            valueName: "lib.so"
        )
    )
    var backendPath: String?

    @Option(
        name: .customLong("backend-option"),
        help: ArgumentHelp(
            "An option passed to the storage backend (repeatable; fjord.backend.<key>), e.g. uring.segment.bytes=268435456, or file.open.files.max=N (the most descriptors the file backend keeps open; default half the soft RLIMIT_NOFILE).",
            valueName: "key=value"
        )
    )
    var backendOptions: [String] = []

    @Option(
        help: ArgumentHelp(
            "Directory the storage backend keeps its data in (default: ./data; log.dirs).",
            valueName: "dir"
        )
    )
    var dataDir: String?

    @Option(
        help: ArgumentHelp(
            "Address to accept Kafka clients on (default: 127.0.0.1:9092; listeners).",
            valueName: "host:port"
        )
    )
    var listen: String?

    @Option(
        help: ArgumentHelp(
            "Address clients are told to connect to (default: the --listen address, 127.0.0.1 for a wildcard host; advertised.listeners).",
            valueName: "host:port"
        )
    )
    var advertisedListener: String?

    @Option(
        help: ArgumentHelp(
            "Serve GET /metrics, /health/live and /health/ready here (default: off; fjord.metrics.listen).",
            valueName: "host:port"
        )
    )
    var metricsListen: String?

    @Option(help: ArgumentHelp("This broker's node id (default: 1; node.id).", valueName: "n"))
    var nodeId: String?

    @Option(
        help: ArgumentHelp(
            "Least severe level logged: trace … critical (default: info; fjord.log.level).",
            valueName: "level"
        )
    )
    var logLevel: String?

    @Option(
        help: ArgumentHelp(
            "text, or json: one JSON object per line (default: text; fjord.log.format).",
            valueName: "format"
        )
    )
    var logFormat: String?

    @Option(help: ArgumentHelp("Partitions of an auto-created topic (default: 1; num.partitions).", valueName: "n"))
    var defaultPartitions: String?

    @Option(
        help: ArgumentHelp(
            "Create unknown topics on Metadata and Produce (default: true; auto.create.topics.enable).",
            valueName: "bool"
        )
    )
    var autoCreateTopics: String?

    @Option(
        help: ArgumentHelp(
            "Largest record batch accepted, in bytes (default: 1048588; message.max.bytes).",
            valueName: "n"
        )
    )
    var messageMaxBytes: String?

    @Option(
        help: ArgumentHelp(
            "Largest request frame accepted, in bytes (default: 104857600; socket.request.max.bytes).",
            valueName: "n"
        )
    )
    var maxRequestBytes: String?

    @Option(
        help: ArgumentHelp(
            "Unanswered requests per connection before fjord stops reading from it (default: 64).",
            valueName: "n"
        )
    )
    var maxInFlightRequests: String?

    @Option(
        help: ArgumentHelp(
            "Close connections idle this long (default: 600000; connections.max.idle.ms).",
            valueName: "ms"
        )
    )
    var idleTimeoutMs: String?

    @Option(
        help: ArgumentHelp(
            "Open connections; at the limit a new one replaces the oldest that sent no request yet, else it is closed (default: 10000; max.connections).",
            valueName: "n"
        )
    )
    var maxConnections: String?

    @Option(
        name: .customLong("max-connections-per-ip"),
        help: ArgumentHelp(
            "Open connections from one address (default: unlimited; max.connections.per.ip).",
            valueName: "n"
        )
    )
    var maxConnectionsPerIP: String?

    @Option(
        help: ArgumentHelp(
            "Close a new connection that sends no complete request within this time (default: 10000).",
            valueName: "ms"
        )
    )
    var firstRequestTimeoutMs: String?

    @Option(
        help: ArgumentHelp(
            "Bytes of requests read but not answered, over all connections, before reading stops (default: 536870912; queued.max.request.bytes).",
            valueName: "n"
        )
    )
    var queuedMaxRequestBytes: String?

    @Option(
        help: ArgumentHelp(
            "Bytes of responses built but not yet written, over all connections; Fetch sizes its responses to what is left (default: 536870912).",
            valueName: "n"
        )
    )
    var maxResponseMemoryBytes: String?

    @Option(help: ArgumentHelp("The same bound for one connection (default: 67108864).", valueName: "n"))
    var maxResponseMemoryBytesPerConnection: String?

    @Option(
        help: ArgumentHelp(
            "How long a graceful shutdown waits for in-flight requests (default: 5000).",
            valueName: "ms"
        )
    )
    var shutdownGracePeriodMs: String?

    @Option(
        help: ArgumentHelp(
            "Storage threads for backends that block on I/O (file): how many partitions' writes and fdatasyncs run at once (default: 32; num.io.threads).",
            valueName: "n"
        )
    )
    var numIoThreads: String?

    @Option(
        help: ArgumentHelp(
            "Default retention.ms of topics, -1 to keep forever (default: 604800000; log.retention.ms).",
            valueName: "ms"
        )
    )
    var logRetentionMs: String?

    @Option(
        help: ArgumentHelp(
            "Default retention.bytes of topics, -1 for no limit (default: -1; log.retention.bytes).",
            valueName: "n"
        )
    )
    var logRetentionBytes: String?

    @Option(
        help: ArgumentHelp("Default segment.bytes of topics (default: 1073741824; log.segment.bytes).", valueName: "n")
    )
    var logSegmentBytes: String?

    @Option(
        help: ArgumentHelp(
            "How often retention is applied (default: 300000; log.retention.check.interval.ms).",
            valueName: "ms"
        )
    )
    var retentionCheckIntervalMs: String?

    @Option(
        help: ArgumentHelp(
            "How often acks=0/1 data is synced to stable storage: the most of it a power loss can take (default: 1000; log.flush.interval.ms).",
            valueName: "ms"
        )
    )
    var flushIntervalMs: String?

    @Option(
        help: ArgumentHelp(
            "How long a new group's first rebalance waits for members (default: 100; group.initial.rebalance.delay.ms).",
            valueName: "ms"
        )
    )
    var groupInitialRebalanceDelayMs: String?

    @Option(
        help: ArgumentHelp(
            "Smallest consumer session timeout accepted (default: 6000; group.min.session.timeout.ms).",
            valueName: "ms"
        )
    )
    var groupMinSessionTimeoutMs: String?

    @Option(
        help: ArgumentHelp(
            "Largest consumer session timeout accepted (default: 1800000; group.max.session.timeout.ms).",
            valueName: "ms"
        )
    )
    var groupMaxSessionTimeoutMs: String?

    @Option(
        help: ArgumentHelp(
            "Longest transaction timeout a producer may ask for (default: 900000; transaction.max.timeout.ms).",
            valueName: "ms"
        )
    )
    var transactionMaxTimeoutMs: String?

    @Option(
        help: ArgumentHelp(
            "Forget transactional ids idle for this long (default: 604800000; transactional.id.expiration.ms).",
            valueName: "ms"
        )
    )
    var transactionalIdExpirationMs: String?

    /// The flags given, by name, for the settings resolver.
    var givenFlags: [(flag: String, value: String)] {
        let all: [(String, String?)] = [
            ("--backend", backend), ("--backend-path", backendPath), ("--data-dir", dataDir), ("--listen", listen),
            ("--advertised-listener", advertisedListener), ("--metrics-listen", metricsListen), ("--node-id", nodeId),
            ("--log-level", logLevel), ("--log-format", logFormat), ("--default-partitions", defaultPartitions),
            ("--auto-create-topics", autoCreateTopics), ("--message-max-bytes", messageMaxBytes),
            ("--max-request-bytes", maxRequestBytes), ("--max-in-flight-requests", maxInFlightRequests),
            ("--idle-timeout-ms", idleTimeoutMs), ("--max-connections", maxConnections),
            ("--max-connections-per-ip", maxConnectionsPerIP), ("--first-request-timeout-ms", firstRequestTimeoutMs),
            ("--queued-max-request-bytes", queuedMaxRequestBytes),
            ("--max-response-memory-bytes", maxResponseMemoryBytes),
            ("--max-response-memory-bytes-per-connection", maxResponseMemoryBytesPerConnection),
            ("--shutdown-grace-period-ms", shutdownGracePeriodMs), ("--num-io-threads", numIoThreads),
            ("--log-retention-ms", logRetentionMs), ("--log-retention-bytes", logRetentionBytes),
            ("--log-segment-bytes", logSegmentBytes), ("--retention-check-interval-ms", retentionCheckIntervalMs),
            ("--flush-interval-ms", flushIntervalMs),
            ("--group-initial-rebalance-delay-ms", groupInitialRebalanceDelayMs),
            ("--group-min-session-timeout-ms", groupMinSessionTimeoutMs),
            ("--group-max-session-timeout-ms", groupMaxSessionTimeoutMs),
            ("--transaction-max-timeout-ms", transactionMaxTimeoutMs),
            ("--transactional-id-expiration-ms", transactionalIdExpirationMs),
        ]
        return all.compactMap { flag, value in value.map { (flag, $0) } }
    }

    /// Parses the command line and resolves the settings; a usage or settings error prints one
    /// line per problem and exits with status 2 (argument-parser itself would print the usage
    /// screen and exit with 64).
    static func main() async {
        let command: Fjord
        do {
            command = try Self.parse()
        } catch {
            if Self.exitCode(for: error) == .validationFailure {
                printToStandardError("fjord: error: \(Self.oneLine(Self.message(for: error))) (see 'fjord --help')")
                terminateProcess(2)
            }
            Self.exit(withError: error)  // --help, --version: print and exit 0
        }
        if command.listBackends {
            print(Storage.backendListing, terminator: "")
            terminateProcess(0)
        }
        let settings: BrokerSettings
        do {
            settings = try command.resolveSettings()
        } catch {
            for problem in error.problems { printToStandardError("fjord: error: \(problem)") }
            terminateProcess(2)
        }
        let status = await BrokerRun(settings: settings).run()
        terminateProcess(status)
    }

    /// Flags over FJORD_ environment variables over the --config file over the defaults.
    func resolveSettings() throws(ConfigurationError) -> BrokerSettings {
        let environment = ProcessEnvironment.variables
        var file: PropertiesFile?
        if let path = config ?? environment["FJORD_CONFIG"] {
            file = try PropertiesFile.load(path: path)
        }
        let settings = try SettingsResolver.resolve(
            SettingsInput(file: file, environment: environment, flags: givenFlags, backendOptionFlags: backendOptions)
        )
        if settings.backendLibrary == nil, let name = settings.backendName, !Storage.builtinBackendNames.contains(name)
        {
            throw ConfigurationError("\(UnknownBackendError(name: name))")
        }
        return settings
    }

    /// argument-parser lists an enum's values one per line ("\n  - trace"); fold them into the line.
    static func oneLine(_ message: String) -> String {
        let lines = message.split(separator: "\n").map { $0.drop(while: { $0 == " " }) }
        let items = lines.dropFirst().map { $0.hasPrefix("- ") ? $0.dropFirst(2) : $0 }
        return ([String(lines.first ?? "")] + [items.joined(separator: ", ")]).filter { !$0.isEmpty }.joined(
            separator: " "
        )
    }
}
