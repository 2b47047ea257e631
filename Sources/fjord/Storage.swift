import BrokerCore
import Logging
import NIOCore
import StorageBackends
import StorageHost

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

    /// The validated backend table for a selection.
    static func backend(_ selection: BackendSelection) throws -> StorageBackend {
        switch selection {
        case .builtin(let name):
            guard StorageBackend.builtinNames.contains(name) else { throw UnknownBackendError(name: name) }
            return try StorageBackend.builtin(named: name)
        case .library(let path):
            return try StorageBackend.load(path: path)
        }
    }

    /// Opens `backend` with `path` = `dataDirectory` and the backend options; `observer` (the
    /// metrics, when on) is told of every append and sync.
    static func open(
        _ backend: StorageBackend,
        dataDirectory: String,
        backendOptions: [(key: String, value: String)],
        ioThreads: Int,
        observer: (any StorageObserver)?,
        logger: Logger
    ) throws -> StorageEngine {
        try StorageEngine.open(
            backend: backend,
            options: [(key: "path", value: dataDirectory)] + backendOptions,
            logger: logger,
            blockingThreadCount: ioThreads,
            configuration: StorageHostConfiguration(observer: observer)
        )
    }
}
