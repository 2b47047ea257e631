import BrokerCore
import Logging
import NIOCore
import StorageHost
import StorageBackends

/// The backend `fjord` uses when neither `--backend` nor `--backend-path` is given: durable and
/// available everywhere (io_uring may be forbidden by the kernel or a container).
let defaultBackendName = "file"

/// Which storage backend to open: one linked into the binary, or a shared library.
enum BackendSelection: Sendable, Hashable, CustomStringConvertible {
    case builtin(name: String)
    case library(path: String)

    var description: String {
        switch self {
        case .builtin(let name): name
        case .library(let path): path
        }
    }
}

/// An open storage engine as `fjord` drives it: start the broker over it, close it last.
protocol OpenedStorage: Sendable {
    func startBroker(configuration: BrokerConfiguration, logger: Logger) async throws -> any BrokerService
    func close() async
}

/// The broker as `fjord` drives it.
protocol BrokerService: KafkaRequestHandler {
    func beginShutdown()
    func shutdown() async
}

extension Broker: BrokerService {}

/// `--backend NAME` that is not linked into this binary.
struct UnknownBackendError: Error, CustomStringConvertible {
    var name: String
    var description: String {
        "unknown backend '\(name)'; available: \(Storage.builtinBackendNames.joined(separator: ", ")) "
            + "(or load one with --backend-path)"
    }
}

enum Storage {
    static var builtinBackendNames: [String] { StorageBackend.builtinNames }

    /// One line per built-in backend: name, capabilities, description (`fjord --list-backends`).
    static var backendListing: String {
        builtinBackendNames.map { name in
            guard let backend = try? StorageBackend.builtin(named: name) else { return "\(name)\t(unavailable)\n" }
            var capabilities: [String] = []
            if backend.capabilities.contains(.durable) { capabilities.append("durable") }
            if backend.capabilities.contains(.nonblocking) { capabilities.append("nonblocking") }
            if backend.capabilities.contains(.sharedSync) { capabilities.append("shared-sync") }
            let flags = capabilities.isEmpty ? "-" : capabilities.joined(separator: ",")
            return "\(name)\t\(flags)\t\(backend.description)\n"
        }.joined()
    }

    /// Opens the selected backend with `path` = `dataDirectory` and the `--backend-option`s.
    static func open(
        _ selection: BackendSelection,
        dataDirectory: String,
        backendOptions: [(key: String, value: String)],
        ioThreads: Int,
        logger: Logger
    ) async throws -> any OpenedStorage {
        let backend: StorageBackend
        switch selection {
        case .builtin(let name):
            guard StorageBackend.builtinNames.contains(name) else {
                throw UnknownBackendError(name: name)
            }
            backend = try StorageBackend.builtin(named: name)
        case .library(let path):
            backend = try StorageBackend.load(path: path)
        }
        let engine = try StorageEngine.open(
            backend: backend,
            options: [(key: "path", value: dataDirectory)] + backendOptions,
            logger: logger,
            blockingThreadCount: ioThreads
        )
        return EngineStorage(engine: engine)
    }
}

private struct EngineStorage: OpenedStorage {
    let engine: StorageEngine

    func startBroker(configuration: BrokerConfiguration, logger: Logger) async throws -> any BrokerService {
        try await Broker.start(configuration: configuration, storage: self.engine, logger: logger)
    }

    func close() async {
        await self.engine.close()
    }
}
