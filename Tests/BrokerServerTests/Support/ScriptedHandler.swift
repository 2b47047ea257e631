import BrokerCore
import NIOConcurrencyHelpers
import NIOCore

/// What a test request asks the `ScriptedHandler` to do. The request frame body is
/// `[command: UInt8][tag: UInt32]`, optionally padded; the response body is `[tag: UInt32][sequence: UInt64]`.
enum Command: UInt8, Sendable {
    /// Respond at once.
    case respond = 0
    /// Respond once the test calls `release(tag:)`.
    case respondWhenReleased = 1
    /// `.noResponse` at once.
    case noResponse = 2
    /// `.close(reason:)` at once.
    case close = 3
    /// Respond at once with `ScriptedHandler.largeResponseBytes` of padding after tag and sequence.
    case respondLarge = 4
}

struct TestRequest: Sendable {
    var command: Command
    var tag: UInt32
    /// Extra body bytes, to build frames of an exact size.
    var paddingBytes: Int = 0

    /// Body bytes: command, tag, padding.
    static let headerBytes = 5

    func encodeFrame(into buffer: inout ByteBuffer) {
        buffer.writeInteger(Int32(Self.headerBytes + self.paddingBytes))
        buffer.writeInteger(self.command.rawValue)
        buffer.writeInteger(self.tag)
        buffer.writeRepeatingByte(0xAB, count: self.paddingBytes)
    }
}

struct TestResponse: Sendable, Hashable {
    var tag: UInt32
    var sequence: UInt64
}

/// A fake core: records what the transport does and answers as each request's command says.
final class ScriptedHandler: KafkaRequestHandler {
    struct Arrival: Sendable, Hashable {
        var connectionID: UInt64
        var sequence: UInt64
        var tag: UInt32
    }

    private struct State {
        var arrivals: [Arrival] = []
        var running = 0
        var maxRunning = 0
        var completedTags: [UInt32] = []
        var waiting: [UInt32: (PendingOutcome, UInt64)] = [:]
        var releasedEarly: Set<UInt32> = []
        var closedConnections: [UInt64: Int] = [:]
    }

    private let state = NIOLockedValueBox(State())

    var arrivals: [Arrival] { self.state.withLockedValue { $0.arrivals } }
    var arrivalCount: Int { self.state.withLockedValue { $0.arrivals.count } }
    /// The most requests that were being handled at the same time.
    var maxRunning: Int { self.state.withLockedValue { $0.maxRunning } }
    var completedTags: [UInt32] { self.state.withLockedValue { $0.completedTags } }
    /// How often `connectionClosed` was called, per connection id.
    var closedConnections: [UInt64: Int] { self.state.withLockedValue { $0.closedConnections } }

    /// Lets the request with this tag answer (now, or as soon as it arrives).
    func release(tag: UInt32) {
        let pending = self.state.withLockedValue { state in
            if let pending = state.waiting.removeValue(forKey: tag) {
                return Optional(pending)
            }
            state.releasedEarly.insert(tag)
            return nil
        }
        if let (pending, sequence) = pending {
            self.finish(tag: tag)
            pending.complete(Self.response(tag: tag, sequence: sequence))
        }
    }

    func handle(frame: ByteBuffer, context: RequestContext) -> RequestReply {
        var frame = frame
        guard let rawCommand = frame.readInteger(as: UInt8.self), let command = Command(rawValue: rawCommand),
            let tag = frame.readInteger(as: UInt32.self)
        else {
            return .now(.close(reason: "test handler: malformed request"))
        }
        self.state.withLockedValue { state in
            state.arrivals.append(Arrival(connectionID: context.connection.id, sequence: context.sequence, tag: tag))
            state.running += 1
            state.maxRunning = max(state.maxRunning, state.running)
        }
        if command == .respondWhenReleased {
            let pending = PendingOutcome()
            let releasedEarly = self.state.withLockedValue { state in
                if state.releasedEarly.remove(tag) != nil { return true }
                state.waiting[tag] = (pending, context.sequence)
                return false
            }
            guard releasedEarly else { return .later(pending) }
        }
        self.finish(tag: tag)
        switch command {
        case .respond, .respondWhenReleased:
            return .now(Self.response(tag: tag, sequence: context.sequence))
        case .respondLarge:
            var response = ByteBuffer()
            response.writeInteger(Int32(12 + Self.largeResponseBytes))
            response.writeInteger(tag)
            response.writeInteger(context.sequence)
            response.writeRepeatingByte(0xCD, count: Self.largeResponseBytes)
            return .now(.respond(response))
        case .noResponse:
            return .now(.noResponse)
        case .close:
            return .now(.close(reason: "test asked to close after tag \(tag)"))
        }
    }

    /// The padding of a `.respondLarge` response.
    static let largeResponseBytes = 256 * 1024

    private func finish(tag: UInt32) {
        self.state.withLockedValue { state in
            state.running -= 1
            state.completedTags.append(tag)
        }
    }

    private static func response(tag: UInt32, sequence: UInt64) -> RequestOutcome {
        var response = ByteBuffer()
        response.writeInteger(Int32(12))
        response.writeInteger(tag)
        response.writeInteger(sequence)
        return .respond(response)
    }

    func connectionClosed(_ connection: ConnectionInfo) {
        self.state.withLockedValue { $0.closedConnections[connection.id, default: 0] += 1 }
    }
}
