import BrokerCore
import NIOCore
import NIOEmbedded
import Testing

@testable import BrokerServer

/// The connection's deadlines (idle timeout, first-request deadline) on an embedded event loop's
/// virtual clock: exact boundaries, no sleeps, no races with a loaded machine.
@Suite("Connection deadlines in virtual time")
struct ConnectionTimingTests {
    static let idle = TimeAmount.seconds(600)
    static let firstRequest = TimeAmount.seconds(10)

    /// A connected embedded channel with the decoder and a connection handler over `handler`.
    static func channel(_ handler: ScriptedHandler) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers(
            ByteToMessageHandler(KafkaFrameDecoder(maxFrameBytes: 1 << 20)),
            KafkaConnectionHandler(
                connection: ConnectionInfo(id: 1, remoteAddress: "192.0.2.1:4242"),
                requestHandler: handler,
                limits: ConnectionLimits(maxInFlightRequests: 4, idleTimeout: idle, firstRequestTimeout: firstRequest),
                logger: LogCapture().logger(),
                mailbox: EventLoopMailbox(eventLoop: channel.eventLoop)
            )
        )
        try channel.connect(to: SocketAddress(ipAddress: "192.0.2.1", port: 4242)).wait()
        return channel
    }

    static func send(_ request: TestRequest, to channel: EmbeddedChannel) throws {
        var bytes = ByteBuffer()
        request.encodeFrame(into: &bytes)
        try channel.writeInbound(bytes)
    }

    /// A connection that sends nothing is closed exactly at the first-request deadline.
    @Test func aSilentConnectionClosesAtTheFirstRequestDeadline() throws {
        let channel = try Self.channel(ScriptedHandler())
        channel.embeddedEventLoop.advanceTime(by: Self.firstRequest - .milliseconds(1))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(2))
        #expect(!channel.isActive)
    }

    /// Half a frame is not a request: the deadline applies all the same.
    @Test func aPartialFrameDoesNotCountAsARequest() throws {
        let channel = try Self.channel(ScriptedHandler())
        try channel.writeInbound(ByteBuffer(bytes: [0, 0, 0, 9, 1]))
        channel.embeddedEventLoop.advanceTime(by: Self.firstRequest + .milliseconds(1))
        #expect(!channel.isActive)
    }

    /// After a complete request the idle timeout applies instead: open until then, closed after.
    @Test func anEstablishedConnectionClosesAtTheIdleTimeout() throws {
        let channel = try Self.channel(ScriptedHandler())
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        try Self.send(TestRequest(command: .respond, tag: 1), to: channel)
        #expect(try channel.readOutbound(as: ByteBuffer.self) != nil)
        channel.embeddedEventLoop.advanceTime(by: Self.firstRequest * 2)
        #expect(channel.isActive, "closed at the first-request deadline although it sent a request")
        channel.embeddedEventLoop.advanceTime(by: Self.idle - Self.firstRequest * 2 - .milliseconds(1))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(2))
        #expect(!channel.isActive)
    }

    /// A request in flight (a long poll) keeps the connection open past any number of idle
    /// timeouts; once it is answered, the connection idles out a timeout later.
    @Test func aRequestInFlightIsNotIdleness() throws {
        let handler = ScriptedHandler()
        let channel = try Self.channel(handler)
        try Self.send(TestRequest(command: .respondWhenReleased, tag: 1), to: channel)
        channel.embeddedEventLoop.advanceTime(by: Self.idle * 3)
        #expect(channel.isActive)
        handler.release(tag: 1)
        channel.embeddedEventLoop.run()
        #expect(try channel.readOutbound(as: ByteBuffer.self) != nil)
        channel.embeddedEventLoop.advanceTime(by: Self.idle + .milliseconds(1))
        #expect(!channel.isActive)
    }
}
