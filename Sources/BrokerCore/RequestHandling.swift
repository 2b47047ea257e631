import NIOCore
import Synchronization

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
    /// arrived. The transport calls `handle` once for every sequence number it assigns, in order.
    public var sequence: UInt64
    /// The connection's share of the broker's response memory (nil: unbounded, for tests). A
    /// Fetch reserves from it and sizes its response to what it is granted.
    public var responseBudget: ConnectionBudget?

    public init(connection: ConnectionInfo, sequence: UInt64, responseBudget: ConnectionBudget? = nil) {
        self.connection = connection
        self.sequence = sequence
        self.responseBudget = responseBudget
    }

    public static func == (lhs: RequestContext, rhs: RequestContext) -> Bool {
        lhs.connection == rhs.connection && lhs.sequence == rhs.sequence
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(connection)
        hasher.combine(sequence)
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

/// The core's answer to `handle`: the outcome now, or a promise of it.
public enum RequestReply: Sendable {
    /// Answered at once (the common case for metadata, and for a Produce whose backend completed
    /// every append before `handle` returned).
    case now(RequestOutcome)
    /// Answered later, from any thread: the transport writes the outcome in request order once
    /// `pending` completes. If `pending.holdsOrder`, the transport starts none of the connection's
    /// later requests until the core releases the order (see `PendingOutcome`).
    case later(PendingOutcome)
}

/// The core's entry point for the transport. The transport owns framing, ordering and limits; the
/// handler turns one request frame (without its size prefix) into a reply.
///
/// Threading and order: `handle` is called on the connection's event loop, one request of a
/// connection at a time, in sequence order, and must never block on storage. A request's
/// order-sensitive part (a Produce's offset assignment and appends, a JoinGroup's registration)
/// happens inside `handle`, so the next request of the connection can never overtake it; a
/// request that must wait before it can do that part returns a `PendingOutcome` that holds the
/// order until it has. Kafka handles one request per connection at a time; Fjord overlaps the
/// waiting parts only (durability, long polls, rebalances).
public protocol KafkaRequestHandler: Sendable {
    /// Handles one request. `frame` starts at the request header (API key, version, correlation id).
    func handle(frame: ByteBuffer, context: RequestContext) -> RequestReply

    /// The connection closed (by either side); release anything tied to it. Requests of the
    /// connection that are still pending finish normally; their outcomes are discarded.
    func connectionClosed(_ connection: ConnectionInfo)
}

/// A request's outcome that is not known yet. The core completes it exactly once, from any thread
/// (a storage backend's completion thread, a task); the transport is told once, on whichever thread
/// completes it, and builds and writes the response on its own event loop.
///
/// The outcome is passed as a closure so that encoding the response runs where the transport
/// calls it (its event loop), not on the thread that completed the request.
///
/// Ordering: a pending outcome created with `holdsOrder` keeps the transport from starting the
/// connection's later requests until `releaseOrder()` (or completion, which implies it). The core
/// uses it only where the order-sensitive part of a request cannot run inside `handle`: a Produce
/// to a blocking backend or to a topic that must be created first, and rare admin requests.
public final class PendingOutcome: Sendable {
    public typealias Builder = @Sendable () -> RequestOutcome

    private struct State {
        var builder: Builder?
        var onComplete: (@Sendable (@escaping Builder) -> Void)?
        var orderReleased: Bool
        var onOrderReleased: (@Sendable () -> Void)?
    }

    /// Whether the transport waits for `releaseOrder()` before starting later requests.
    public let holdsOrder: Bool
    private let state: Mutex<State>

    public init(holdsOrder: Bool = false) {
        self.holdsOrder = holdsOrder
        self.state = Mutex(State(orderReleased: !holdsOrder))
    }

    /// Completes with an outcome built later, on the transport's thread. Calls after the first
    /// are ignored.
    public func complete(building builder: @escaping Builder) {
        let (listener, orderListener) = state.withLock {
            state -> ((@Sendable (@escaping Builder) -> Void)?, (@Sendable () -> Void)?) in
            guard state.builder == nil else { return (nil, nil) }
            state.builder = builder
            var orderListener: (@Sendable () -> Void)?
            if !state.orderReleased {
                state.orderReleased = true
                orderListener = state.onOrderReleased
                state.onOrderReleased = nil
            }
            defer { state.onComplete = nil }
            return (state.onComplete, orderListener)
        }
        orderListener?()
        listener?(builder)
    }

    /// Completes with an outcome that is already built.
    public func complete(_ outcome: RequestOutcome) {
        complete(building: { outcome })
    }

    /// Lets the transport start the connection's later requests: the order-sensitive part of
    /// this one is done. Idempotent; implied by completion.
    public func releaseOrder() {
        let listener = state.withLock { state -> (@Sendable () -> Void)? in
            guard !state.orderReleased else { return nil }
            state.orderReleased = true
            defer { state.onOrderReleased = nil }
            return state.onOrderReleased
        }
        listener?()
    }

    // MARK: The transport's side

    /// The builder if the outcome is already known (the transport asks right after `handle`).
    public var completedBuilder: Builder? { state.withLock { $0.builder } }

    /// Whether the order is released already.
    public var isOrderReleased: Bool { state.withLock { $0.orderReleased } }

    /// Registers the transport's listener: called once, on the completing thread, with the builder;
    /// at once if the outcome is known already.
    public func whenComplete(_ listener: @escaping @Sendable (@escaping Builder) -> Void) {
        let ready = state.withLock { state -> Builder? in
            if let builder = state.builder { return builder }
            state.onComplete = listener
            return nil
        }
        if let ready { listener(ready) }
    }

    /// Registers the listener for `releaseOrder()`: called once; at once if released already.
    public func whenOrderReleased(_ listener: @escaping @Sendable () -> Void) {
        let released = state.withLock { state -> Bool in
            if state.orderReleased { return true }
            state.onOrderReleased = listener
            return false
        }
        if released { listener() }
    }
}
