import BrokerServer
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// Keeps every log record, so tests can assert what the server logged.
final class LogCapture: Sendable {
    struct Record: Sendable {
        var level: Logger.Level
        var message: String
    }

    private let records = NIOLockedValueBox<[Record]>([])

    var all: [Record] { self.records.withLockedValue { $0 } }

    func warnings(containing text: String) -> [Record] {
        self.all.filter { $0.level == .warning && $0.message.contains(text) }
    }

    func logger(label: String = "test") -> Logger {
        var logger = Logger(label: label) { _ in Handler(capture: self) }
        logger.logLevel = .trace
        return logger
    }

    fileprivate func append(_ record: Record) {
        self.records.withLockedValue { $0.append(record) }
    }

    private struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { self.metadata[key] }
            set { self.metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            self.capture.append(Record(level: event.level, message: "\(event.message)"))
        }
    }
}

/// Polls `condition` until it holds; records an issue and throws if it does not within `timeout`.
func eventually(
    _ what: String,
    timeout: Duration = .seconds(60),
    sourceLocation: SourceLocation = #_sourceLocation,
    _ condition: () -> Bool
) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while !condition() {
        guard clock.now < deadline else {
            Issue.record("timed out after \(timeout) waiting for: \(what)", sourceLocation: sourceLocation)
            throw TimedOut()
        }
        try await Task.sleep(for: .milliseconds(5))
    }
}

struct TimedOut: Error {}

extension ServerConfiguration {
    /// The defaults on an ephemeral port of 127.0.0.1, with the given limits changed.
    static func forTest(
        maxFrameBytes: Int? = nil,
        maxInFlightRequests: Int? = nil,
        idleTimeout: Duration? = nil,
        maxConnections: Int? = nil,
        shutdownGracePeriod: Duration? = nil
    ) -> ServerConfiguration {
        var configuration = ServerConfiguration()
        configuration.port = 0
        if let maxFrameBytes { configuration.maxFrameBytes = maxFrameBytes }
        if let maxInFlightRequests { configuration.maxInFlightRequestsPerConnection = maxInFlightRequests }
        if let idleTimeout { configuration.idleTimeout = idleTimeout }
        if let maxConnections { configuration.maxConnections = maxConnections }
        if let shutdownGracePeriod { configuration.shutdownGracePeriod = shutdownGracePeriod }
        return configuration
    }
}

/// Starts a server, runs `body` with it and its bound address, and shuts the server down.
func withServer<Result>(
    handler: ScriptedHandler,
    logs: LogCapture = LogCapture(),
    configuration: ServerConfiguration = .forTest(),
    _ body: (KafkaServer, SocketAddress) async throws -> Result
) async throws -> Result {
    let server = KafkaServer(configuration: configuration, handler: handler, logger: logs.logger(label: "server"))
    let address = try await server.start()
    do {
        let result = try await body(server, address)
        await server.shutdown()
        return result
    } catch {
        await server.shutdown()
        throw error
    }
}

/// A Kafka-framed test client over a real socket. Every client closes itself after `lifetime`, so a
/// test waiting for a response that never comes fails instead of hanging.
final class TestClient: Sendable {
    let channel: any Channel
    private let inbox: Inbox

    /// Responses (frame bodies) received so far and whether the connection is closed.
    private final class Inbox: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer

        private struct State {
            var frames: [ByteBuffer] = []
            var closed = false
            var lifetimeExpired = false
        }

        private let state = NIOLockedValueBox(State())

        var frames: [ByteBuffer] { self.state.withLockedValue { $0.frames } }
        var isClosed: Bool { self.state.withLockedValue { $0.closed } }
        var lifetimeExpired: Bool {
            get { self.state.withLockedValue { $0.lifetimeExpired } }
            set { self.state.withLockedValue { $0.lifetimeExpired = newValue } }
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let frame = Self.unwrapInboundIn(data)
            self.state.withLockedValue { $0.frames.append(frame) }
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.state.withLockedValue { $0.closed = true }
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }

    private init(channel: any Channel, inbox: Inbox) {
        self.channel = channel
        self.inbox = inbox
    }

    static func connect(to address: SocketAddress, lifetime: Duration = .seconds(120)) async throws -> TestClient {
        let inbox = Inbox()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(KafkaFrameDecoder(maxFrameBytes: 1 << 20)),
                        inbox
                    )
                }
            }
            .connect(to: address)
            .get()
        channel.eventLoop.scheduleTask(in: TimeAmount(lifetime)) {
            inbox.lifetimeExpired = true
            channel.close(promise: nil)
        }
        return TestClient(channel: channel, inbox: inbox)
    }

    /// Sends all requests in one write, so they arrive pipelined.
    func send(_ requests: [TestRequest]) async throws {
        try await self.write(requests).get()
    }

    /// Starts sending all requests in one write; the future completes once the kernel took every byte.
    func write(_ requests: [TestRequest]) -> EventLoopFuture<Void> {
        let byteCount = requests.reduce(0) { $0 + 4 + TestRequest.headerBytes + $1.paddingBytes }
        var buffer = self.channel.allocator.buffer(capacity: byteCount)
        for request in requests {
            request.encodeFrame(into: &buffer)
        }
        return self.channel.writeAndFlush(buffer)
    }

    func send(_ request: TestRequest) async throws {
        try await self.send([request])
    }

    func sendRaw(_ bytes: [UInt8]) async throws {
        try await self.channel.writeAndFlush(self.channel.allocator.buffer(bytes: bytes))
    }

    var responses: [TestResponse] {
        self.inbox.frames.map { frame in
            var frame = frame
            // Cannot be nil for frames the ScriptedHandler wrote; a short one fails the test loudly.
            let tag = frame.readInteger(as: UInt32.self) ?? .max
            let sequence = frame.readInteger(as: UInt64.self) ?? .max
            return TestResponse(tag: tag, sequence: sequence)
        }
    }

    var isClosed: Bool { self.inbox.isClosed }

    /// Waits for `count` responses.
    func waitForResponses(
        _ count: Int,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> [TestResponse] {
        try await eventually("\(count) responses", sourceLocation: sourceLocation) {
            self.inbox.frames.count >= count || self.inbox.isClosed
        }
        return self.responses
    }

    /// Waits until the server closes the connection (not the client's own lifetime timer).
    func waitForServerClose(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        try await self.channel.closeFuture.get()
        #expect(!self.inbox.lifetimeExpired, "the server never closed the connection", sourceLocation: sourceLocation)
    }

    /// A request and its response, to check that the connection works.
    func roundTrip(tag: UInt32, sourceLocation: SourceLocation = #_sourceLocation) async throws -> Bool {
        let before = self.inbox.frames.count
        try await self.send(TestRequest(command: .respond, tag: tag))
        try await eventually("response to \(tag)", sourceLocation: sourceLocation) {
            self.inbox.frames.count > before || self.inbox.isClosed
        }
        return self.responses.dropFirst(before).first?.tag == tag
    }

    func close() async {
        try? await self.channel.close()
    }
}
