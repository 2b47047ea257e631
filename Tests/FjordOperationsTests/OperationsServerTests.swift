import Foundation
import Logging
import NIOCore
import NIOPosix
import Testing

@testable import FjordOperations

#if canImport(Glibc)
import Glibc
#endif

/// One HTTP/1.1 exchange over a plain socket (Connection: close): the status code and the body.
/// The blocking socket calls run on NIO's thread pool, never on a Swift concurrency thread: the
/// other suites running in parallel need those (a blocked cooperative pool stalls their timers).
func httpGet(port: Int, path: String, method: String = "GET") async throws -> (status: Int, body: String) {
    try await NIOThreadPool.singleton.runIfActive { try blockingHTTPGet(port: port, path: path, method: method) }
}

private func blockingHTTPGet(port: Int, path: String, method: String) throws -> (status: Int, body: String) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    defer { close(fd) }
    // A server that never answers fails the test instead of hanging it.
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    guard connected == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    let request = Array("\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".utf8)
    guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == request.count else {
        throw POSIXError(.EIO)
    }
    var response: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while true {
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { break }
        response.append(contentsOf: chunk[0..<count])
    }
    let text = String(decoding: response, as: UTF8.self)
    guard let statusLine = text.split(separator: "\r\n", maxSplits: 1).first,
        let code = statusLine.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
    else { throw POSIXError(.EBADMSG) }
    let body = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
    return (code, body)
}

@Suite("The operations HTTP listener (/metrics, /health)")
struct OperationsServerTests {
    /// Starts a server on an ephemeral port, runs `body` with the port, shuts it down.
    private func withServer(
        exporter: MetricsExporter = MetricsExporter(),
        health: HealthState,
        _ body: (Int) async throws -> Void
    ) async throws {
        let server = OperationsServer(
            host: "127.0.0.1",
            port: 0,
            exporter: exporter,
            health: health,
            logger: Logger(label: "test")
        )
        let address = try await server.start()
        let port = try #require(address.port)
        #expect(port > 0)
        do {
            try await body(port)
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    @Test func readyAnswers503WhileStartingAnd200OnceReadyAnd503WhenStopping() async throws {
        let health = HealthState()
        try await withServer(health: health) { port in
            let starting = try await httpGet(port: port, path: "/health/ready")
            #expect(starting.status == 503)
            #expect(starting.body == "starting\n")
            health.markReady()
            let ready = try await httpGet(port: port, path: "/health/ready")
            #expect(ready.status == 200)
            #expect(ready.body == "ready\n")
            health.markStopping()
            let stopping = try await httpGet(port: port, path: "/health/ready").status
            #expect(stopping == 503)
        }
    }

    @Test func liveAnswers200InEveryPhase() async throws {
        let health = HealthState()
        try await withServer(health: health) { port in
            let starting = try await httpGet(port: port, path: "/health/live").status
            health.markStopping()
            let stopping = try await httpGet(port: port, path: "/health/live").status
            #expect(starting == 200)
            #expect(stopping == 200)
        }
    }

    @Test func metricsServesThePrometheusTextWithTheReadyGauge() async throws {
        let exporter = MetricsExporter()
        let health = HealthState()
        exporter.observe(health: health)
        try await withServer(exporter: exporter, health: health) { port in
            let before = try await httpGet(port: port, path: "/metrics")
            #expect(before.status == 200)
            #expect(before.body.contains("# TYPE fjord_ready gauge"))
            #expect(before.body.contains("fjord_ready 0"))
            health.markReady()
            let after = try await httpGet(port: port, path: "/metrics?x=1").body
            #expect(after.contains("fjord_ready 1"))
        }
    }

    @Test func unknownPathsAre404AndOtherMethods405() async throws {
        try await withServer(health: HealthState()) { port in
            var statuses: [Int] = []
            for path in ["/", "/health", "/metrics/extra"] {
                statuses.append(try await httpGet(port: port, path: path).status)
            }
            #expect(statuses == [404, 404, 404])
            let post = try await httpGet(port: port, path: "/metrics", method: "POST").status
            #expect(post == 405)
        }
    }
}
