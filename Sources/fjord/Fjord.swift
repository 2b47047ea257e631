import ArgumentParser
import BrokerCore
import BrokerServer
import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct Fjord: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fjord",
        abstract: "A Kafka-compatible message broker with pluggable storage backends."
    )

    @Option(
        help: ArgumentHelp(
            "Storage backend linked into fjord (default: \(defaultBackendName)); see --list-backends.",
            valueName: "name"
        )
    )
    var backend: String?

    @Flag(help: "Print the storage backends linked into fjord, one per line (name, capabilities, description), and exit.")
    var listBackends: Bool = false

    @Option(
        help: ArgumentHelp(
            "Load a third-party storage backend from a shared library instead of --backend.",
            valueName: "lib.so"
        )
    )
    var backendPath: String?

    @Option(help: ArgumentHelp("Directory the storage backend keeps its data in.", valueName: "dir"))
    var dataDir: String = "./data"

    @Option(help: ArgumentHelp("Address to accept Kafka clients on.", valueName: "host:port"))
    var listen = HostPort(host: "127.0.0.1", port: 9092)

    @Option(
        help: ArgumentHelp(
            "Address clients are told to connect to (Metadata). Default: the --listen address, with 127.0.0.1 for a wildcard host.",
            valueName: "host:port"
        )
    )
    var advertisedListener: HostPort?

    @Option(help: "This broker's node id.")
    var nodeId: Int32 = 1

    @Option(help: ArgumentHelp("Least severe level logged.", valueName: "level"))
    var logLevel: LogLevel = .info

    @Option(help: "Partitions of an auto-created topic (and of CreateTopics with NumPartitions -1).")
    var defaultPartitions: Int32 = 1

    @Option(help: ArgumentHelp("Create unknown topics on Metadata and Produce (true|false).", valueName: "bool"))
    var autoCreateTopics: Bool = true

    @Option(help: "Largest record batch accepted, in bytes (Kafka's message.max.bytes).")
    var messageMaxBytes: Int32 = 1_048_588

    @Option(help: "Largest request frame accepted, in bytes (Kafka's socket.request.max.bytes).")
    var maxRequestBytes: Int = ServerConfiguration().maxFrameBytes

    @Option(help: "Unanswered requests per connection before fjord stops reading from it.")
    var maxInFlightRequests: Int = ServerConfiguration().maxInFlightRequestsPerConnection

    @Option(help: "Close connections idle this long, in milliseconds (Kafka's connections.max.idle.ms).")
    var idleTimeoutMs: Int64 = 600_000

    @Option(
        help: """
            Open connections allowed at once. At the limit a new connection replaces the oldest one \
            that has not sent a complete request yet; otherwise it is closed.
            """
    )
    var maxConnections: Int = ServerConfiguration().maxConnections

    @Option(
        name: .customLong("max-connections-per-ip"),
        help: "Open connections allowed from one address (Kafka's max.connections.per.ip; default: unlimited)."
    )
    var maxConnectionsPerIP: Int?

    @Option(help: "Close a new connection that sends no complete request within this many milliseconds.")
    var firstRequestTimeoutMs: Int64 = 10_000

    @Option(
        help: """
            Bytes of requests read but not answered, over all connections, before reading stops \
            (Kafka's queued.max.request.bytes).
            """
    )
    var queuedMaxRequestBytes: Int = ServerConfiguration().queuedMaxRequestBytes

    @Option(
        help: """
            Bytes of responses built but not yet written, over all connections; Fetch sizes its \
            responses to what is left.
            """
    )
    var maxResponseMemoryBytes: Int = ServerConfiguration().maxResponseMemoryBytes

    @Option(help: "The same bound for one connection; above it the connection is not read until it drains.")
    var maxResponseMemoryBytesPerConnection: Int = ServerConfiguration().maxResponseMemoryBytesPerConnection

    @Option(
        name: .customLong("backend-option"),
        help: ArgumentHelp(
            "An option passed to the storage backend (repeatable), e.g. uring.segment.bytes=268435456, or file.open.files.max=N (the most descriptors the file backend keeps open; default half the soft RLIMIT_NOFILE).",
            valueName: "key=value"
        )
    )
    var backendOptions: [String] = []

    @Option(
        help: """
            Storage threads for backends that block on I/O (file), started as needed: how many \
            partitions' writes and fdatasyncs run at once (Kafka's num.io.threads).
            """
    )
    var numIoThreads: Int = 32

    @Option(help: "Default retention.ms of topics: delete segments older than this (-1: keep forever).")
    var logRetentionMs: Int64 = BrokerConfiguration().retentionMs

    @Option(help: "Default retention.bytes of topics: keep partitions below this size (-1: no limit).")
    var logRetentionBytes: Int64 = BrokerConfiguration().retentionBytes

    @Option(help: "Default segment.bytes of topics: roll a new segment file at this size.")
    var logSegmentBytes: Int32 = BrokerConfiguration().segmentBytes

    @Option(help: "How often retention is applied, in milliseconds (Kafka's log.retention.check.interval.ms).")
    var retentionCheckIntervalMs: Int64 = BrokerConfiguration().retentionCheckIntervalMs

    @Option(
        help: """
            How often acks=0/1 data is synced to stable storage, in milliseconds: the most of it a power \
            loss can take (acks=all is always synced before it is answered).
            """
    )
    var flushIntervalMs: Int64 = BrokerConfiguration().flushIntervalMs

    @Option(help: "How long the first rebalance of a new consumer group waits for more members, in milliseconds (Kafka's group.initial.rebalance.delay.ms).")
    var groupInitialRebalanceDelayMs: Int32 = BrokerConfiguration().groupInitialRebalanceDelayMs

    @Option(help: "Smallest consumer session timeout accepted, in milliseconds (Kafka's group.min.session.timeout.ms).")
    var groupMinSessionTimeoutMs: Int32 = BrokerConfiguration().groupMinSessionTimeoutMs

    @Option(help: "Largest consumer session timeout accepted, in milliseconds (Kafka's group.max.session.timeout.ms).")
    var groupMaxSessionTimeoutMs: Int32 = BrokerConfiguration().groupMaxSessionTimeoutMs

    @Option(help: "Longest transaction timeout a producer may ask for, in milliseconds (Kafka's transaction.max.timeout.ms).")
    var transactionMaxTimeoutMs: Int32 = BrokerConfiguration().transactionMaxTimeoutMs

    @Option(help: "Forget transactional ids idle for this long, in milliseconds (Kafka's transactional.id.expiration.ms).")
    var transactionalIdExpirationMs: Int64 = BrokerConfiguration().transactionalIdExpirationMs

    /// Parses the command line; a usage error prints one line and exits with status 2 (argument-parser
    /// itself would print the usage screen and exit with 64).
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
        let status = await command.runBroker()
        terminateProcess(status)
    }

    /// argument-parser lists an enum's values one per line ("\n  - trace"); fold them into the line.
    static func oneLine(_ message: String) -> String {
        let lines = message.split(separator: "\n").map { $0.drop(while: { $0 == " " }) }
        let items = lines.dropFirst().map { $0.hasPrefix("- ") ? $0.dropFirst(2) : $0 }
        return ([String(lines.first ?? "")] + [items.joined(separator: ", ")]).filter { !$0.isEmpty }.joined(
            separator: " "
        )
    }

    func validate() throws {
        if self.backend != nil && self.backendPath != nil {
            throw ValidationError("use either --backend or --backend-path, not both")
        }
        if self.backendPath == nil {
            let name = self.backend ?? defaultBackendName
            guard Storage.builtinBackendNames.contains(name) else {
                throw ValidationError("\(UnknownBackendError(name: name))")
            }
        }
        guard self.nodeId >= 0 else { throw ValidationError("--node-id must be 0 or more, got \(self.nodeId)") }
        guard self.defaultPartitions >= 1 else {
            throw ValidationError("--default-partitions must be at least 1, got \(self.defaultPartitions)")
        }
        guard self.messageMaxBytes >= 1 else {
            throw ValidationError("--message-max-bytes must be at least 1, got \(self.messageMaxBytes)")
        }
        guard self.idleTimeoutMs >= 1 else {
            throw ValidationError("--idle-timeout-ms must be at least 1, got \(self.idleTimeoutMs)")
        }
        if let advertised = self.advertisedListener {
            guard advertised.port >= 1, !advertised.isWildcard else {
                throw ValidationError(
                    "--advertised-listener must name a host and port clients can reach, got \(advertised)"
                )
            }
        } else if self.listen.port == 0 {
            throw ValidationError(
                "--listen with port 0 needs --advertised-listener: clients must be told the port before it is bound"
            )
        }
        guard (1...Int(Int32.max)).contains(self.maxRequestBytes) else {
            throw ValidationError("--max-request-bytes must be in 1...\(Int32.max), got \(self.maxRequestBytes)")
        }
        guard self.maxInFlightRequests >= 1 else {
            throw ValidationError("--max-in-flight-requests must be at least 1, got \(self.maxInFlightRequests)")
        }
        for option in self.backendOptions where !option.contains("=") || option.hasPrefix("=") {
            throw ValidationError("--backend-option must look like key=value, got '\(option)'")
        }
        guard self.logRetentionMs >= -1 else {
            throw ValidationError("--log-retention-ms must be -1 or more, got \(self.logRetentionMs)")
        }
        guard self.logRetentionBytes >= -1 else {
            throw ValidationError("--log-retention-bytes must be -1 or more, got \(self.logRetentionBytes)")
        }
        guard self.logSegmentBytes >= 14 else {
            throw ValidationError("--log-segment-bytes must be at least 14, got \(self.logSegmentBytes)")
        }
        guard self.retentionCheckIntervalMs >= 1, self.flushIntervalMs >= 1 else {
            throw ValidationError("--retention-check-interval-ms and --flush-interval-ms must be at least 1")
        }
        guard self.maxConnections >= 1 else {
            throw ValidationError("--max-connections must be at least 1, got \(self.maxConnections)")
        }
        guard (self.maxConnectionsPerIP ?? 1) >= 1, self.firstRequestTimeoutMs >= 1, self.queuedMaxRequestBytes >= 1,
            self.maxResponseMemoryBytes >= 1, self.maxResponseMemoryBytesPerConnection >= 1
        else {
            throw ValidationError(
                "--max-connections-per-ip, --first-request-timeout-ms, --queued-max-request-bytes and the "
                    + "--max-response-memory-bytes options must be at least 1"
            )
        }
        guard (1...1024).contains(self.numIoThreads) else {
            throw ValidationError("--num-io-threads must be in 1...1024, got \(self.numIoThreads)")
        }
        guard self.groupInitialRebalanceDelayMs >= 0 else {
            throw ValidationError(
                "--group-initial-rebalance-delay-ms must be 0 or more, got \(self.groupInitialRebalanceDelayMs)"
            )
        }
        guard self.groupMinSessionTimeoutMs >= 1, self.groupMinSessionTimeoutMs <= self.groupMaxSessionTimeoutMs else {
            throw ValidationError(
                "--group-min-session-timeout-ms (\(self.groupMinSessionTimeoutMs)) must be at least 1 and at most "
                    + "--group-max-session-timeout-ms (\(self.groupMaxSessionTimeoutMs))"
            )
        }
        guard self.transactionMaxTimeoutMs >= 1, self.transactionalIdExpirationMs >= 1 else {
            throw ValidationError("--transaction-max-timeout-ms and --transactional-id-expiration-ms must be at least 1")
        }
        // Everything the server checks is covered above; this catches a check added there later.
        do {
            try self.serverConfiguration.validate()
        } catch {
            throw ValidationError("\(error)")
        }
    }

    // MARK: Derived configuration

    var backendSelection: BackendSelection {
        if let backendPath { return .library(path: backendPath) }
        return .builtin(name: self.backend ?? defaultBackendName)
    }

    var advertisedAddress: HostPort {
        if let advertisedListener { return advertisedListener }
        return HostPort(host: self.listen.isWildcard ? "127.0.0.1" : self.listen.host, port: self.listen.port)
    }

    /// The Kafka names of the broker settings this command line sets, with their values: the static
    /// layer of the broker's configs (DescribeConfigs reports them as STATIC_BROKER_CONFIG). Only
    /// options given on the command line are included; a properties file could add to the same map.
    func staticBrokerConfigs(given: Set<String>) -> [String: String] {
        let address = self.advertisedAddress
        let options: [(option: String, key: String, value: String)] = [
            ("node-id", "node.id", String(self.nodeId)),
            ("default-partitions", "num.partitions", String(self.defaultPartitions)),
            ("auto-create-topics", "auto.create.topics.enable", String(self.autoCreateTopics)),
            ("message-max-bytes", "message.max.bytes", String(self.messageMaxBytes)),
            ("log-retention-ms", "log.retention.ms", String(self.logRetentionMs)),
            ("log-retention-bytes", "log.retention.bytes", String(self.logRetentionBytes)),
            ("log-segment-bytes", "log.segment.bytes", String(self.logSegmentBytes)),
            ("retention-check-interval-ms", "log.retention.check.interval.ms", String(self.retentionCheckIntervalMs)),
            ("group-initial-rebalance-delay-ms", "group.initial.rebalance.delay.ms", String(self.groupInitialRebalanceDelayMs)),
            ("group-min-session-timeout-ms", "group.min.session.timeout.ms", String(self.groupMinSessionTimeoutMs)),
            ("group-max-session-timeout-ms", "group.max.session.timeout.ms", String(self.groupMaxSessionTimeoutMs)),
            ("advertised-listener", "advertised.listeners", "PLAINTEXT://\(address.host):\(address.port)"),
            ("listen", "listeners", "PLAINTEXT://\(self.listen.host):\(self.listen.port)"),
            ("data-dir", "log.dirs", Self.absolutePath(self.dataDir)),
            ("num-io-threads", "num.io.threads", String(self.numIoThreads)),
            ("max-request-bytes", "socket.request.max.bytes", String(self.maxRequestBytes)),
            ("idle-timeout-ms", "connections.max.idle.ms", String(self.idleTimeoutMs)),
            ("max-connections", "max.connections", String(self.maxConnections)),
            ("max-connections-per-ip", "max.connections.per.ip", self.maxConnectionsPerIP.map(String.init) ?? ""),
            ("queued-max-request-bytes", "queued.max.request.bytes", String(self.queuedMaxRequestBytes)),
        ]
        var configs: [String: String] = [:]
        for option in options where given.contains(option.option) { configs[option.key] = option.value }
        if configs["node.id"] != nil { configs["broker.id"] = configs["node.id"] }
        return configs
    }

    /// The long options named on the command line (`--name value` or `--name=value`).
    static func givenOptions(_ arguments: [String]) -> Set<String> {
        Set(
            arguments.dropFirst().compactMap { argument in
                guard argument.hasPrefix("--") else { return nil }
                return argument.dropFirst(2).split(separator: "=", maxSplits: 1).first.map(String.init)
            }
        )
    }

    func brokerConfiguration(given: Set<String>) throws -> BrokerConfiguration {
        var configuration = BrokerConfiguration()
        configuration.nodeId = self.nodeId
        configuration.advertisedHost = self.advertisedAddress.host
        configuration.advertisedPort = Int32(self.advertisedAddress.port)
        configuration.autoCreateTopics = self.autoCreateTopics
        configuration.defaultPartitions = self.defaultPartitions
        configuration.messageMaxBytes = self.messageMaxBytes
        configuration.retentionMs = self.logRetentionMs
        configuration.retentionBytes = self.logRetentionBytes
        configuration.segmentBytes = self.logSegmentBytes
        configuration.retentionCheckIntervalMs = self.retentionCheckIntervalMs
        configuration.flushIntervalMs = self.flushIntervalMs
        configuration.groupInitialRebalanceDelayMs = self.groupInitialRebalanceDelayMs
        configuration.groupMinSessionTimeoutMs = self.groupMinSessionTimeoutMs
        configuration.groupMaxSessionTimeoutMs = self.groupMaxSessionTimeoutMs
        try configuration.setStatic(self.staticBrokerConfigs(given: given))
        let directory = Self.absolutePath(self.dataDir)
        configuration.logDirectory = directory
        configuration.logDirectoryUsage = { VolumeUsage.of(directory) }
        configuration.transactionMaxTimeoutMs = self.transactionMaxTimeoutMs
        configuration.transactionalIdExpirationMs = self.transactionalIdExpirationMs
        return configuration
    }

    /// `path` made absolute against the working directory (DescribeLogDirs reports absolute paths).
    static func absolutePath(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        guard let cwd = getcwd(nil, 0) else { return path }
        defer { free(cwd) }
        let base = String(cString: cwd)
        let relative = path.hasPrefix("./") ? String(path.dropFirst(2)) : path
        return relative.isEmpty || relative == "." ? base : base + "/" + relative
    }

    var serverConfiguration: ServerConfiguration {
        var configuration = ServerConfiguration()
        configuration.host = self.listen.host
        configuration.port = self.listen.port
        configuration.maxFrameBytes = self.maxRequestBytes
        configuration.maxInFlightRequestsPerConnection = self.maxInFlightRequests
        configuration.idleTimeout = .milliseconds(self.idleTimeoutMs)
        configuration.maxConnections = self.maxConnections
        configuration.maxConnectionsPerIP = self.maxConnectionsPerIP ?? Int.max
        configuration.firstRequestTimeout = .milliseconds(self.firstRequestTimeoutMs)
        configuration.queuedMaxRequestBytes = self.queuedMaxRequestBytes
        configuration.maxResponseMemoryBytes = self.maxResponseMemoryBytes
        configuration.maxResponseMemoryBytesPerConnection = self.maxResponseMemoryBytesPerConnection
        return configuration
    }

    // MARK: Running

    /// Runs the broker until SIGINT or SIGTERM. Returns the process exit status.
    func runBroker() async -> Int32 {
        let level = self.logLevel.level
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "fjord")
        // Installed first, so a signal during startup is not fatal; it is acted on once startup is done.
        let signals = ShutdownSignals()

        if let limits = FileDescriptorLimit.raiseSoftToHard() {
            logger.info(
                "open-file limit: soft \(limits.before.soft) -> \(limits.after.soft), hard \(limits.after.hard)"
            )
        }

        let storage: any OpenedStorage
        do {
            storage = try await Storage.open(
                self.backendSelection,
                dataDirectory: self.dataDir,
                backendOptions: self.backendOptions.map { option in
                    let parts = option.split(separator: "=", maxSplits: 1)
                    return (key: String(parts[0]), value: parts.count > 1 ? String(parts[1]) : "")
                },
                ioThreads: self.numIoThreads,
                logger: Logger(label: "fjord.storage")
            )
        } catch {
            return Self.fail("cannot open storage backend \(self.backendSelection) in \(self.dataDir): \(error)")
        }

        let broker: any BrokerService
        do {
            broker = try await storage.startBroker(
                configuration: try self.brokerConfiguration(given: Self.givenOptions(CommandLine.arguments)),
                logger: Logger(label: "fjord.broker")
            )
        } catch {
            await storage.close()
            return Self.fail("cannot start the broker: \(error)")
        }

        let server = KafkaServer(
            configuration: self.serverConfiguration,
            handler: broker,
            logger: Logger(label: "fjord.server"),
            group: MultiThreadedEventLoopGroup.singleton
        )
        let address: SocketAddress
        do {
            address = try await server.start()
        } catch {
            await broker.shutdown()
            await storage.close()
            return Self.fail("cannot listen on \(self.listen): \(Self.describe(error))")
        }

        let bound = HostPort(host: address.ipAddress ?? self.listen.host, port: address.port ?? self.listen.port)
        logger.info("fjord listening on \(bound) (backend \(self.backendSelection), data \(self.dataDir))")
        if self.advertisedAddress != self.listen {
            logger.info("advertising \(self.advertisedAddress) to clients")
        }

        let signal = await signals.wait()
        logger.info("\(ShutdownSignals.name(of: signal)) received: shutting down (send it again to exit at once)")
        let stopwatch = ContinuousClock.now
        // Wake long polls first so the server's graceful shutdown does not wait for them.
        broker.beginShutdown()
        await server.shutdown()
        await broker.shutdown()
        await storage.close()
        signals.stop()
        logger.info("fjord stopped after \(ContinuousClock.now - stopwatch)")
        return 0
    }

    /// Prints one line on stderr and returns the exit status for a startup failure.
    static func fail(_ message: String) -> Int32 {
        printToStandardError("fjord: error: \(message)")
        return 1
    }

    /// "address already in use" rather than "bind(descriptor:ptr:bytes:): Address already in use (errno: 98)".
    static func describe(_ error: any Error) -> String {
        if let error = error as? IOError {
            return String(cString: strerror(error.errnoCode))
        }
        return "\(error)"
    }
}

/// `--log-level` values, as swift-log names them.
enum LogLevel: String, CaseIterable, ExpressibleByArgument {
    case trace, debug, info, notice, warning, error, critical

    var level: Logger.Level {
        // Cannot fail: the cases mirror Logger.Level's raw values.
        Logger.Level(rawValue: self.rawValue)!
    }
}
