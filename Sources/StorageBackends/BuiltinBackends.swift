internal import CKStore
internal import KStoreFile
internal import KStoreMemory
internal import KStoreURing
import StorageHost

/// The backends linked into this binary, found by name. The storage host knows no backend: it is
/// handed validated tables (kstore.h "Each backend exports one entry function"), so everything
/// above the host links only what this registry names. Adding a built-in backend is one line here
/// plus its target in Package.swift.
extension StorageBackend {
    private static var builtinEntries: [(name: String, entry: () -> UnsafePointer<kstore_backend>?)] {
        [
            ("memory", { kstore_memory_backend() }),
            ("file", { kstore_file_backend() }),
            ("uring", { kstore_uring_backend() }),
        ]
    }

    /// The names `builtin(named:)` accepts, in the order they are listed.
    public static var builtinNames: [String] { builtinEntries.map(\.name) }

    /// The built-in backend called `name`, validated.
    public static func builtin(named name: String) throws -> StorageBackend {
        guard let entry = builtinEntries.first(where: { $0.name == name }) else {
            throw StorageError(
                code: .notFound,
                message:
                    "no built-in storage backend named '\(name)'; available: \(builtinNames.joined(separator: ", "))"
            )
        }
        guard let table = entry.entry() else {
            throw StorageError(code: .unsupported, message: "built-in storage backend '\(name)' returned no table")
        }
        let backend = try StorageBackend(validatingTable: UnsafeRawPointer(table), origin: "built-in backend '\(name)'")
        guard backend.name == name else {
            throw StorageError(
                code: .unsupported,
                message: "built-in backend '\(name)' reports the name '\(backend.name)'"
            )
        }
        return backend
    }
}
