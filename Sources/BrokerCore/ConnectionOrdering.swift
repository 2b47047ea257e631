import Synchronization

/// Keeps Kafka's per-connection ordering while requests run concurrently.
///
/// Kafka handles one request per connection at a time, so a pipelined Produce can never overtake
/// the one before it (an idempotent producer's sequence numbers depend on that). Fjord lets
/// requests of a connection overlap where it is safe: each request waits for its *turn* (all
/// earlier requests of the connection have passed their ordering-sensitive part), does that part,
/// then passes the turn on and finishes concurrently — a Produce passes it once its appends are
/// submitted, a Fetch at once, most other requests when they are done.
final class ConnectionOrdering: Sendable {
    private struct State {
        var nextTurn: UInt64 = 0
        var waiting: [UInt64: CheckedContinuation<Void, Never>] = [:]
    }
    private let state = Mutex(State())

    /// Suspends until every request with a smaller sequence number has released its turn.
    func waitForTurn(_ sequence: UInt64) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { state -> Bool in
                if state.nextTurn == sequence { return true }
                precondition(state.nextTurn < sequence, "request sequence \(sequence) handled twice")
                state.waiting[sequence] = continuation
                return false
            }
            if ready { continuation.resume() }
        }
    }

    /// Passes the turn to the next request of the connection.
    func release(_ sequence: UInt64) {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            precondition(state.nextTurn == sequence, "request \(sequence) released a turn it did not hold")
            state.nextTurn = sequence + 1
            return state.waiting.removeValue(forKey: sequence + 1)
        }
        next?.resume()
    }
}

/// One request's hold on its connection's turn; releasing is idempotent so handlers can pass the
/// turn early and the dispatcher can release unconditionally at the end.
final class Turn: Sendable {
    private let ordering: ConnectionOrdering
    private let sequence: UInt64
    private let released = Atomic<Bool>(false)

    init(ordering: ConnectionOrdering, sequence: UInt64) {
        self.ordering = ordering
        self.sequence = sequence
    }

    func release() {
        if !released.exchange(true, ordering: .acquiringAndReleasing) {
            ordering.release(sequence)
        }
    }
}
