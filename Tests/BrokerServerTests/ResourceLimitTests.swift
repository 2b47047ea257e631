import BrokerServer
import NIOCore
import NIOPosix
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Connection slots that idle or hostile sockets cannot starve, and memory a client that does not
/// read cannot make the server hold.
@Suite("Connection slots and memory bounds")
struct ResourceLimitTests {
    /// `maxConnectionsPerIP` refuses a connection above the limit from one address; the others work.
    @Test func connectionsAboveThePerAddressLimitAreRefused() async throws {
        var configuration = ServerConfiguration.forTest()
        configuration.maxConnectionsPerIP = 2
        let logs = LogCapture()
        try await withServer(handler: ScriptedHandler(), logs: logs, configuration: configuration) { server, address in
            let first = try await TestClient.connect(to: address)
            let second = try await TestClient.connect(to: address)
            #expect(try await first.roundTrip(tag: 1))
            let refused = try await TestClient.connect(to: address)
            try await refused.waitForServerClose()
            #expect(server.statistics.refusedConnections == 1)
            #expect(logs.warnings(containing: "max.connections.per.ip").count == 1)
            #expect(try await second.roundTrip(tag: 2))
            await first.close()
            await second.close()
        }
    }

    /// At `maxConnections`, a new connection takes the slot of the oldest connection that has not
    /// sent a complete request; connections that have are never evicted.
    @Test func aNewConnectionReplacesOneThatSentNoRequest() async throws {
        let handler = ScriptedHandler()
        try await withServer(handler: handler, configuration: .forTest(maxConnections: 2)) { server, address in
            let talking = try await TestClient.connect(to: address)
            #expect(try await talking.roundTrip(tag: 1))
            let silent = try await TestClient.connect(to: address)
            try await eventually("both open") { server.statistics.openConnections == 2 }
            let newcomer = try await TestClient.connect(to: address)
            try await silent.waitForServerClose()
            #expect(try await newcomer.roundTrip(tag: 2))
            #expect(try await talking.roundTrip(tag: 3))
            #expect(server.statistics.evictedConnections == 1)
            #expect(server.statistics.refusedConnections == 0)
            await talking.close()
            await newcomer.close()
        }
    }

    /// A client that pipelines requests with large responses and never reads them makes the
    /// server stop reading its requests once the connection's response memory is used up: the
    /// memory held stays near the per-connection share. When the client reads, every response
    /// arrives, in order.
    @Test func aClientThatDoesNotReadStopsBeingRead() async throws {
        var configuration = ServerConfiguration.forTest(maxInFlightRequests: 64)
        let share = 1 << 20
        configuration.maxResponseMemoryBytesPerConnection = share
        let handler = ScriptedHandler()
        try await withServer(handler: handler, configuration: configuration) { server, address in
            let socket = try RawSocket(connectingTo: address, receiveBufferBytes: 16 * 1024)
            defer { socket.close() }
            let count = 200
            var bytes = ByteBuffer()
            for tag in 0..<count { TestRequest(command: .respondLarge, tag: UInt32(tag)).encodeFrame(into: &bytes) }
            try socket.write(Array(bytes.readableBytesView))
            // Give the server time to answer everything it is willing to read.
            try await Task.sleep(for: .milliseconds(500))
            let arrived = handler.arrivalCount
            let held = server.statistics.responseMemoryBytes
            #expect(arrived < count, "the server read every request of a client that reads nothing")
            #expect(held <= share + 2 * (ScriptedHandler.largeResponseBytes + 16), "held \(held) bytes")
            // Now read everything: the server resumes and answers the rest, in order.
            var tags: [UInt32] = []
            var pending = ByteBuffer()
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(60)
            while tags.count < count && clock.now < deadline {
                pending.writeBytes(try socket.read(maxBytes: 1 << 20))
                while let size = pending.getInteger(at: pending.readerIndex, as: Int32.self),
                    pending.readableBytes >= 4 + Int(size)
                {
                    pending.moveReaderIndex(forwardBy: 4)
                    var frame = pending.readSlice(length: Int(size))!
                    tags.append(frame.readInteger(as: UInt32.self)!)
                }
            }
            #expect(tags == (0..<UInt32(count)).map { $0 })
            try await eventually("memory given back") { server.statistics.responseMemoryBytes == 0 }
        }
    }
}

/// A blocking TCP client on a plain socket, for tests that must control exactly when it reads.
final class RawSocket {
    private let descriptor: Int32

    init(connectingTo address: SocketAddress, receiveBufferBytes: Int32) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw RawSocketError(what: "socket", code: errno) }
        var size = receiveBufferBytes
        setsockopt(descriptor, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var target = sockaddr_in()
        target.sin_family = sa_family_t(AF_INET)
        target.sin_port = in_port_t(UInt16(address.port!)).bigEndian
        target.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else { throw RawSocketError(what: "connect", code: errno) }
    }

    func write(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { send(descriptor, $0.baseAddress, $0.count, 0) }
            guard written > 0 else { throw RawSocketError(what: "send", code: errno) }
            offset += written
        }
    }

    func read(maxBytes: Int) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: maxBytes)
        let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, maxBytes, 0) }
        guard count >= 0 else { throw RawSocketError(what: "recv", code: errno) }
        return Array(buffer.prefix(count))
    }

    func close() { _ = Glibc.close(descriptor) }
}

struct RawSocketError: Error {
    var what: String
    var code: Int32
}
