import Synchronization

/// The broker-wide bound on bytes of responses built but not yet written to their sockets, shared
/// by every connection's `ConnectionBudget`. Kafka bounds requests with `queued.max.request.bytes`;
/// this is the same idea for responses, which a client that stops reading its socket would
/// otherwise make the broker hold without limit (a Fetch response can be 50 MB).
///
/// Fetch reserves from it before reading storage and sizes its response to what it was granted;
/// the transport charges each response from the moment it is queued until the socket took it, and
/// stops reading a connection over its share.
public final class ResponseMemoryPool: Sendable {
    public let limitBytes: Int
    private let usedBytes = Atomic<Int>(0)

    public init(limitBytes: Int) {
        precondition(limitBytes >= 1, "the response memory limit must be positive")
        self.limitBytes = limitBytes
    }

    public var used: Int { usedBytes.load(ordering: .relaxed) }
    public var isExhausted: Bool { used >= limitBytes }

    /// Takes up to `wanted` bytes of what is free (0 when nothing is).
    fileprivate func take(upTo wanted: Int) -> Int {
        var current = usedBytes.load(ordering: .relaxed)
        while true {
            let granted = max(0, min(wanted, limitBytes - current))
            if granted == 0 { return 0 }
            let (exchanged, original) = usedBytes.compareExchange(
                expected: current,
                desired: current + granted,
                ordering: .acquiringAndReleasing
            )
            if exchanged { return granted }
            current = original
        }
    }

    /// Adds bytes regardless of the limit (a response already built must be written).
    fileprivate func force(_ bytes: Int) {
        usedBytes.add(bytes, ordering: .relaxed)
    }

    fileprivate func give(_ bytes: Int) {
        usedBytes.subtract(bytes, ordering: .relaxed)
    }
}

/// One connection's share of the `ResponseMemoryPool`: what its responses in flight (reserved by
/// a Fetch, or queued and not yet written) hold. Used from any thread. When the connection closes,
/// `close()` gives back everything it still holds, and later releases are ignored.
public final class ConnectionBudget: Sendable {
    private struct State {
        var used = 0
        var closed = false
    }

    public let pool: ResponseMemoryPool
    /// The most this connection may hold.
    public let limitBytes: Int
    private let state = Mutex(State())

    public init(pool: ResponseMemoryPool, limitBytes: Int) {
        precondition(limitBytes >= 1, "the per-connection response memory limit must be positive")
        self.pool = pool
        self.limitBytes = limitBytes
    }

    /// Bytes this connection holds now.
    public var used: Int { state.withLock { $0.used } }

    /// Whether the connection should stop reading requests: it holds its share, or the broker's.
    public var isOverShare: Bool { used >= limitBytes || pool.isExhausted }

    /// Reserves up to `wanted` bytes for a response about to be built (Fetch): the smaller of
    /// what is left of this connection's share and of the pool. 0 when either is used up.
    public func reserve(upTo wanted: Int) -> Int {
        state.withLock { state in
            guard !state.closed else { return 0 }
            let room = max(0, min(wanted, limitBytes - state.used))
            let granted = pool.take(upTo: room)
            state.used += granted
            return granted
        }
    }

    /// Charges a response that is queued for writing, whatever the limits (it exists already).
    public func charge(_ bytes: Int) {
        state.withLock { state in
            guard !state.closed else { return }
            state.used += bytes
            pool.force(bytes)
        }
    }

    /// Gives back what `reserve` or `charge` took.
    public func release(_ bytes: Int) {
        state.withLock { state in
            guard !state.closed else { return }
            let given = min(bytes, state.used)
            state.used -= given
            pool.give(given)
        }
    }

    /// The connection closed: everything it holds goes back to the pool.
    public func close() {
        state.withLock { state in
            guard !state.closed else { return }
            state.closed = true
            pool.give(state.used)
            state.used = 0
        }
    }
}
