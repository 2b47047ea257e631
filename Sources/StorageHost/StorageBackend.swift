internal import CKStore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What a backend guarantees (kstore.h "Capability bits").
public struct StorageCapabilities: OptionSet, Sendable, Hashable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// A sync completion means the synced entries survive a crash; logs survive reopening the
    /// instance (`KSTORE_CAP_DURABLE`).
    public static let durable = StorageCapabilities(rawValue: 1 << 0)
    /// No member blocks on I/O, so the host calls it on the caller's thread
    /// (`KSTORE_CAP_NONBLOCKING`).
    public static let nonblocking = StorageCapabilities(rawValue: 1 << 1)
    /// One sync covers every log of the instance (`KSTORE_CAP_SHARED_SYNC`).
    public static let sharedSync = StorageCapabilities(rawValue: 1 << 2)
}

/// The size of each table in ABI version 1: the smallest `struct_size` the host accepts.
enum ABIVersion1 {
    static let version: UInt32 = 1
    static let backendTableBytes = 32 + 7 * 8
    static let logMethodsBytes = 8 + 10 * 8
}

/// What ABI version 2 added: the log table's `append_checked_batch`.
enum ABIVersion2 {
    static let version: UInt32 = 2
    static let logMethodsBytes = 8 + 11 * 8
}

/// A validated backend table. kstore.h: "A backend table is immutable and may be used from any
/// thread", and it is static for the life of the process (built-ins are linked in, libraries
/// loaded by path are never unloaded), so sharing the pointer across threads is sound.
struct BackendTable: @unchecked Sendable {
    let pointer: UnsafePointer<kstore_backend>
    /// A copy of the table's ABI-version-1 members, taken after the size check.
    let members: kstore_backend

    /// The optional `control` member, if the table's version, size and pointer say it exists.
    var control: (@convention(c) (UnsafeMutablePointer<kstore_instance>?, Int32, UnsafeMutableRawPointer?) -> Int32)? {
        guard
            tableHasMember(
                version: self.members.abi_version,
                structSize: self.members.struct_size,
                since: 1,
                offset: MemoryLayout<kstore_backend>.offset(of: \kstore_backend.control)
            )
        else { return nil }
        return self.members.control
    }
}

/// kstore.h "Versioning rules": a member exists if the table's version is at least the member's
/// "since" version and the member lies wholly inside struct_size.
func tableHasMember(version: UInt32, structSize: UInt32, since: UInt32, offset: Int?) -> Bool {
    guard let offset else { return false }
    return version >= since && offset + MemoryLayout<UnsafeRawPointer>.size <= Int(structSize)
}

/// A storage backend whose table passed the ABI checks: the way to open a `StorageEngine`.
public struct StorageBackend: Sendable {
    /// The short name from the table ("memory").
    public var name: String
    /// The table's one line for humans.
    public var description: String
    public var capabilities: StorageCapabilities
    /// The `KSTORE_ABI_VERSION` the backend was built with.
    public var abiVersion: UInt32
    /// The backend table's `struct_size`.
    public var structSize: UInt32

    let table: BackendTable

    /// Validates a backend table handed to the host by whoever links the backend in (the
    /// `StorageBackends` registry for the built-in ones, a test for a shim): a pointer to a static
    /// `const kstore_backend` that stays valid for the life of the process.
    public init(validatingTable table: UnsafeRawPointer, origin: String) throws {
        try self.init(validating: table.assumingMemoryBound(to: kstore_backend.self), origin: origin)
    }

    /// The table's address, for handing it to a shim that wraps it (kstore.h "Layers stack").
    public var tableAddress: UnsafeRawPointer { UnsafeRawPointer(self.table.pointer) }

    /// Loads a backend built as a shared library: `dlopen`s `path`, looks up
    /// `kstore_backend_entry` (KSTORE_BACKEND_ENTRY_SYMBOL) and validates the table it returns.
    /// The library is never unloaded: its table must stay valid for the life of the process.
    public static func load(path: String) throws -> StorageBackend {
        guard let library = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw StorageError(
                code: .notFound,
                message: "cannot load storage backend '\(path)': \(dynamicLinkerError())"
            )
        }
        guard let symbol = dlsym(library, KSTORE_BACKEND_ENTRY_SYMBOL) else {
            let reason = dynamicLinkerError()
            dlclose(library)
            throw StorageError(
                code: .notFound,
                message: "storage backend '\(path)' does not export \(KSTORE_BACKEND_ENTRY_SYMBOL): \(reason)"
            )
        }
        typealias EntryFunction = @convention(c) () -> UnsafePointer<kstore_backend>?
        let entry = unsafeBitCast(symbol, to: EntryFunction.self)
        guard let table = entry() else {
            throw StorageError(code: .unsupported, message: "storage backend '\(path)' returned no table")
        }
        return try StorageBackend(validating: table, origin: "backend library '\(path)'")
    }

    /// Checks a backend table against ABI version 1 (kstore.h "Versioning rules"): version, size,
    /// non-NULL name and description and every REQUIRED member.
    init(validating pointer: UnsafePointer<kstore_backend>, origin: String) throws {
        func reject(_ reason: String) -> StorageError {
            StorageError(code: .unsupported, message: "\(origin) has an unusable kstore_backend table: \(reason)")
        }
        // Read only the two leading fields until the size says the rest is there.
        let raw = UnsafeRawPointer(pointer)
        let version = raw.load(fromByteOffset: 0, as: UInt32.self)
        let structSize = raw.load(fromByteOffset: 4, as: UInt32.self)
        guard version >= ABIVersion1.version else {
            throw reject("abi_version \(version) is older than 1")
        }
        guard structSize >= ABIVersion1.backendTableBytes else {
            throw reject(
                "struct_size \(structSize) is smaller than the version 1 size \(ABIVersion1.backendTableBytes)"
            )
        }
        let members = pointer.pointee
        guard let name = members.name else { throw reject("name is NULL") }
        guard let description = members.description else { throw reject("description is NULL") }
        var missing: [String] = []
        if members.open == nil { missing.append("open") }
        if members.close == nil { missing.append("close") }
        if members.last_error == nil { missing.append("last_error") }
        if members.open_log == nil { missing.append("open_log") }
        if members.delete_log == nil { missing.append("delete_log") }
        if members.list_logs == nil { missing.append("list_logs") }
        guard missing.isEmpty else {
            throw reject("REQUIRED member(s) \(missing.joined(separator: ", ")) are NULL")
        }
        self.name = String(cString: name)
        self.description = String(cString: description)
        self.capabilities = StorageCapabilities(rawValue: members.capabilities)
        self.abiVersion = version
        self.structSize = structSize
        self.table = BackendTable(pointer: pointer, members: members)
    }
}

private func dynamicLinkerError() -> String {
    guard let message = dlerror() else { return "unknown dynamic linker error" }
    return String(cString: message)
}
