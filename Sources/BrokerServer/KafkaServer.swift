import BrokerCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// Counters for logs and tests; a snapshot from `KafkaServer.statistics`.
public struct ServerStatistics: Sendable, Hashable {
    /// Connections open now.
    public var openConnections: Int = 0
    /// Connections accepted and served since start.
    public var acceptedConnections: Int = 0
    /// Connections closed at once because `maxConnections` (or `maxConnectionsPerIP`) were open,
    /// or the server was shutting down.
    public var refusedConnections: Int = 0
    /// Connections that had not sent a complete request, closed to make room for a new one at
    /// `maxConnections`.
    public var evictedConnections: Int = 0
    /// Requests whose `handle` call has returned.
    public var requestsHandled: Int = 0
    /// Bytes of responses built and not yet written (or reserved by a Fetch), over all connections.
    public var responseMemoryBytes: Int = 0
    /// Bytes of requests read and not yet answered, over all connections.
    public var requestMemoryBytes: Int = 0

    public init() {}
}

/// The Kafka TCP listener: accepts connections, frames requests, enforces the limits of
/// `ServerConfiguration`, and hands each request to a `KafkaRequestHandler`.
///
/// ```swift
/// let server = KafkaServer(configuration: configuration, handler: broker, logger: logger)
/// let address = try await server.start()
/// // ...
/// broker.beginShutdown()    // wakes long polls
/// await server.shutdown()   // answers what is in flight, then closes every connection
/// ```
public final class KafkaServer: Sendable {
    public let configuration: ServerConfiguration
    private let handler: any KafkaRequestHandler
    private let logger: Logger
    private let group: any EventLoopGroup
    private let counters = ServerCounters()
    private let mailboxes = EventLoopMailboxes()
    private let responseMemory: ResponseMemoryPool
    private let requestMemory: RequestMemoryPool
    private let state = NIOLockedValueBox(State())

    private enum Lifecycle {
        case idle, starting, running, shuttingDown, stopped
    }

    private struct State {
        var lifecycle = Lifecycle.idle
        var serverChannel: (any Channel)?
        /// Open connections by connection id, so shutdown can reach every one.
        var connections: [UInt64: ConnectionRecord] = [:]
        /// Open connections per peer address (`maxConnectionsPerIP`).
        var connectionsPerHost: [String: Int] = [:]
        var nextConnectionID: UInt64 = 1
        /// Rate limit for the "connection refused" warning.
        var lastRefusalWarning = NIODeadline.distantPast
        var refusalsSinceWarning = 0
    }

    /// At most one "connection refused" warning per interval, so a connection storm cannot flood the log.
    private static let refusalWarningInterval = TimeAmount.seconds(1)

    /// - Parameters:
    ///   - group: runs the listener and the connections; `MultiThreadedEventLoopGroup.singleton` is a
    ///     good choice. The server never shuts the group down.
    public init(
        configuration: ServerConfiguration,
        handler: any KafkaRequestHandler,
        logger: Logger,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.configuration = configuration
        self.handler = handler
        self.logger = logger
        self.group = group
        self.responseMemory = ResponseMemoryPool(limitBytes: max(1, configuration.maxResponseMemoryBytes))
        self.requestMemory = RequestMemoryPool(limitBytes: max(1, configuration.queuedMaxRequestBytes))
    }

    /// A snapshot of the counters.
    public var statistics: ServerStatistics {
        var statistics = self.counters.snapshot
        statistics.openConnections = self.state.withLockedValue { $0.connections.count }
        statistics.responseMemoryBytes = self.responseMemory.used
        statistics.requestMemoryBytes = self.requestMemory.used
        return statistics
    }

    /// The bound address while the server is running.
    public var localAddress: SocketAddress? {
        self.state.withLockedValue { $0.serverChannel?.localAddress }
    }

    /// Validates the configuration, binds the listening socket and starts accepting connections.
    ///
    /// - Returns: the bound address (with the real port when `configuration.port` is 0).
    /// - Throws: `ServerConfigurationError` for an invalid configuration, NIO's `IOError` when the address
    ///   cannot be bound (port in use, no permission), `KafkaServerError` if called twice.
    public func start() async throws -> SocketAddress {
        try self.configuration.validate()
        try self.state.withLockedValue { state in
            guard case .idle = state.lifecycle else { throw KafkaServerError.alreadyStarted }
            state.lifecycle = .starting
        }
        let bootstrap = ServerBootstrap(group: self.group)
            .serverChannelOption(.backlog, value: Int32(self.configuration.backlog))
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptErrorLogger(logger: self.logger))
                }
            }
            // Kafka requests and responses are small messages that must not wait for Nagle's algorithm.
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                self.initializeConnection(channel)
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: self.configuration.host, port: self.configuration.port).get()
        } catch {
            self.state.withLockedValue { $0.lifecycle = .stopped }
            throw error
        }
        let shutDownWhileStarting = self.state.withLockedValue { state in
            guard case .starting = state.lifecycle else { return true }
            state.lifecycle = .running
            state.serverChannel = channel
            return false
        }
        if shutDownWhileStarting {
            try? await channel.close()
            throw KafkaServerError.shutDown
        }
        // Cannot be nil: a bound socket has a local address.
        let address = channel.localAddress!
        self.logger.debug(
            "Kafka listener bound",
            metadata: [
                "address": "\(hostAndPort(address))",
                "maxConnections": "\(self.configuration.maxConnections)",
                "maxInFlightRequestsPerConnection": "\(self.configuration.maxInFlightRequestsPerConnection)",
                "maxFrameBytes": "\(self.configuration.maxFrameBytes)",
            ]
        )
        return address
    }

    /// Stops the server gracefully:
    ///
    /// 1. stops accepting connections;
    /// 2. every connection stops reading; frames that were read but not started yet are dropped;
    /// 3. requests already started run to the end and their responses are written in order, then the
    ///    connection closes;
    /// 4. after `shutdownGracePeriod`, connections still waiting for a request are closed anyway (the
    ///    request finishes in the core; its outcome is dropped).
    ///
    /// Long polls (Fetch with `MaxWaitMs`, JoinGroup waiting for members) are in-flight requests too:
    /// step 3 waits for them. Call `Broker.beginShutdown()` first: it wakes them so they answer at once
    /// with what they have, and shutdown takes milliseconds rather than the grace period.
    ///
    /// Returns once every connection is closed. Calling it again, or before `start()`, returns at once.
    public func shutdown() async {
        let (serverChannel, connections): ((any Channel)?, [any Channel]) = self.state.withLockedValue { state in
            switch state.lifecycle {
            case .idle, .starting:
                state.lifecycle = .stopped
                return (nil, [])
            case .shuttingDown, .stopped:
                return (nil, [])
            case .running:
                // From here on `initializeConnection` refuses every new connection.
                state.lifecycle = .shuttingDown
                return (state.serverChannel, state.connections.values.map(\.channel))
            }
        }
        guard let serverChannel else { return }
        try? await serverChannel.close()

        self.logger.debug("shutting down Kafka listener", metadata: ["connections": "\(connections.count)"])
        for connection in connections {
            connection.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
        let gracePeriod = self.configuration.shutdownGracePeriod
        let closedInTime = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for connection in connections {
                    try? await connection.closeFuture.get()
                }
                return true
            }
            group.addTask {
                do {
                    try await Task.sleep(for: gracePeriod)
                    return false
                } catch {
                    return true  // cancelled: every connection closed first
                }
            }
            // Cannot be nil: two tasks were added.
            let closedInTime = await group.next()!
            if !closedInTime {
                let stillOpen = connections.filter(\.isActive).count
                self.logger.warning(
                    "shutdown grace period of \(gracePeriod) is over; closing \(stillOpen) connection(s) with requests in flight"
                )
                for connection in connections {
                    connection.close(promise: nil)
                }
            }
            group.cancelAll()
            // Wait for the other task (the close wait ends once the forced closes are done).
            _ = await group.next()
            return closedInTime
        }
        self.state.withLockedValue { state in
            state.lifecycle = .stopped
            state.serverChannel = nil
        }
        self.logger.debug("Kafka listener stopped", metadata: ["graceful": "\(closedInTime)"])
    }

    // MARK: Connections

    private enum Admission {
        case admitted(ConnectionRecord, evicted: ConnectionRecord?)
        case refused(reason: String, warn: Bool, suppressedWarnings: Int)
    }

    /// Runs on the new connection's event loop before it is registered.
    private func initializeConnection(_ channel: any Channel) -> EventLoopFuture<Void> {
        let peer = hostAndPort(channel.remoteAddress)
        let host = channel.remoteAddress?.ipAddress ?? peer
        let admission = self.state.withLockedValue { state in self.admit(channel, host: host, &state) }

        switch admission {
        case .refused(let reason, let warn, let suppressed):
            self.counters.connectionRefused()
            if warn {
                let more = suppressed > 0 ? " (\(suppressed) more refused since the last warning)" : ""
                self.logger.warning("refusing connection from \(peer): \(reason)\(more)")
            }
            // Failing the initializer makes NIO close the accepted socket.
            return channel.eventLoop.makeFailedFuture(ConnectionRefused())

        case .admitted(let record, let evicted):
            self.counters.connectionAccepted()
            if let evicted {
                self.counters.connectionEvicted()
                self.logger.info(
                    "closing connection \(evicted.id) from \(evicted.host), which sent no request yet, to admit one from \(peer): \(self.configuration.maxConnections) connections open"
                )
                evicted.channel.close(promise: nil)
            }
            channel.closeFuture.whenComplete { _ in
                self.state.withLockedValue { state in
                    guard state.connections.removeValue(forKey: record.id) != nil else { return }
                    let remaining = (state.connectionsPerHost[record.host] ?? 1) - 1
                    state.connectionsPerHost[record.host] = remaining > 0 ? remaining : nil
                }
            }
            let connection = ConnectionInfo(id: record.id, remoteAddress: peer)
            self.logger.debug("accepted \(connection)")
            let budget = ConnectionBudget(
                pool: self.responseMemory,
                limitBytes: max(1, self.configuration.maxResponseMemoryBytesPerConnection)
            )
            return channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandlers(
                    ByteToMessageHandler(KafkaFrameDecoder(maxFrameBytes: self.configuration.maxFrameBytes)),
                    KafkaConnectionHandler(
                        connection: connection,
                        requestHandler: self.handler,
                        limits: ConnectionLimits(self.configuration),
                        logger: self.logger,
                        mailbox: self.mailboxes.mailbox(for: channel.eventLoop),
                        memory: (budget, self.requestMemory),
                        record: record,
                        counters: self.counters
                    )
                )
            }
        }
    }

    /// Decides whether a new connection is served: the server must be running, its address under
    /// `maxConnectionsPerIP`, and the server under `maxConnections` — or able to make room by
    /// closing the oldest connection that has not sent a complete request.
    private func admit(_ channel: any Channel, host: String, _ state: inout State) -> Admission {
        func refuse(_ reason: String, warnable: Bool) -> Admission {
            let now = NIODeadline.now()
            let warn = now - state.lastRefusalWarning >= Self.refusalWarningInterval
            let suppressed = state.refusalsSinceWarning
            if warn {
                state.lastRefusalWarning = now
                state.refusalsSinceWarning = 0
            } else {
                state.refusalsSinceWarning += 1
            }
            return .refused(reason: reason, warn: warn && warnable, suppressedWarnings: suppressed)
        }
        guard case .running = state.lifecycle else { return refuse("the server is not running", warnable: false) }
        let fromHost = state.connectionsPerHost[host] ?? 0
        guard fromHost < self.configuration.maxConnectionsPerIP else {
            return refuse(
                "\(fromHost) connections open from \(host), the limit is \(self.configuration.maxConnectionsPerIP) "
                    + "(max.connections.per.ip)",
                warnable: true
            )
        }
        var evicted: ConnectionRecord?
        if state.connections.count >= self.configuration.maxConnections {
            guard
                let victim = state.connections.values.filter({ !$0.hasReceivedRequest }).min(by: {
                    $0.acceptedAt < $1.acceptedAt
                })
            else {
                return refuse(
                    "\(state.connections.count) connections open, the limit is \(self.configuration.maxConnections)",
                    warnable: true
                )
            }
            state.connections.removeValue(forKey: victim.id)
            let remaining = (state.connectionsPerHost[victim.host] ?? 1) - 1
            state.connectionsPerHost[victim.host] = remaining > 0 ? remaining : nil
            evicted = victim
        }
        let id = state.nextConnectionID
        state.nextConnectionID += 1
        let record = ConnectionRecord(id: id, host: host, channel: channel, acceptedAt: .now())
        state.connections[id] = record
        state.connectionsPerHost[host, default: 0] += 1
        return .admitted(record, evicted: evicted)
    }
}

/// Misuse of `KafkaServer`'s lifecycle.
public enum KafkaServerError: Error, Sendable, Hashable, CustomStringConvertible {
    /// `start()` was called more than once.
    case alreadyStarted
    /// `shutdown()` was called while `start()` was binding.
    case shutDown

    public var description: String {
        switch self {
        case .alreadyStarted: "the server was already started"
        case .shutDown: "the server was shut down while starting"
        }
    }
}

/// Fails a connection's initializer so NIO closes it; reported by the warning above, not again.
private struct ConnectionRefused: Error {}

/// Logs errors on the listening socket (accept failing with EMFILE, for example), which NIO would
/// otherwise drop silently. NIO backs off accepting on its own.
private final class AcceptErrorLogger: ChannelInboundHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel

    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !(error is ConnectionRefused) {
            self.logger.warning("error on the Kafka listener: \(error)")
        }
        context.fireErrorCaught(error)
    }
}

/// Counters updated from any thread.
final class ServerCounters: Sendable {
    private let statistics = NIOLockedValueBox(ServerStatistics())

    var snapshot: ServerStatistics { self.statistics.withLockedValue { $0 } }

    func connectionAccepted() { self.statistics.withLockedValue { $0.acceptedConnections += 1 } }
    func connectionRefused() { self.statistics.withLockedValue { $0.refusedConnections += 1 } }
    func connectionEvicted() { self.statistics.withLockedValue { $0.evictedConnections += 1 } }
    func requestHandled() { self.statistics.withLockedValue { $0.requestsHandled += 1 } }
}

/// "127.0.0.1:53422" or "[::1]:53422": the form Kafka uses for client hosts.
func hostAndPort(_ address: SocketAddress?) -> String {
    guard let address else { return "unknown" }
    switch address {
    case .v4:
        return "\(address.ipAddress ?? "?"):\(address.port ?? 0)"
    case .v6:
        return "[\(address.ipAddress ?? "?")]:\(address.port ?? 0)"
    case .unixDomainSocket:
        return address.pathname ?? "unix"
    }
}
