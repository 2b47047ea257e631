/// Settings of the Kafka listener. Every queue and frame the transport holds has a limit here.
public struct ServerConfiguration: Sendable, Hashable {
    /// Address to bind. "127.0.0.1" keeps a development broker off the network; "0.0.0.0" listens everywhere.
    public var host: String = "127.0.0.1"
    /// Port to bind; 0 asks the kernel for a free one (tests), `KafkaServer.start()` returns the bound port.
    public var port: Int = 9092
    /// Largest request frame accepted, in bytes, counting the body after the 4-byte size prefix. Kafka's
    /// `socket.request.max.bytes` (default 100 MiB). A larger size prefix closes the connection before
    /// anything is allocated for the body.
    public var maxFrameBytes: Int = 104_857_600
    /// Requests of one connection that may be unanswered at once (handled concurrently, or answered but
    /// waiting behind an earlier one). At the limit the connection stops reading from its socket.
    ///
    /// 64 is well above what clients pipeline in practice (the Java client's
    /// `max.in.flight.requests.per.connection` defaults to 5, librdkafka keeps a few per broker and
    /// partition leader) so it never throttles a well-behaved client, while it bounds the reorder
    /// buffer and the number of concurrent handler tasks a single connection can start.
    public var maxInFlightRequestsPerConnection: Int = 64
    /// A connection with no traffic in either direction and no request in flight for this long is closed.
    /// Kafka's `connections.max.idle.ms` (default 10 minutes).
    public var idleTimeout: Duration = .seconds(600)
    /// Open connections allowed at once. At the limit, a new connection takes the place of the
    /// oldest connection that has not sent a complete request yet (so idle or stalled sockets
    /// cannot lock real clients out); when every connection has, the new one is closed at once
    /// (with a rate-limited warning). Kafka has no global default cap; 10,000 is far above what one
    /// broker serves in practice (each connection costs a file descriptor — fjord raises its
    /// soft limit to the hard one — and its socket buffers) while bounding a connection storm.
    public var maxConnections: Int = 10_000
    /// Open connections allowed from one address (Kafka's `max.connections.per.ip`, unlimited by
    /// default as in Kafka); more are closed at once.
    public var maxConnectionsPerIP: Int = Int.max
    /// A new connection must deliver its first complete request within this time or it is closed:
    /// much shorter than `idleTimeout`, so sockets that never speak free their slot soon.
    public var firstRequestTimeout: Duration = .seconds(10)
    /// Bytes of requests read but not yet answered, over all connections (Kafka's
    /// `queued.max.request.bytes`). Above it connections stop reading until requests complete; a
    /// connection with nothing in flight may still read one request, so progress never stops.
    /// Each connection also stops reading while its own requests in flight hold `maxFrameBytes`.
    public var queuedMaxRequestBytes: Int = 512 << 20
    /// Bytes of responses built but not yet written to their sockets, over all connections.
    /// Fetch sizes its responses to what is left; connections stop reading above it.
    public var maxResponseMemoryBytes: Int = 512 << 20
    /// The same bound for one connection (above a Fetch's default 55 MB `fetch.max.bytes`, so one
    /// consumer's full response always fits).
    public var maxResponseMemoryBytesPerConnection: Int = 64 << 20
    /// How long `KafkaServer.shutdown()` waits for in-flight requests to be answered before it closes
    /// the remaining connections anyway. Below the 10 s that Docker and Kubernetes give a process between
    /// SIGTERM and SIGKILL, so a graceful stop finishes before the hard kill.
    public var shutdownGracePeriod: Duration = .seconds(5)
    /// Pending connections the kernel queues before `accept` (listen backlog).
    public var backlog: Int = 256

    public init() {}

    /// Checks every limit; the server refuses to start with a configuration that fails this.
    public func validate() throws(ServerConfigurationError) {
        func require(_ condition: Bool, _ message: String) throws(ServerConfigurationError) {
            if !condition { throw ServerConfigurationError(message: message) }
        }
        try require(!self.host.isEmpty, "host must not be empty")
        try require((0...65_535).contains(self.port), "port must be in 0...65535, got \(self.port)")
        try require(
            (1...Int(Int32.max)).contains(self.maxFrameBytes),
            "maxFrameBytes must be in 1...\(Int32.max), got \(self.maxFrameBytes)"
        )
        try require(
            self.maxInFlightRequestsPerConnection >= 1,
            "maxInFlightRequestsPerConnection must be at least 1, got \(self.maxInFlightRequestsPerConnection)"
        )
        try require(self.idleTimeout > .zero, "idleTimeout must be positive, got \(self.idleTimeout)")
        try require(self.maxConnections >= 1, "maxConnections must be at least 1, got \(self.maxConnections)")
        try require(
            self.maxConnectionsPerIP >= 1,
            "maxConnectionsPerIP must be at least 1, got \(self.maxConnectionsPerIP)"
        )
        try require(
            self.firstRequestTimeout > .zero,
            "firstRequestTimeout must be positive, got \(self.firstRequestTimeout)"
        )
        try require(
            self.queuedMaxRequestBytes >= 1,
            "queuedMaxRequestBytes must be at least 1, got \(self.queuedMaxRequestBytes)"
        )
        try require(
            self.maxResponseMemoryBytes >= 1 && self.maxResponseMemoryBytesPerConnection >= 1,
            "the response memory limits must be at least 1"
        )
        try require(
            self.shutdownGracePeriod >= .zero,
            "shutdownGracePeriod must not be negative, got \(self.shutdownGracePeriod)"
        )
        try require(self.backlog >= 1, "backlog must be at least 1, got \(self.backlog)")
    }
}

/// A `ServerConfiguration` value out of range.
public struct ServerConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var description: String { "invalid server configuration: \(self.message)" }
}
