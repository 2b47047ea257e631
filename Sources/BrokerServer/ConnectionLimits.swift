import NIOCore
import Synchronization

/// The limits one connection enforces, from `ServerConfiguration`.
struct ConnectionLimits: Sendable {
    var maxInFlightRequests: Int
    /// Bytes of this connection's requests read but not answered before it stops reading.
    var maxInFlightRequestBytes: Int
    var idleTimeout: TimeAmount
    var firstRequestTimeout: TimeAmount

    init(
        maxInFlightRequests: Int,
        maxInFlightRequestBytes: Int = .max,
        idleTimeout: TimeAmount,
        firstRequestTimeout: TimeAmount = .hours(24)
    ) {
        self.maxInFlightRequests = maxInFlightRequests
        self.maxInFlightRequestBytes = maxInFlightRequestBytes
        self.idleTimeout = idleTimeout
        self.firstRequestTimeout = firstRequestTimeout
    }

    init(_ configuration: ServerConfiguration) {
        self.init(
            maxInFlightRequests: configuration.maxInFlightRequestsPerConnection,
            maxInFlightRequestBytes: configuration.maxFrameBytes,
            idleTimeout: TimeAmount(configuration.idleTimeout),
            firstRequestTimeout: TimeAmount(configuration.firstRequestTimeout)
        )
    }
}

/// Bytes of requests read but not answered, over every connection (`queuedMaxRequestBytes`).
final class RequestMemoryPool: Sendable {
    let limitBytes: Int
    private let usedBytes = Atomic<Int>(0)

    init(limitBytes: Int) {
        self.limitBytes = limitBytes
    }

    var used: Int { self.usedBytes.load(ordering: .relaxed) }
    var isExhausted: Bool { self.used >= self.limitBytes }

    func add(_ bytes: Int) { self.usedBytes.add(bytes, ordering: .relaxed) }
    func remove(_ bytes: Int) { self.usedBytes.subtract(bytes, ordering: .relaxed) }
}

/// What the server knows of one open connection, shared with its handler.
final class ConnectionRecord: Sendable {
    let id: UInt64
    let host: String
    let channel: any Channel
    let acceptedAt: NIODeadline
    private let receivedRequest = Atomic<Bool>(false)

    init(id: UInt64, host: String, channel: any Channel, acceptedAt: NIODeadline) {
        self.id = id
        self.host = host
        self.channel = channel
        self.acceptedAt = acceptedAt
    }

    /// Whether a complete request arrived: until then the connection may be evicted at the limit.
    var hasReceivedRequest: Bool { self.receivedRequest.load(ordering: .relaxed) }
    func markReceivedRequest() { self.receivedRequest.store(true, ordering: .relaxed) }
}
