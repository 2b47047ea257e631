import CKStore
import Foundation
import StorageBackends
import Testing

@testable import StorageHost
@testable import StorageTestSupport

/// DESIGN.md §2: a test loads every backend and checks version, size, name and required members;
/// bad tables are refused with a clear error.
@Suite("ABI tables")
struct ABITableTests {
    /// Every built-in backend loads, and its backend and log tables have the current layout,
    /// a name, a description and every REQUIRED member.
    @Test(arguments: StorageBackend.builtinNames)
    func builtinBackendTablesAreComplete(name: String) throws {
        let backend = try StorageBackend.builtin(named: name)
        #expect(backend.name == name)
        #expect(!backend.description.isEmpty)
        #expect(backend.abiVersion == KSTORE_ABI_VERSION)
        #expect(backend.structSize == UInt32(MemoryLayout<kstore_backend>.size))
        #expect(MemoryLayout<kstore_backend>.size == ABIVersion1.backendTableBytes)
        let table = backend.table.members
        #expect(table.reserved == 0)
        #expect(table.open != nil && table.close != nil && table.last_error != nil)
        #expect(table.open_log != nil && table.delete_log != nil && table.list_logs != nil)
        #expect(backend.capabilities.rawValue & ~UInt32(0b111) == 0, "only capability bits kstore.h defines")

        // The log table, from a log of a fresh instance.
        let instance = try CInstance(backend)
        defer { instance.close() }
        let log = try instance.openLog("abi", flags: UInt32(KSTORE_OPEN_CREATE))
        defer { log.pointee.methods.pointee.close(log) }
        let methods = log.pointee.methods.pointee
        #expect(methods.abi_version == KSTORE_ABI_VERSION)
        #expect(methods.struct_size == UInt32(MemoryLayout<kstore_log_methods>.size))
        #expect(MemoryLayout<kstore_log_methods>.size == ABIVersion2.logMethodsBytes)
        #expect(methods.close != nil && methods.append != nil && methods.read != nil)
        #expect(methods.sync != nil && methods.state != nil)
        _ = try LogHandle(validating: log, origin: "test")
    }

    /// The memory backend is non-blocking and, holding data only in memory, not durable.
    @Test func memoryBackendCapabilities() throws {
        let backend = try StorageBackend.builtin(named: "memory")
        #expect(backend.capabilities == [.nonblocking])
        #expect(StorageBackend.builtinNames.contains("memory"))
    }

    /// An unknown built-in name is an error that lists the available names.
    @Test func unknownBuiltinNameListsTheAvailableOnes() {
        #expect {
            try StorageBackend.builtin(named: "tape")
        } throws: { error in
            guard let error = error as? StorageError else { return false }
            return error.code == .notFound && error.message.contains("tape")
                && StorageBackend.builtinNames.allSatisfy { error.message.contains($0) }
        }
    }

    enum BadBackendTable: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case versionZero, structSizeTooSmall, nullName, nullDescription
        case nullOpen, nullClose, nullLastError, nullOpenLog, nullDeleteLog, nullListLogs

        var testDescription: String { self.rawValue }

        func apply(to table: inout kstore_backend) {
            switch self {
            case .versionZero: table.abi_version = 0
            case .structSizeTooSmall: table.struct_size = 32
            case .nullName: table.name = nil
            case .nullDescription: table.description = nil
            case .nullOpen: table.open = nil
            case .nullClose: table.close = nil
            case .nullLastError: table.last_error = nil
            case .nullOpenLog: table.open_log = nil
            case .nullDeleteLog: table.delete_log = nil
            case .nullListLogs: table.list_logs = nil
            }
        }

        var expectedReason: String {
            switch self {
            case .versionZero: "abi_version 0"
            case .structSizeTooSmall: "struct_size 32"
            case .nullName: "name is NULL"
            case .nullDescription: "description is NULL"
            case .nullOpen: "open are NULL"
            case .nullClose: "close are NULL"
            case .nullLastError: "last_error are NULL"
            case .nullOpenLog: "open_log are NULL"
            case .nullDeleteLog: "delete_log are NULL"
            case .nullListLogs: "list_logs are NULL"
            }
        }
    }

    /// A backend table built from a real one but with a wrong version, a too-small struct_size or a
    /// NULL required member is refused with an error naming the problem.
    @Test(arguments: StorageBackend.builtinNames, BadBackendTable.allCases)
    func badBackendTablesAreRejected(name: String, defect: BadBackendTable) throws {
        var table = try StorageBackend.builtin(named: name).table.members
        defect.apply(to: &table)
        #expect {
            try withUnsafePointer(to: &table) { try StorageBackend(validating: $0, origin: "hand-built table") }
        } throws: { error in
            guard let error = error as? StorageError else { return false }
            return error.code == .unsupported && error.message.contains("hand-built table")
                && error.message.contains(defect.expectedReason)
        }
    }

    /// A table from a newer ABI (higher version, larger struct) is accepted: tables only grow.
    @Test(arguments: StorageBackend.builtinNames)
    func newerBackendTablesAreAccepted(name: String) throws {
        let real = try StorageBackend.builtin(named: name).table.members
        let size = MemoryLayout<kstore_backend>.size + 16
        let raw = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        defer { raw.deallocate() }
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        let table = raw.bindMemory(to: kstore_backend.self, capacity: 1)
        table.pointee = real
        table.pointee.abi_version = KSTORE_ABI_VERSION + 1
        table.pointee.struct_size = UInt32(size)
        let backend = try StorageBackend(validating: table, origin: "newer table")
        #expect(
            backend.abiVersion == KSTORE_ABI_VERSION + 1 && backend.structSize == UInt32(size) && backend.name == name
        )
    }

    enum BadLogTable: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case nullMethods, versionZero, structSizeTooSmall, nullClose, nullAppend, nullRead, nullSync, nullState

        var testDescription: String { self.rawValue }

        var expectedReason: String {
            switch self {
            case .nullMethods: "methods pointer is NULL"
            case .versionZero: "abi_version 0"
            case .structSizeTooSmall: "struct_size 48"
            case .nullClose: "close are NULL"
            case .nullAppend: "append are NULL"
            case .nullRead: "read are NULL"
            case .nullSync: "sync are NULL"
            case .nullState: "state are NULL"
            }
        }
    }

    /// A log methods table with a wrong version, a too-small size or a NULL required member is
    /// refused when the log opens.
    @Test(arguments: BadLogTable.allCases)
    func badLogTablesAreRejected(defect: BadLogTable) throws {
        let instance = try CInstance(StorageBackend.builtin(named: "memory"))
        defer { instance.close() }
        let log = try instance.openLog("bad", flags: UInt32(KSTORE_OPEN_CREATE))
        let real = log.pointee.methods!
        defer { real.pointee.close(log) }
        var methods = real.pointee
        switch defect {
        case .nullMethods: break
        case .versionZero: methods.abi_version = 0
        case .structSizeTooSmall: methods.struct_size = 48
        case .nullClose: methods.close = nil
        case .nullAppend: methods.append = nil
        case .nullRead: methods.read = nil
        case .nullSync: methods.sync = nil
        case .nullState: methods.state = nil
        }
        withUnsafePointer(to: &methods) { methods in
            var fake = kstore_log(methods: defect == .nullMethods ? nil : methods)
            #expect {
                try withUnsafeMutablePointer(to: &fake) { try LogHandle(validating: $0, origin: "hand-built log") }
            } throws: { error in
                guard let error = error as? StorageError else { return false }
                return error.code == .unsupported && error.message.contains(defect.expectedReason)
            }
        }
    }

    /// An optional member exists only if the table's version reaches its "since" and it lies
    /// inside struct_size.
    @Test func optionalMembersNeedVersionAndSize() {
        let offset = MemoryLayout<kstore_log_methods>.offset(of: \kstore_log_methods.control)!
        #expect(tableHasMember(version: 1, structSize: UInt32(offset + 8), since: 1, offset: offset))
        #expect(!tableHasMember(version: 1, structSize: UInt32(offset + 7), since: 1, offset: offset))
        #expect(!tableHasMember(version: 1, structSize: 1_000, since: 2, offset: offset))
        #expect(tableHasMember(version: 3, structSize: 1_000, since: 2, offset: offset))
        #expect(!tableHasMember(version: 1, structSize: 1_000, since: 1, offset: nil))
    }

    // MARK: Loading by path

    static let compiler = ["/usr/bin/clang", "/usr/bin/cc", "/usr/bin/gcc"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// Builds a tiny backend library exporting kstore_backend_entry with the given abi_version.
    static func buildStubLibrary(abiVersion: Int, directory: URL) throws -> String {
        let include = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Backends/include").standardized.path
        let source = directory.appendingPathComponent("stub.c")
        let library = directory.appendingPathComponent("libkstore_stub\(abiVersion).so")
        try """
        #include "kstore.h"
        static kstore_status stub_open(const kstore_option *o, uint32_t n, kstore_instance **i, char *e, size_t c) {
            (void)o; (void)n; (void)e; (void)c; *i = 0; return KSTORE_ERR_UNSUPPORTED;
        }
        static void stub_close(kstore_instance *i) { (void)i; }
        static size_t stub_last_error(kstore_instance *i, char *b, size_t c) { (void)i; if (c) b[0] = 0; return 0; }
        static kstore_status stub_open_log(kstore_instance *i, const char *n, uint32_t f, const kstore_option *o,
                                           uint32_t c, kstore_log **l) {
            (void)i; (void)n; (void)f; (void)o; (void)c; *l = 0; return KSTORE_ERR_UNSUPPORTED;
        }
        static kstore_status stub_delete_log(kstore_instance *i, const char *n) { (void)i; (void)n; return KSTORE_ERR_NOT_FOUND; }
        static kstore_status stub_list_logs(kstore_instance *i, kstore_list_callback cb, void *c) {
            (void)i; (void)cb; (void)c; return KSTORE_OK;
        }
        static const kstore_backend table = {
            \(abiVersion), sizeof(kstore_backend), "stub", "a stub loaded by path", KSTORE_CAP_NONBLOCKING, 0,
            stub_open, stub_close, stub_last_error, stub_open_log, stub_delete_log, stub_list_logs, 0,
        };
        const kstore_backend *kstore_backend_entry(void) { return &table; }
        """.write(to: source, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.compiler!)
        process.arguments = [
            "-shared", "-fPIC", "-std=gnu11", "-Wall", "-Werror", "-I", include, source.path, "-o", library.path,
        ]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw StorageError(code: .io, message: "compiling the stub backend failed (\(process.terminationStatus))")
        }
        return library.path
    }

    /// A backend library loads by path through kstore_backend_entry, and its table is validated
    /// like a built-in one.
    @Test(.enabled(if: compiler != nil, "no C compiler to build a backend library"))
    func backendLibrariesLoadByPath() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fjord-stub-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let backend = try StorageBackend.load(path: try Self.buildStubLibrary(abiVersion: 1, directory: directory))
        #expect(backend.name == "stub" && backend.description == "a stub loaded by path")
        #expect(backend.capabilities == [.nonblocking] && backend.abiVersion == 1)
        // Its open fails; the engine reports the status.
        #expect(throws: StorageError.self) {
            try StorageEngine.open(backend: backend, options: [], logger: quietLogger)
        }
        let old = try Self.buildStubLibrary(abiVersion: 0, directory: directory)
        #expect {
            try StorageBackend.load(path: old)
        } throws: { error in
            (error as? StorageError)?.message.contains("abi_version 0") == true
        }
    }

    /// A missing library, or one without kstore_backend_entry, is a clear error.
    @Test func unloadableLibrariesAreReported() {
        #expect {
            try StorageBackend.load(path: "/nonexistent/libkstore_nothing.so")
        } throws: { error in
            (error as? StorageError).map {
                $0.code == .notFound && $0.message.contains("/nonexistent/libkstore_nothing.so")
            } ?? false
        }
        #expect {
            try StorageBackend.load(path: "libc.so.6")
        } throws: { error in
            (error as? StorageError)?.message.contains(KSTORE_BACKEND_ENTRY_SYMBOL) == true
        }
    }
}

/// A backend instance driven through the C table directly, for tests about C behaviour.
final class CInstance: @unchecked Sendable {  // The instance pointer is safe to share (kstore.h "Threading").
    let table: kstore_backend
    let pointer: UnsafeMutablePointer<kstore_instance>
    /// The data directory made for a DURABLE backend opened without "path" (kstore.h: durable
    /// backends require it); removed by close.
    let temporaryDirectory: String?

    init(_ backend: StorageBackend, options: [(key: String, value: String)] = []) throws {
        self.table = backend.table.members
        var options = options
        var temporaryDirectory: String? = nil
        if backend.capabilities.contains(.durable) && !options.contains(where: { $0.key == "path" }) {
            let directory = FileManager.default.temporaryDirectory
                .appendingPathComponent("fjord-c-\(backend.name)-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            options.append((key: "path", value: directory))
            temporaryDirectory = directory
        }
        self.temporaryDirectory = temporaryDirectory
        var instance: UnsafeMutablePointer<kstore_instance>? = nil
        let table = self.table
        let status = try withCOptions(options, what: "test") { options, count in
            table.open(options, count, &instance, nil, 0)
        }
        guard status == KSTORE_OK, let instance else {
            if let temporaryDirectory { try? FileManager.default.removeItem(atPath: temporaryDirectory) }
            throw StorageError(code: StorageError.Code(status: status), message: "open failed")
        }
        self.pointer = instance
    }

    func openLog(_ name: String, flags: UInt32) throws -> UnsafeMutablePointer<kstore_log> {
        var log: UnsafeMutablePointer<kstore_log>? = nil
        let status = self.table.open_log(self.pointer, name, flags, nil, 0, &log)
        guard status == KSTORE_OK, let log else {
            throw StorageError(code: StorageError.Code(status: status), message: "open_log failed: \(self.lastError())")
        }
        return log
    }

    func lastError() -> String {
        var buffer = [CChar](repeating: 0, count: 1_024)
        _ = self.table.last_error(self.pointer, &buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func close() {
        self.table.close(self.pointer)
        if let temporaryDirectory { try? FileManager.default.removeItem(atPath: temporaryDirectory) }
    }
}
