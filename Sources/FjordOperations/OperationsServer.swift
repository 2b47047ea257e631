import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// The operations listener (`--metrics-listen`): a small HTTP/1.1 server, apart from the Kafka
/// listener, answering
///
/// - `GET /metrics`: the Prometheus text format (rendered off the event loop),
/// - `GET /health/live`: 200 while the process serves,
/// - `GET /health/ready`: 200 once recovery is done and the Kafka listener accepts, 503 before and
///   once a shutdown began.
///
/// Anything else is 404 (405 for another method on a known path).
public final class OperationsServer: Sendable {
    public let host: String
    public let port: Int
    private let exporter: MetricsExporter
    private let health: HealthState
    private let logger: Logger
    private let group: any EventLoopGroup
    private let channel = NIOLockedValueBox<(any Channel)?>(nil)

    public init(
        host: String,
        port: Int,
        exporter: MetricsExporter,
        health: HealthState,
        logger: Logger,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.host = host
        self.port = port
        self.exporter = exporter
        self.health = health
        self.logger = logger
        self.group = group
    }

    /// Binds the listener; returns the bound address (the real port when `port` is 0).
    public func start() async throws -> SocketAddress {
        let exporter = self.exporter
        let health = self.health
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        OperationsHTTPHandler(exporter: exporter, health: health)
                    )
                }
            }
        let bound = try await bootstrap.bind(host: host, port: port).get()
        channel.withLockedValue { $0 = bound }
        // Cannot be nil: a bound socket has a local address.
        return bound.localAddress!
    }

    /// Stops accepting and closes the listener (scrapes in progress finish on their connections).
    public func shutdown() async {
        let bound = channel.withLockedValue { channel -> (any Channel)? in
            defer { channel = nil }
            return channel
        }
        try? await bound?.close()
    }
}

/// One HTTP connection of the operations listener.
final class OperationsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// The Prometheus text exposition format's content type.
    static let metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

    private let exporter: MetricsExporter
    private let health: HealthState
    private var request: HTTPRequestHead?

    init(exporter: MetricsExporter, health: HealthState) {
        self.exporter = exporter
        self.health = health
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break
        case .end:
            guard let head = request else { return }
            request = nil
            respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let known = ["/metrics", "/health/live", "/health/ready"]
        guard known.contains(path) else {
            write(
                head,
                status: .notFound,
                body: Array("not found; try /metrics, /health/live or /health/ready\n".utf8),
                context: context
            )
            return
        }
        guard head.method == .GET || head.method == .HEAD else {
            write(head, status: .methodNotAllowed, body: Array("only GET\n".utf8), context: context)
            return
        }
        switch path {
        case "/metrics":
            // Rendering reads every partition and group: do it off the event loop, which also
            // serves Kafka connections.
            let exporter = self.exporter
            context.eventLoop.makeFutureWithTask { exporter.render() }.assumeIsolated().whenComplete { result in
                switch result {
                case .success(let body):
                    self.write(head, status: .ok, body: body, contentType: Self.metricsContentType, context: context)
                case .failure:
                    self.write(head, status: .internalServerError, body: [], context: context)
                }
            }
        case "/health/live":
            write(head, status: .ok, body: Array("live\n".utf8), context: context)
        default:
            let phase = health.current
            write(
                head,
                status: phase == .ready ? .ok : .serviceUnavailable,
                body: Array("\(phase)\n".utf8),
                context: context
            )
        }
    }

    private func write(
        _ head: HTTPRequestHead,
        status: HTTPResponseStatus,
        body: [UInt8],
        contentType: String = "text/plain; charset=utf-8",
        context: ChannelHandlerContext
    ) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: String(body.count))
        if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
        let response = HTTPResponseHead(version: head.version, status: status, headers: headers)
        context.write(Self.wrapOutboundOut(.head(response)), promise: nil)
        if head.method != .HEAD {
            var buffer = context.channel.allocator.buffer(capacity: body.count)
            buffer.writeBytes(body)
            context.write(Self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        let keepAlive = head.isKeepAlive
        context.writeAndFlush(Self.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }
}

@available(*, unavailable)
extension OperationsHTTPHandler: Sendable {}
