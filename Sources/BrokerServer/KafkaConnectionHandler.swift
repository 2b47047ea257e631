import BrokerCore
import Logging
import NIOCore

/// One client connection: assigns sequence numbers to decoded frames, hands each to the core on
/// this event loop in arrival order, and writes the outcomes strictly in request order.
///
/// Sits last in the pipeline, after `ByteToMessageHandler(KafkaFrameDecoder)`. All its state is
/// confined to the channel's event loop. The core answers a request at once or with a
/// `PendingOutcome`; pending outcomes completed on other threads come back through the loop's
/// `EventLoopMailbox`, one wake-up per burst. A pending outcome that holds the connection's order
/// keeps later frames undispatched until the core releases it: the transport, not the core,
/// keeps Kafka's one-request-at-a-time order where it matters.
///
/// Limits:
/// - At most `maxInFlightRequests` requests are unanswered at once (being handled, or answered but
///   waiting behind an earlier request). At the limit the handler holds back `read()`, so the kernel's
///   receive buffer and then TCP flow control push back on the client. Frames that were already in the
///   last read are queued undispatched (bounded by one read's bytes) and started as slots free up, so
///   the request handler never sees more than the limit.
/// - While the channel is not writable (the client does not read its responses), reading stops too,
///   so responses cannot pile up without bound.
final class KafkaConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum Lifecycle {
        /// Reading and serving requests.
        case open
        /// The server is shutting down: no new requests are started; the connection closes once every
        /// started request has been answered.
        case quiescing
        /// Everything that will be written has been written; waiting for the flush, then closing.
        case closing(since: NIODeadline)
        /// The channel went inactive; late outcomes are dropped.
        case closed
    }

    let connection: ConnectionInfo
    private let requestHandler: any KafkaRequestHandler
    private let limits: ConnectionLimits
    private var maxInFlightRequests: Int { self.limits.maxInFlightRequests }
    private var idleTimeout: TimeAmount { self.limits.idleTimeout }
    private let logger: Logger
    private let counters: ServerCounters?
    private let mailbox: EventLoopMailbox
    /// The connection's share of response memory (nil: unbounded).
    private let responseBudget: ConnectionBudget?
    /// Bytes of requests read and not answered, over all connections (nil: unbounded).
    private let requestPool: RequestMemoryPool?
    /// The server's record of this connection (nil in tests without a server).
    private let record: ConnectionRecord?
    /// Bytes of this connection's requests read and not answered (undispatched ones included),
    /// and each in-flight request's share of it, by slot.
    private var inFlightRequestBytes = 0
    private var requestBytes: [Int]
    private var receivedRequest = false
    /// When the handler joined the pipeline, on the event loop's clock (virtual in tests).
    private var acceptedAt = NIODeadline.distantPast
    /// A re-check of a read held back only by broker-wide memory, which other connections free.
    private var memoryRecheck: Scheduled<Void>?

    private var lifecycle = Lifecycle.open
    /// The sequence number the next started request gets.
    private var nextSequence: UInt64 = 0
    /// The sequence number whose outcome is written next.
    private var nextSequenceToWrite: UInt64 = 0
    /// Reorder buffer: the outcome of sequence `s` waits in slot `s % maxInFlightRequests` until every
    /// earlier outcome is written. At most `maxInFlightRequests` sequences are unanswered, so slots
    /// never collide.
    private var outcomes: [RequestOutcome?]
    /// Decoded frames not started yet because the in-flight limit was reached.
    private var undispatchedFrames = CircularBuffer<ByteBuffer>()
    /// The first sequence whose outcome was `.close`: nothing after it is started or written.
    private var closeSequence: UInt64?
    /// A pending request that holds the connection's order (see `PendingOutcome.holdsOrder`): no
    /// later frame is dispatched until the core releases it.
    private var orderHeldBy: UInt64?
    /// `startUndispatchedRequests` is running (see there), and a flush is owed when it ends.
    private var dispatching = false
    private var flushPending = false
    /// A `read()` from the channel that we hold back until reading is allowed again.
    private var readPending = false
    private var writable = true
    /// Last time bytes were read or responses were written, for the idle timeout.
    private var lastActivity = NIODeadline.distantPast
    private var idleCheck: Scheduled<Void>?

    init(
        connection: ConnectionInfo,
        requestHandler: any KafkaRequestHandler,
        limits: ConnectionLimits,
        logger: Logger,
        mailbox: EventLoopMailbox,
        memory: (responses: ConnectionBudget, requests: RequestMemoryPool)? = nil,
        record: ConnectionRecord? = nil,
        counters: ServerCounters? = nil
    ) {
        precondition(limits.maxInFlightRequests >= 1, "maxInFlightRequests must be positive")
        self.mailbox = mailbox
        self.connection = connection
        self.requestHandler = requestHandler
        self.limits = limits
        self.logger = logger
        self.counters = counters
        self.responseBudget = memory?.responses
        self.requestPool = memory?.requests
        self.record = record
        self.outcomes = Array(repeating: nil, count: limits.maxInFlightRequests)
        self.requestBytes = Array(repeating: 0, count: limits.maxInFlightRequests)
    }

    /// Requests started whose outcome has not been written (or skipped) yet.
    private var inFlightCount: Int { Int(self.nextSequence - self.nextSequenceToWrite) }

    private var isAcceptingRequests: Bool {
        if case .open = self.lifecycle, self.closeSequence == nil { return true }
        return false
    }

    private var mayRead: Bool {
        self.isAcceptingRequests && self.writable && self.undispatchedFrames.isEmpty
            && self.inFlightCount < self.maxInFlightRequests && self.memoryAllowsReading
    }

    /// Memory bounds on reading: this connection's requests in flight and unwritten responses, and
    /// the broker-wide pools — except that a connection with nothing in flight may always read one
    /// request, so every client makes progress.
    private var memoryAllowsReading: Bool {
        let idle = self.inFlightCount == 0 && self.undispatchedFrames.isEmpty
        if self.inFlightRequestBytes >= self.limits.maxInFlightRequestBytes && !idle { return false }
        if let pool = self.requestPool, pool.isExhausted, !idle { return false }
        if let budget = self.responseBudget, budget.isOverShare, budget.used > 0 || !idle { return false }
        return true
    }

    // MARK: Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.writable = context.channel.isWritable
        // Times come from the event loop's clock (`EventLoop.now`), so tests can drive them with an
        // embedded loop's virtual time.
        self.acceptedAt = context.eventLoop.now
        self.lastActivity = self.acceptedAt
        if context.channel.isActive {
            self.scheduleIdleCheck(context: context, deadline: context.eventLoop.now + self.firstCheckDelay)
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        self.lastActivity = context.eventLoop.now
        if self.idleCheck == nil {
            self.scheduleIdleCheck(context: context, deadline: self.lastActivity + self.firstCheckDelay)
        }
        context.fireChannelActive()
    }

    /// Until the first request, the first-request deadline comes before the idle timeout.
    private var firstCheckDelay: TimeAmount { min(self.idleTimeout, self.limits.firstRequestTimeout) }

    func channelInactive(context: ChannelHandlerContext) {
        if case .closed = self.lifecycle {
            context.fireChannelInactive()
            return
        }
        self.lifecycle = .closed
        self.idleCheck?.cancel()
        self.idleCheck = nil
        // Release buffers now; handler tasks still running finish and their outcomes are dropped.
        self.undispatchedFrames.removeAll()
        for index in self.outcomes.indices { self.outcomes[index] = nil }
        self.requestPool?.remove(self.inFlightRequestBytes)
        self.inFlightRequestBytes = 0
        self.responseBudget?.close()
        self.memoryRecheck?.cancel()
        self.logger.debug("\(self.connection) closed")
        self.requestHandler.connectionClosed(self.connection)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        switch error {
        case let error as KafkaFrameSizeError:
            self.logger.warning(
                "closing \(self.connection): \(error)",
                metadata: ["frame.size": "\(error.size)", "frame.limit": "\(error.maxFrameBytes)"]
            )
        case ByteToMessageDecoderError.dataReceivedInErrorState:
            // Bytes that arrived after a bad size prefix while the close is under way; already logged.
            break
        default:
            // Connection resets and other I/O errors are routine for a server: debug level only.
            self.logger.debug("closing \(self.connection) after error: \(error)")
        }
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            self.quiesce(context: context)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// Server shutdown: stop reading, drop frames not started yet, answer the started requests, close.
    private func quiesce(context: ChannelHandlerContext) {
        guard case .open = self.lifecycle else { return }
        self.lifecycle = .quiescing
        self.dropUndispatchedFrames()
        if self.inFlightCount == 0 {
            self.closeAfterWrites(context: context)
        }
    }

    // MARK: Reading and starting requests

    func read(context: ChannelHandlerContext) {
        if self.mayRead {
            context.read()
        } else {
            self.readPending = true
            if !self.memoryAllowsReading { self.scheduleMemoryRecheck(context: context) }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Frames after a `.close` outcome or during shutdown are never started, so they get no sequence.
        guard self.isAcceptingRequests else { return }
        let frame = Self.unwrapInboundIn(data)
        self.inFlightRequestBytes += frame.readableBytes
        self.requestPool?.add(frame.readableBytes)
        if !self.receivedRequest {
            self.receivedRequest = true
            self.record?.markReceivedRequest()
        }
        self.undispatchedFrames.append(frame)
        self.startUndispatchedRequests(context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.lastActivity = context.eventLoop.now
        context.fireChannelReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.writable = context.channel.isWritable
        self.resumeReadingIfAllowed(context: context)
        context.fireChannelWritabilityChanged()
    }

    private func startUndispatchedRequests(context: ChannelHandlerContext) {
        // Requests answered at once write their outcome from inside this loop; they must not start
        // the next frames themselves (that would recurse once per frame), and one flush after the
        // loop carries all their responses.
        guard !self.dispatching else { return }
        self.dispatching = true
        defer {
            self.dispatching = false
            if self.flushPending {
                self.flushPending = false
                context.flush()
            }
        }
        while self.isAcceptingRequests, self.orderHeldBy == nil, self.inFlightCount < self.maxInFlightRequests,
            !(self.responseBudget?.isOverShare ?? false) || self.responseBudget?.used == 0,
            let frame = self.undispatchedFrames.popFirst()
        {
            self.startRequest(frame: frame, context: context)
        }
    }

    /// Frames that will never be started (shutdown, a close outcome): their bytes are free again.
    private func dropUndispatchedFrames() {
        let bytes = self.undispatchedFrames.reduce(0) { $0 + $1.readableBytes }
        self.undispatchedFrames.removeAll()
        self.inFlightRequestBytes -= bytes
        self.requestPool?.remove(bytes)
    }

    private func startRequest(frame: ByteBuffer, context: ChannelHandlerContext) {
        let sequence = self.nextSequence
        self.nextSequence += 1
        self.requestBytes[self.slot(for: sequence)] = frame.readableBytes
        let requestContext = RequestContext(
            connection: self.connection,
            sequence: sequence,
            responseBudget: self.responseBudget
        )
        // Run to completion here: the core decodes, validates and submits on this event loop.
        let reply = self.requestHandler.handle(frame: frame, context: requestContext)
        self.counters?.requestHandled()
        switch reply {
        case .now(let outcome):
            self.requestCompleted(sequence: sequence, outcome: outcome, context: context)
        case .later(let pending):
            if let builder = pending.completedBuilder {
                self.requestCompleted(sequence: sequence, outcome: builder(), context: context)
                return
            }
            let loopBound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
            if pending.holdsOrder && !pending.isOrderReleased {
                self.orderHeldBy = sequence
                pending.whenOrderReleased { [mailbox] in
                    mailbox.post {
                        let (handler, context) = loopBound.value
                        handler.orderReleased(sequence: sequence, context: context)
                    }
                }
            }
            // The outcome is built on this loop, whichever thread completes the request.
            pending.whenComplete { [mailbox] builder in
                mailbox.post {
                    let (handler, context) = loopBound.value
                    handler.requestCompleted(sequence: sequence, outcome: builder(), context: context)
                }
            }
        }
    }

    /// The request `sequence` no longer holds the connection's order: start the frames behind it.
    private func orderReleased(sequence: UInt64, context: ChannelHandlerContext) {
        guard self.orderHeldBy == sequence else { return }
        self.orderHeldBy = nil
        switch self.lifecycle {
        case .open, .quiescing:
            self.startUndispatchedRequests(context: context)
            self.resumeReadingIfAllowed(context: context)
        case .closing, .closed:
            return
        }
    }

    private func resumeReadingIfAllowed(context: ChannelHandlerContext) {
        if self.readPending && self.mayRead {
            self.readPending = false
            context.read()
        } else if (self.readPending || !self.undispatchedFrames.isEmpty) && !self.memoryAllowsReading {
            self.scheduleMemoryRecheck(context: context)
        }
    }

    /// Writes a response, charged to the connection's response memory until the socket took it.
    private func write(_ response: ByteBuffer, context: ChannelHandlerContext) {
        guard let budget = self.responseBudget else {
            context.write(Self.wrapOutboundOut(response), promise: nil)
            return
        }
        let bytes = response.readableBytes
        budget.charge(bytes)
        let written = context.eventLoop.makePromise(of: Void.self)
        context.write(Self.wrapOutboundOut(response), promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in
            budget.release(bytes)
            guard case .open = self.lifecycle else { return }
            self.startUndispatchedRequests(context: context)
            self.resumeReadingIfAllowed(context: context)
        }
    }

    /// Broker-wide memory is freed by other connections, which do not tell this one: look again
    /// shortly while a read is held back for it.
    private func scheduleMemoryRecheck(context: ChannelHandlerContext) {
        guard self.memoryRecheck == nil else { return }
        self.memoryRecheck = context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(10)) {
            self.memoryRecheck = nil
            guard case .open = self.lifecycle else { return }
            self.startUndispatchedRequests(context: context)
            self.resumeReadingIfAllowed(context: context)
        }
    }

    // MARK: Outcomes and writing

    private func requestCompleted(sequence: UInt64, outcome: RequestOutcome, context: ChannelHandlerContext) {
        switch self.lifecycle {
        case .open, .quiescing:
            break
        case .closing, .closed:
            return
        }
        precondition(
            sequence >= self.nextSequenceToWrite && sequence < self.nextSequence,
            "outcome for sequence \(sequence) outside the in-flight window"
        )
        if case .close = outcome, sequence < (self.closeSequence ?? .max) {
            // Stop starting new requests right away; the close itself happens in order.
            self.closeSequence = sequence
            self.dropUndispatchedFrames()
        }
        let slot = self.slot(for: sequence)
        precondition(self.outcomes[slot] == nil, "two outcomes for sequence \(sequence)")
        self.outcomes[slot] = outcome
        // The core is done with the request's bytes.
        self.inFlightRequestBytes -= self.requestBytes[slot]
        self.requestPool?.remove(self.requestBytes[slot])
        self.requestBytes[slot] = 0
        self.writeReadyOutcomes(context: context)
    }

    /// Writes every outcome that is next in sequence order, then flushes once.
    private func writeReadyOutcomes(context: ChannelHandlerContext) {
        var wroteResponse = false
        while self.nextSequenceToWrite < self.nextSequence {
            let slot = self.slot(for: self.nextSequenceToWrite)
            guard let outcome = self.outcomes[slot] else { break }
            self.outcomes[slot] = nil
            let sequence = self.nextSequenceToWrite
            self.nextSequenceToWrite += 1
            switch outcome {
            case .respond(let response):
                self.write(response, context: context)
                wroteResponse = true
            case .noResponse:
                break
            case .close(let reason):
                self.logger.warning("closing \(self.connection) at request \(sequence): \(reason)")
                self.closeAfterWrites(context: context)
                return
            }
        }
        if wroteResponse {
            self.lastActivity = context.eventLoop.now
            if self.dispatching {
                self.flushPending = true
            } else {
                context.flush()
            }
        }
        if case .quiescing = self.lifecycle, self.inFlightCount == 0 {
            self.closeAfterWrites(context: context)
            return
        }
        self.startUndispatchedRequests(context: context)
        self.resumeReadingIfAllowed(context: context)
    }

    /// Closes the connection once everything written so far has reached the socket. Closing at once
    /// would discard responses still queued in the channel (a slow reader), which Kafka clients would
    /// see as lost responses rather than a clean close.
    private func closeAfterWrites(context: ChannelHandlerContext) {
        switch self.lifecycle {
        case .open, .quiescing:
            break
        case .closing, .closed:
            return
        }
        self.lifecycle = .closing(since: context.eventLoop.now)
        self.dropUndispatchedFrames()
        // An empty write completes after every write queued before it, so its promise tells when the
        // earlier responses are out.
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(Self.wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    private func slot(for sequence: UInt64) -> Int {
        Int(sequence % UInt64(self.maxInFlightRequests))
    }

    // MARK: Idle timeout

    private func scheduleIdleCheck(context: ChannelHandlerContext, deadline: NIODeadline) {
        self.idleCheck = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.checkIdle(context: context)
        }
    }

    /// Kafka's `connections.max.idle.ms`: closes a connection that has had no traffic for the idle
    /// timeout and has no request in flight (a long poll is traffic still to come, not idleness).
    /// A connection stuck in `closing` (its peer stopped reading) is also closed after the timeout.
    private func checkIdle(context: ChannelHandlerContext) {
        let now = context.eventLoop.now
        switch self.lifecycle {
        case .closed:
            self.idleCheck = nil
            return
        case .closing(let since):
            if now - since >= self.idleTimeout {
                self.logger.debug("closing \(self.connection): peer did not take its last responses")
                context.close(promise: nil)
                self.idleCheck = nil
                return
            }
            self.scheduleIdleCheck(context: context, deadline: since + self.idleTimeout)
        case .open, .quiescing:
            let firstRequestDeadline = self.acceptedAt + self.limits.firstRequestTimeout
            if !self.receivedRequest {
                let idleDeadline = self.lastActivity + self.idleTimeout
                if now >= firstRequestDeadline || now >= idleDeadline {
                    self.logger.debug(
                        "closing \(self.connection): no complete request within \(self.limits.firstRequestTimeout)"
                    )
                    self.idleCheck = nil
                    context.close(promise: nil)
                    return
                }
                self.scheduleIdleCheck(context: context, deadline: min(firstRequestDeadline, idleDeadline))
                return
            }
            let idleSince = self.lastActivity
            if self.inFlightCount == 0, self.undispatchedFrames.isEmpty, now - idleSince >= self.idleTimeout {
                self.logger.debug("closing idle \(self.connection) (no traffic for \(self.idleTimeout))")
                self.idleCheck = nil
                context.close(promise: nil)
                return
            }
            // Busy: check again a full timeout from now. Recently active: check when the timeout
            // since the last activity runs out.
            let busy = self.inFlightCount > 0 || !self.undispatchedFrames.isEmpty
            self.scheduleIdleCheck(context: context, deadline: (busy ? now : idleSince) + self.idleTimeout)
        }
    }
}

@available(*, unavailable)
extension KafkaConnectionHandler: Sendable {}
