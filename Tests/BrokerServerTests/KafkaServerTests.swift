import BrokerCore
import BrokerServer
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@Suite("Kafka server over real sockets")
struct KafkaServerTests {
    // MARK: Ordering

    /// Pipelined requests whose handlers finish in reverse order are answered in request order, each
    /// with the sequence number of its arrival.
    @Test func pipelinedResponsesFollowRequestOrder() async throws {
        let handler = ScriptedHandler()
        try await withServer(handler: handler) { _, address in
            let client = try await TestClient.connect(to: address)
            try await client.send((0..<5).map { TestRequest(command: .respondWhenReleased, tag: $0) })
            try await eventually("5 requests started") { handler.arrivalCount == 5 }
            for tag in (1..<5).reversed() {
                handler.release(tag: UInt32(tag))
                try await eventually("tag \(tag) done") { handler.completedTags.count == 5 - tag }
            }
            // Four outcomes are ready, but all wait behind request 0.
            try await Task.sleep(for: .milliseconds(50))
            #expect(client.responses.isEmpty)
            handler.release(tag: 0)
            let responses = try await client.waitForResponses(5)
            #expect(handler.completedTags == [4, 3, 2, 1, 0])
            let expected = (0..<5).map { (index: Int) in TestResponse(tag: UInt32(index), sequence: UInt64(index)) }
            #expect(responses == expected)
            await client.close()
        }
    }

    /// Each connection numbers its requests 0, 1, 2, … in arrival order, independently of others.
    @Test func sequencesAreAssignedPerConnectionInArrivalOrder() async throws {
        let handler = ScriptedHandler()
        try await withServer(handler: handler) { _, address in
            let first = try await TestClient.connect(to: address)
            let second = try await TestClient.connect(to: address)
            try await first.send((0..<10).map { TestRequest(command: .respond, tag: $0) })
            try await second.send((100..<110).map { TestRequest(command: .respond, tag: $0) })
            let firstResponses = try await first.waitForResponses(10)
            let secondResponses = try await second.waitForResponses(10)
            let expectedFirst = (0..<10).map { (index: Int) in TestResponse(tag: UInt32(index), sequence: UInt64(index))
            }
            let expectedSecond = (0..<10).map { (index: Int) in
                TestResponse(tag: UInt32(100 + index), sequence: UInt64(index))
            }
            #expect(firstResponses == expectedFirst)
            #expect(secondResponses == expectedSecond)
            let connectionIDs = Set(handler.arrivals.map(\.connectionID))
            #expect(connectionIDs.count == 2)
            await first.close()
            await second.close()
        }
    }

    /// A `.noResponse` outcome writes nothing and does not hold back the responses after it.
    @Test func noResponseDoesNotStallLaterResponses() async throws {
        let handler = ScriptedHandler()
        try await withServer(handler: handler) { _, address in
            let client = try await TestClient.connect(to: address)
            try await client.send([
                TestRequest(command: .noResponse, tag: 0),
                TestRequest(command: .respond, tag: 1),
                TestRequest(command: .respondWhenReleased, tag: 2),
                TestRequest(command: .noResponse, tag: 3),
                TestRequest(command: .respond, tag: 4),
                TestRequest(command: .noResponse, tag: 5),
            ])
            let first = try await client.waitForResponses(1)
            #expect(first == [TestResponse(tag: 1, sequence: 1)])
            handler.release(tag: 2)
            let responses = try await client.waitForResponses(3)
            #expect(responses.map(\.tag) == [1, 2, 4])
            #expect(responses.map(\.sequence) == [1, 2, 4])
            // Still usable afterwards.
            #expect(try await client.roundTrip(tag: 6))
            await client.close()
        }
    }

    /// `.close` writes every earlier response, then closes the connection, logs the reason as a warning,
    /// and writes nothing that came after it.
    @Test func closeOutcomeWritesEarlierResponsesThenCloses() async throws {
        let handler = ScriptedHandler()
        let logs = LogCapture()
        try await withServer(handler: handler, logs: logs) { _, address in
            let client = try await TestClient.connect(to: address)
            try await client.send([
                TestRequest(command: .respondWhenReleased, tag: 0),
                TestRequest(command: .respond, tag: 1),
                TestRequest(command: .close, tag: 2),
                TestRequest(command: .respond, tag: 3),
            ])
            try await eventually("close outcome") { handler.completedTags.contains(2) }
            #expect(!client.isClosed, "must not close before request 0 is answered")
            handler.release(tag: 0)
            try await client.waitForServerClose()
            #expect(client.responses.map(\.tag) == [0, 1])
            #expect(logs.warnings(containing: "test asked to close after tag 2").count == 1)
        }
    }

    // MARK: Limits

    /// With N requests unanswered the server stops reading: the handler never sees more than N at once,
    /// nothing more arrives while they are stuck, and reading resumes as they are answered.
    @Test(arguments: [1, 4])
    func inFlightLimitStopsAndResumesReading(limit: Int) async throws {
        let handler = ScriptedHandler()
        let requestCount = 3 * limit + 2
        try await withServer(handler: handler, configuration: .forTest(maxInFlightRequests: limit)) {
            server,
            address in
            let client = try await TestClient.connect(to: address)
            try await client.send(
                (0..<requestCount).map { TestRequest(command: .respondWhenReleased, tag: UInt32($0)) }
            )
            try await eventually("\(limit) requests started") { handler.arrivalCount == limit }
            try await Task.sleep(for: .milliseconds(200))
            #expect(handler.arrivalCount == limit, "no request beyond the limit may start")
            for tag in 0..<requestCount {
                try await eventually("request \(tag) started") { handler.arrivalCount > tag }
                handler.release(tag: UInt32(tag))
            }
            let responses = try await client.waitForResponses(requestCount)
            #expect(responses.map(\.tag) == (0..<requestCount).map { UInt32($0) })
            #expect(handler.maxRunning == limit)
            #expect(server.statistics.requestsHandled == requestCount)
            await client.close()
        }
    }

    /// While the in-flight limit is reached the server does not read the socket at all, so a client
    /// that keeps sending is pushed back by TCP flow control (its write cannot complete) instead of
    /// filling the broker's memory; once the stuck request is answered, everything is served.
    @Test func inFlightLimitPushesBackOnTheSocket() async throws {
        let handler = ScriptedHandler()
        // Far more than the kernel's socket buffers on both sides of a loopback connection hold.
        let frameCount = 512
        let paddingBytes = 64 * 1024
        try await withServer(handler: handler, configuration: .forTest(maxInFlightRequests: 1)) {
            _,
            address in
            let client = try await TestClient.connect(to: address)
            try await client.send(TestRequest(command: .respondWhenReleased, tag: 0))
            try await eventually("request 0 started") { handler.arrivalCount == 1 }
            let flood = (1...frameCount).map {
                TestRequest(command: .respond, tag: UInt32($0), paddingBytes: paddingBytes)
            }
            let written = NIOLockedValueBox(false)
            let write = client.write(flood)
            write.whenComplete { _ in written.withLockedValue { $0 = true } }
            try await Task.sleep(for: .milliseconds(300))
            #expect(!written.withLockedValue { $0 }, "the server kept reading while at its in-flight limit")
            #expect(handler.arrivalCount == 1)

            handler.release(tag: 0)
            try await write.get()
            let responses = try await client.waitForResponses(frameCount + 1)
            #expect(responses.map(\.tag) == (0...frameCount).map { UInt32($0) })
            #expect(handler.maxRunning == 1)
            await client.close()
        }
    }

    /// A frame of exactly `maxFrameBytes` is served over a real socket; one byte more closes the connection.
    @Test func frameSizeLimitIsInclusive() async throws {
        let handler = ScriptedHandler()
        try await withServer(handler: handler, configuration: .forTest(maxFrameBytes: 1_000)) { _, address in
            let client = try await TestClient.connect(to: address)
            try await client.send(TestRequest(command: .respond, tag: 1, paddingBytes: 1_000 - TestRequest.headerBytes))
            #expect(try await client.waitForResponses(1).map(\.tag) == [1])
            try await client.send(TestRequest(command: .respond, tag: 2, paddingBytes: 1_001 - TestRequest.headerBytes))
            try await client.waitForServerClose()
            #expect(client.responses.map(\.tag) == [1])
        }
    }

    /// A bad size prefix (garbage, zero, negative, huge) closes that connection with a warning, while
    /// another connection keeps being served.
    @Test(arguments: [
        Array("GET / HTTP/1.1\r\n".utf8),  // 0x47455420: far above the limit
        [0, 0, 0, 0],
        [0xFF, 0xFF, 0xFF, 0xFF],
        [0x7F, 0xFF, 0xFF, 0xFF],
        [0x00, 0x00, 0x04, 0x01],  // limit + 1
    ])
    func badSizePrefixClosesOnlyThatConnection(bytes: [UInt8]) async throws {
        let handler = ScriptedHandler()
        let logs = LogCapture()
        try await withServer(handler: handler, logs: logs, configuration: .forTest(maxFrameBytes: 1_024)) {
            _,
            address in
            let bad = try await TestClient.connect(to: address)
            let good = try await TestClient.connect(to: address)
            #expect(try await good.roundTrip(tag: 1))
            try await bad.sendRaw(bytes)
            try await bad.waitForServerClose()
            #expect(try await good.roundTrip(tag: 2))
            let warnings = logs.all.filter { $0.level == .warning }
            #expect(warnings.count == 1)
            #expect(warnings.first?.message.contains("1024") == true)
            await good.close()
        }
    }

    /// Over a real socket, the idle timeout closes the connection and releases its slot (the
    /// exact deadlines are tested in virtual time, ConnectionTimingTests).
    @Test func idleConnectionIsClosed() async throws {
        let handler = ScriptedHandler()
        // Long enough that a loaded machine sends the first request before the connection idles out.
        try await withServer(handler: handler, configuration: .forTest(idleTimeout: .seconds(3))) {
            server,
            address in
            let client = try await TestClient.connect(to: address)
            #expect(try await client.roundTrip(tag: 1))
            try await client.waitForServerClose()
            try await eventually("connection released") { server.statistics.openConnections == 0 }
        }
    }

    /// Above `maxConnections` a new connection is accepted and closed at once with a warning; once a
    /// slot frees up, new connections are served again.
    @Test func connectionsAboveTheLimitAreRefused() async throws {
        let handler = ScriptedHandler()
        let logs = LogCapture()
        try await withServer(handler: handler, logs: logs, configuration: .forTest(maxConnections: 2)) {
            server,
            address in
            let first = try await TestClient.connect(to: address)
            let second = try await TestClient.connect(to: address)
            #expect(try await first.roundTrip(tag: 1))
            #expect(try await second.roundTrip(tag: 2))

            let refused = try await TestClient.connect(to: address)
            try await refused.waitForServerClose()
            #expect(server.statistics.refusedConnections == 1)
            #expect(logs.warnings(containing: "limit is 2").count == 1)
            #expect(try await second.roundTrip(tag: 3), "open connections are unaffected")

            await first.close()
            try await eventually("slot freed") { server.statistics.openConnections == 1 }
            let third = try await TestClient.connect(to: address)
            #expect(try await third.roundTrip(tag: 4))
            #expect(server.statistics.acceptedConnections == 3)
            await second.close()
            await third.close()
        }
    }

    // MARK: Connection lifecycle

    enum CloseCause: String, CaseIterable, Sendable {
        case clientCloses, closeOutcome, idleTimeout, oversizedFrame, serverShutdown
    }

    /// However a connection ends, the handler's `connectionClosed` is called for it exactly once.
    @Test(arguments: CloseCause.allCases)
    func connectionClosedIsCalledExactlyOnce(cause: CloseCause) async throws {
        let handler = ScriptedHandler()
        let configuration = ServerConfiguration.forTest(
            maxFrameBytes: 100,
            idleTimeout: cause == .idleTimeout ? .seconds(3) : nil
        )
        let server = KafkaServer(configuration: configuration, handler: handler, logger: LogCapture().logger())
        let address = try await server.start()
        let client = try await TestClient.connect(to: address)
        #expect(try await client.roundTrip(tag: 1))
        switch cause {
        case .clientCloses:
            await client.close()
        case .closeOutcome:
            try await client.send(TestRequest(command: .close, tag: 2))
            try await client.waitForServerClose()
        case .idleTimeout:
            try await client.waitForServerClose()
        case .oversizedFrame:
            try await client.sendRaw([0, 0, 0, 101])
            try await client.waitForServerClose()
        case .serverShutdown:
            await server.shutdown()
            try await client.waitForServerClose()
        }
        try await eventually("connectionClosed") { handler.closedConnections.count == 1 }
        await server.shutdown()
        try await Task.sleep(for: .milliseconds(50))
        #expect(Array(handler.closedConnections.values) == [1])
    }

    // MARK: Shutdown

    /// Shutdown stops accepting, lets a slow in-flight request finish, writes its response, then closes.
    @Test func shutdownFinishesInFlightRequests() async throws {
        let handler = ScriptedHandler()
        let configuration = ServerConfiguration.forTest(shutdownGracePeriod: .seconds(30))
        let server = KafkaServer(configuration: configuration, handler: handler, logger: LogCapture().logger())
        let address = try await server.start()
        let client = try await TestClient.connect(to: address)
        try await client.send(TestRequest(command: .respondWhenReleased, tag: 1))
        try await eventually("request started") { handler.arrivalCount == 1 }

        let shutdown = Task { await server.shutdown() }
        // The listener closes first: new connections are refused by the kernel.
        try await Self.waitUntilConnectFails(to: address)
        try await Task.sleep(for: .milliseconds(100))
        #expect(!client.isClosed, "the in-flight request keeps its connection open")

        handler.release(tag: 1)
        try await client.waitForServerClose()
        #expect(client.responses == [TestResponse(tag: 1, sequence: 0)])
        await shutdown.value
        #expect(server.statistics.openConnections == 0)
    }

    /// A request still running when the grace period ends does not hold shutdown up: its connection is
    /// closed without a response, and its late outcome is dropped without harm.
    @Test func shutdownClosesConnectionsAfterTheGracePeriod() async throws {
        let handler = ScriptedHandler()
        let configuration = ServerConfiguration.forTest(shutdownGracePeriod: .milliseconds(200))
        let logs = LogCapture()
        let server = KafkaServer(configuration: configuration, handler: handler, logger: logs.logger())
        let address = try await server.start()
        let idle = try await TestClient.connect(to: address)
        let busy = try await TestClient.connect(to: address)
        try await busy.send(TestRequest(command: .respondWhenReleased, tag: 1))
        try await eventually("request started") { handler.arrivalCount == 1 }

        await server.shutdown()
        try await idle.waitForServerClose()
        try await busy.waitForServerClose()
        #expect(busy.responses.isEmpty)
        #expect(logs.warnings(containing: "grace period").count == 1)

        handler.release(tag: 1)
        try await eventually("late request finished") { handler.completedTags == [1] }
        try await eventually("handled") { server.statistics.requestsHandled == 1 }
        #expect(handler.closedConnections.values.allSatisfy { $0 == 1 })
    }

    // MARK: Configuration

    /// Port 0 binds an ephemeral port and `start` returns it.
    @Test func startReturnsTheBoundEphemeralPort() async throws {
        let handler = ScriptedHandler()
        try await withServer(handler: handler) { server, address in
            #expect(address.port != nil && address.port != 0)
            #expect(server.localAddress?.port == address.port)
        }
    }

    enum InvalidSetting: String, CaseIterable, Sendable {
        case noInFlightRequests, noFrameBytes, noConnections, portOutOfRange, zeroIdleTimeout

        func apply(to configuration: inout ServerConfiguration) {
            switch self {
            case .noInFlightRequests: configuration.maxInFlightRequestsPerConnection = 0
            case .noFrameBytes: configuration.maxFrameBytes = 0
            case .noConnections: configuration.maxConnections = 0
            case .portOutOfRange: configuration.port = 70_000
            case .zeroIdleTimeout: configuration.idleTimeout = .zero
            }
        }
    }

    /// An out-of-range limit is refused before anything is bound.
    @Test(arguments: InvalidSetting.allCases)
    func invalidConfigurationIsRejected(setting: InvalidSetting) async throws {
        var configuration = ServerConfiguration.forTest()
        setting.apply(to: &configuration)
        let server = KafkaServer(
            configuration: configuration,
            handler: ScriptedHandler(),
            logger: LogCapture().logger()
        )
        await #expect(throws: ServerConfigurationError.self) { _ = try await server.start() }
    }

    /// Binding a port that is already in use fails with an error instead of serving nothing.
    @Test func bindingAPortInUseFails() async throws {
        try await withServer(handler: ScriptedHandler()) { _, address in
            var configuration = ServerConfiguration()
            configuration.port = address.port ?? 0
            let second = KafkaServer(
                configuration: configuration,
                handler: ScriptedHandler(),
                logger: LogCapture().logger()
            )
            await #expect(throws: (any Error).self) { _ = try await second.start() }
            await second.shutdown()
        }
    }

    /// Polls until connecting to `address` is refused (the listener is closed).
    static func waitUntilConnectFails(to address: SocketAddress) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(10)
        while clock.now < deadline {
            do {
                let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .connect(to: address)
                    .get()
                try? await channel.close()
                try await Task.sleep(for: .milliseconds(5))
            } catch {
                return
            }
        }
        Issue.record("the listener still accepts connections")
        throw TimedOut()
    }
}
