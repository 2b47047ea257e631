import BrokerCore
import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

@testable import BrokerServer

@Suite("Kafka frame decoder")
struct KafkaFrameDecoderTests {
    static let maxFrameBytes = 64

    /// `[size][body]` bytes for each body.
    static func framed(_ bodies: [[UInt8]]) -> ByteBuffer {
        var buffer = ByteBuffer()
        for body in bodies {
            buffer.writeInteger(Int32(body.count))
            buffer.writeBytes(body)
        }
        return buffer
    }

    static func sizePrefix(_ size: Int32) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(size)
        return buffer
    }

    /// An active `EmbeddedChannel` running the decoder and a connection handler over `handler`.
    static func connectionChannel(
        handler: ScriptedHandler,
        logs: LogCapture,
        maxFrameBytes: Int = Self.maxFrameBytes
    ) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers(
            ByteToMessageHandler(KafkaFrameDecoder(maxFrameBytes: maxFrameBytes)),
            KafkaConnectionHandler(
                connection: ConnectionInfo(id: 7, remoteAddress: "192.0.2.1:4242"),
                requestHandler: handler,
                limits: ConnectionLimits(maxInFlightRequests: 4, idleTimeout: .seconds(600)),
                logger: logs.logger(),
                mailbox: EventLoopMailbox(eventLoop: channel.eventLoop)
            )
        )
        try channel.connect(to: SocketAddress(ipAddress: "192.0.2.1", port: 4242)).wait()
        return channel
    }

    /// Frames come out whole and in order however the input is split: byte by byte, all at once, and
    /// every other way the verifier tries.
    @Test func decodesFramesUnderEveryInputSplit() throws {
        let bodies: [[UInt8]] = [[1], Array(0..<64), [9, 8, 7, 6, 5]]
        try ByteToMessageDecoderVerifier.verifyDecoder(
            inputOutputPairs: [
                (Self.framed(bodies), bodies.map { ByteBuffer(bytes: $0) }),
                (Self.framed([[42, 43]]), [ByteBuffer(bytes: [42, 43])]),
            ],
            decoderFactory: { KafkaFrameDecoder(maxFrameBytes: Self.maxFrameBytes) }
        )
    }

    /// Fed one byte at a time, a frame is emitted exactly when its last byte arrives, and not before.
    @Test func dripFedFrameIsEmittedOnItsLastByte() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(KafkaFrameDecoder(maxFrameBytes: 64)))
        let body: [UInt8] = Array(100..<130)
        var input = Self.framed([body, [1, 2, 3]])
        var emitted: [ByteBuffer] = []
        var bytesFed = 0
        while let byte = input.readSlice(length: 1) {
            try channel.writeInbound(byte)
            bytesFed += 1
            while let frame = try channel.readInbound(as: ByteBuffer.self) {
                emitted.append(frame)
                #expect(
                    bytesFed == 4 + body.count || bytesFed == 4 + body.count + 4 + 3,
                    "frame emitted after \(bytesFed) bytes"
                )
            }
        }
        #expect(emitted == [ByteBuffer(bytes: body), ByteBuffer(bytes: [1, 2, 3])])
        #expect(try channel.finish().isClean)
    }

    /// Several frames arriving in one read all come out, in order, and nothing is left over.
    @Test func severalFramesInOneReadAreAllEmitted() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(KafkaFrameDecoder(maxFrameBytes: 64)))
        let bodies: [[UInt8]] = (1...10).map { Array(repeating: UInt8($0), count: $0) }
        try channel.writeInbound(Self.framed(bodies))
        var emitted: [ByteBuffer] = []
        while let frame = try channel.readInbound(as: ByteBuffer.self) {
            emitted.append(frame)
        }
        #expect(emitted == bodies.map { ByteBuffer(bytes: $0) })
        #expect(try channel.finish().isClean)
    }

    /// A frame of exactly `maxFrameBytes` is accepted.
    @Test func frameOfExactlyTheLimitIsAccepted() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(KafkaFrameDecoder(maxFrameBytes: 64)))
        let body = [UInt8](repeating: 0x5A, count: 64)
        try channel.writeInbound(Self.framed([body]))
        #expect(try channel.readInbound(as: ByteBuffer.self) == ByteBuffer(bytes: body))
        #expect(try channel.finish().isClean)
    }

    /// A size prefix of zero, a negative one, or one above the limit is rejected from the four prefix
    /// bytes alone, before a single body byte is read or buffered.
    // 65 is maxFrameBytes + 1.
    @Test(arguments: [0, -1, Int32.min, 65, Int32.max])
    func invalidSizeIsRejectedFromThePrefixAlone(size: Int32) throws {
        let decoder = KafkaFrameDecoder(maxFrameBytes: Self.maxFrameBytes)
        var input = Self.sizePrefix(size)
        #expect(throws: KafkaFrameSizeError(size: size, maxFrameBytes: Self.maxFrameBytes)) {
            _ = try decoder.decodeFrame(from: &input)
        }
        // Nothing was consumed, so nothing was sliced off for a body.
        #expect(input.readableBytes == 4)
    }

    /// On a connection, an invalid size prefix closes the channel as soon as the prefix is in, without
    /// waiting for (or buffering) the body, logs one warning naming the peer, size and limit, and never
    /// reaches the request handler.
    // 65 is maxFrameBytes + 1.
    @Test(arguments: [0, -1, Int32.min, 65, Int32.max])
    func invalidSizeClosesTheConnectionBeforeTheBody(size: Int32) throws {
        let handler = ScriptedHandler()
        let logs = LogCapture()
        let channel = try Self.connectionChannel(handler: handler, logs: logs)
        try channel.writeInbound(Self.sizePrefix(size))
        #expect(!channel.isActive, "closed before any body byte arrived")
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil)
        let warnings = logs.all.filter { $0.level == .warning }
        #expect(warnings.count == 1)
        let warning = warnings.first?.message ?? ""
        #expect(warning.contains("192.0.2.1:4242"))
        #expect(warning.contains("\(size)"))
        #expect(warning.contains("\(Self.maxFrameBytes)"))
        #expect(handler.arrivalCount == 0)
        #expect(handler.closedConnections == [7: 1])
    }

    /// Bytes already in the same read after a bad prefix do not matter: the connection closes and
    /// nothing is emitted.
    @Test func invalidSizeWithTrailingBytesStillCloses() throws {
        let handler = ScriptedHandler()
        let logs = LogCapture()
        let channel = try Self.connectionChannel(handler: handler, logs: logs)
        var input = Self.sizePrefix(Int32.max)
        input.writeRepeatingByte(0x41, count: 1000)
        try channel.writeInbound(input)
        #expect(!channel.isActive)
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil)
        #expect(logs.warnings(containing: "exceeds the limit").count == 1)
        #expect(handler.arrivalCount == 0)
    }
}
