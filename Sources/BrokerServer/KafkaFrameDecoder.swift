import NIOCore

/// Splits a byte stream into Kafka frames: an int32 size prefix (big-endian) followed by that many bytes.
///
/// Emits each frame's body (starting at the request header) as a slice of the read buffer, without
/// copying. The size prefix is checked before anything is kept for the body: a size of zero or less, or
/// above `maxFrameBytes`, throws `KafkaFrameSizeError` as soon as the four prefix bytes are in, so a
/// hostile or confused peer cannot make the broker allocate up to 2 GiB
/// (Kafka: `socket.request.max.bytes`, `InvalidReceiveException`).
public struct KafkaFrameDecoder: ByteToMessageDecoder, Sendable {
    public typealias InboundOut = ByteBuffer

    /// Bytes of the size prefix.
    public static let sizePrefixBytes = 4

    public let maxFrameBytes: Int

    public init(maxFrameBytes: Int) {
        precondition(maxFrameBytes >= 1, "maxFrameBytes must be positive")
        self.maxFrameBytes = maxFrameBytes
    }

    /// Decodes one frame from `buffer`, or returns `nil` if the frame is not complete yet.
    /// Shared by the channel handler and anything else that frames Kafka bytes (tests, clients).
    public func decodeFrame(from buffer: inout ByteBuffer) throws(KafkaFrameSizeError) -> ByteBuffer? {
        guard let size = buffer.getInteger(at: buffer.readerIndex, as: Int32.self) else {
            return nil
        }
        guard size > 0, Int(size) <= self.maxFrameBytes else {
            throw KafkaFrameSizeError(size: size, maxFrameBytes: self.maxFrameBytes)
        }
        let frameBytes = Int(size)
        guard buffer.readableBytes - Self.sizePrefixBytes >= frameBytes else {
            return nil
        }
        buffer.moveReaderIndex(forwardBy: Self.sizePrefixBytes)
        // Cannot be nil: readableBytes was checked above.
        return buffer.readSlice(length: frameBytes)
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try self.decodeFrame(from: &buffer) else {
            return .needMoreData
        }
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext,
        buffer: inout ByteBuffer,
        seenEOF: Bool
    ) throws -> DecodingState {
        // A partial frame at EOF is dropped: there is nobody left to answer.
        try self.decode(context: context, buffer: &buffer)
    }
}

/// A frame's size prefix is zero, negative, or above the limit. The connection is closed.
public struct KafkaFrameSizeError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The size prefix as read from the wire.
    public var size: Int32
    /// The limit in force (`ServerConfiguration.maxFrameBytes`).
    public var maxFrameBytes: Int

    public var description: String {
        if self.size <= 0 {
            return "invalid frame size \(self.size) (must be 1...\(self.maxFrameBytes))"
        }
        return "frame size \(self.size) exceeds the limit of \(self.maxFrameBytes) bytes"
    }
}
