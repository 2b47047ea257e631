import NIOConcurrencyHelpers
import NIOCore

/// Work handed to one event loop from other threads, one wake-up per burst.
///
/// A storage backend completes the appends of many requests in one I/O round, on its own thread;
/// each completed request must be answered on its connection's event loop. Posting each answer
/// with `execute` would wake the loop once per request. The mailbox queues them and schedules a
/// single drain while one is not already pending, so a round's answers for one loop cost one
/// wake-up however many connections and requests it completes.
final class EventLoopMailbox: Sendable {
    private struct State {
        var items: [@Sendable () -> Void] = []
        var drainScheduled = false
    }

    let eventLoop: any EventLoop
    private let state = NIOLockedValueBox(State())

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Runs `item` on the event loop, after the items posted before it. Never runs it inline, even
    /// when called on the loop: the caller may be in the middle of a channel handler call.
    func post(_ item: @escaping @Sendable () -> Void) {
        let schedule = self.state.withLockedValue { state -> Bool in
            state.items.append(item)
            if state.drainScheduled { return false }
            state.drainScheduled = true
            return true
        }
        if schedule {
            self.eventLoop.execute { self.drain() }
        }
    }

    /// Runs what is queued now; items posted meanwhile get one more drain, scheduled behind the
    /// loop's other work so a busy mailbox cannot starve its sockets.
    private func drain() {
        let items = self.state.withLockedValue { state -> [@Sendable () -> Void] in
            defer { state.items.removeAll(keepingCapacity: true) }
            return state.items
        }
        for item in items { item() }
        let again = self.state.withLockedValue { state -> Bool in
            if state.items.isEmpty {
                state.drainScheduled = false
                return false
            }
            return true
        }
        if again {
            self.eventLoop.execute { self.drain() }
        }
    }
}

/// One mailbox per event loop of a server, created on first use.
final class EventLoopMailboxes: Sendable {
    private let mailboxes = NIOLockedValueBox([ObjectIdentifier: EventLoopMailbox]())

    func mailbox(for eventLoop: any EventLoop) -> EventLoopMailbox {
        self.mailboxes.withLockedValue { mailboxes in
            let key = ObjectIdentifier(eventLoop)
            if let existing = mailboxes[key] { return existing }
            let created = EventLoopMailbox(eventLoop: eventLoop)
            mailboxes[key] = created
            return created
        }
    }
}
