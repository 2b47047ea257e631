import NIOCore

/// Who sent a request: the transport's view of one client connection.
public struct ConnectionInfo: Sendable, Hashable, CustomStringConvertible {
    /// Unique for the lifetime of the process.
    public var id: UInt64
    /// The peer's address as text ("127.0.0.1:53422"), for logs and DescribeGroups' client host.
    public var remoteAddress: String

    public init(id: UInt64, remoteAddress: String) {
        self.id = id
        self.remoteAddress = remoteAddress
    }

    public var description: String { "connection \(id) from \(remoteAddress)" }
}

/// One request's place in its connection.
public struct RequestContext: Sendable, Hashable {
    public var connection: ConnectionInfo
    /// 0 for the first frame read from the connection, then +1 per frame, in the order the frames
    /// arrived. The transport calls `handle` exactly once for every sequence number it assigns, so
    /// the core can keep Kafka's per-connection ordering (a pipelined Produce must not overtake the
    /// one before it) while still running requests concurrently.
    public var sequence: UInt64

    public init(connection: ConnectionInfo, sequence: UInt64) {
        self.connection = connection
        self.sequence = sequence
    }
}

/// What the transport does with one request frame once the core has handled it.
public enum RequestOutcome: Sendable {
    /// Write this complete response frame (the 4-byte size prefix included) in request order.
    case respond(ByteBuffer)
    /// Nothing to write (a Produce with acks=0); later responses must not wait for this one.
    case noResponse
    /// Close the connection after writing every earlier response: the request could not be parsed
    /// (unknown API key, unsupported version, truncated body) or it is a Produce with acks=0 that
    /// failed, which Kafka signals by closing. `reason` is for the broker's log.
    case close(reason: String)
}

/// The core's entry point for the transport. The transport owns framing, ordering and limits; the
/// handler turns one request frame (without its size prefix) into an outcome. Implementations must
/// never block the calling thread on storage.
public protocol KafkaRequestHandler: Sendable {
    /// Handles one request. `frame` starts at the request header (API key, version, correlation id).
    /// Requests of one connection may be handled concurrently; the transport writes their outcomes
    /// in sequence order.
    func handle(frame: ByteBuffer, context: RequestContext) async -> RequestOutcome

    /// The connection closed (by either side); release anything tied to it. Requests of the
    /// connection that are still being handled finish normally; their outcomes are discarded.
    func connectionClosed(_ connection: ConnectionInfo)
}
