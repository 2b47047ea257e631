import Foundation
import Logging
import NIOCore
import StorageBackends
import StorageHost
import Synchronization
import Testing

/// How the host calls the backend in a test case.
enum ExecutionPath: String, Sendable, CaseIterable, CustomTestStringConvertible {
    /// On the caller's thread (the backend is non-blocking).
    case direct
    /// Through the blocking thread pool and per-log lanes, as for file/io_uring backends.
    case forcedBlocking

    var testDescription: String { self.rawValue }
}

let quietLogger = Logger(label: "fjord.storage.tests", factory: { _ in SwiftLogNoOpLogHandler() })

/// Built-in backends with KSTORE_CAP_DURABLE: the ones that run the reopen cases.
let durableBuiltinNames: [String] = StorageBackend.builtinNames.filter { name in
    (try? StorageBackend.builtin(named: name).capabilities.contains(.durable)) ?? false
}

/// One backend instance under test, with a data directory for durable backends.
final class Harness: @unchecked Sendable {  // Used by one test task at a time.
    let backend: StorageBackend
    let path: ExecutionPath
    let dataDirectory: String?
    private(set) var engine: StorageEngine

    var isDurable: Bool { self.backend.capabilities.contains(.durable) }

    private init(backend: StorageBackend, path: ExecutionPath, dataDirectory: String?, engine: StorageEngine) {
        self.backend = backend
        self.path = path
        self.dataDirectory = dataDirectory
        self.engine = engine
    }

    static func open(_ name: String, _ path: ExecutionPath) throws -> Harness {
        let backend = try StorageBackend.builtin(named: name)
        var dataDirectory: String? = nil
        if backend.capabilities.contains(.durable) {
            let directory = FileManager.default.temporaryDirectory
                .appendingPathComponent("fjord-storage-\(name)-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            dataDirectory = directory
        }
        let engine = try Self.openEngine(backend, path, dataDirectory)
        return Harness(backend: backend, path: path, dataDirectory: dataDirectory, engine: engine)
    }

    private static func openEngine(
        _ backend: StorageBackend,
        _ path: ExecutionPath,
        _ dataDirectory: String?
    ) throws
        -> StorageEngine
    {
        try StorageEngine.open(
            backend: backend,
            options: dataDirectory.map { [(key: "path", value: $0)] } ?? [],
            logger: quietLogger,
            blockingThreadCount: 4,
            configuration: StorageHostConfiguration(forceBlockingExecution: path == .forcedBlocking)
        )
    }

    /// Closes the instance and opens it again on the same data: the hook for recovery cases, which
    /// only DURABLE backends run.
    func reopenInstance() async throws {
        precondition(self.isDurable, "only durable backends keep logs across instances")
        await self.engine.close()
        self.engine = try Self.openEngine(self.backend, self.path, self.dataDirectory)
    }

    func close() async {
        await self.engine.close()
        if let dataDirectory { try? FileManager.default.removeItem(atPath: dataDirectory) }
    }
}

/// Opens a harness, runs `body`, and always closes it.
func withHarness(
    _ name: String,
    _ path: ExecutionPath,
    _ body: (Harness) async throws -> Void
) async throws {
    let harness = try Harness.open(name, path)
    do {
        try await body(harness)
    } catch {
        await harness.close()
        throw error
    }
    await harness.close()
}

/// Test entries describe themselves, so a read can be checked for order, gaps, duplicates and
/// torn bytes: [firstOffset Int64][lastOffset Int64][maxTimestamp Int64][byteCount UInt32] and a
/// payload whose byte i is (firstOffset + i) mod 256.
enum TestEntry {
    static let headerBytes = 28

    struct Parsed: Equatable, Sendable {
        var firstOffset: Int64
        var lastOffset: Int64
        var maxTimestamp: Int64
        var byteCount: Int
    }

    static func make(firstOffset: Int64, lastOffset: Int64, maxTimestamp: Int64 = -1, byteCount: Int = 64) -> ByteBuffer
    {
        precondition(byteCount >= headerBytes)
        var buffer = ByteBufferAllocator().buffer(capacity: byteCount)
        buffer.writeInteger(firstOffset)
        buffer.writeInteger(lastOffset)
        buffer.writeInteger(maxTimestamp)
        buffer.writeInteger(UInt32(byteCount))
        let seed = UInt8(truncatingIfNeeded: firstOffset)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: byteCount - headerBytes) { bytes in
            for index in 0..<(byteCount - headerBytes) { bytes[index] = seed &+ UInt8(truncatingIfNeeded: index) }
            return byteCount - headerBytes
        }
        return buffer
    }

    struct Malformed: Error, CustomStringConvertible {
        var description: String
    }

    /// Splits concatenated entries, checking each one's payload.
    static func parse(_ buffer: ByteBuffer) throws -> [Parsed] {
        var buffer = buffer
        var entries: [Parsed] = []
        while buffer.readableBytes > 0 {
            guard let first = buffer.readInteger(as: Int64.self), let last = buffer.readInteger(as: Int64.self),
                let timestamp = buffer.readInteger(as: Int64.self), let size = buffer.readInteger(as: UInt32.self),
                Int(size) >= headerBytes, let payload = buffer.readSlice(length: Int(size) - headerBytes)
            else {
                throw Malformed(description: "truncated entry after \(entries.count) entries")
            }
            let seed = UInt8(truncatingIfNeeded: first)
            let tornIndex = payload.withUnsafeReadableBytes { bytes in
                (0..<bytes.count).first { bytes[$0] != seed &+ UInt8(truncatingIfNeeded: $0) }
            }
            if let tornIndex { throw Malformed(description: "torn payload in entry \(first) at byte \(tornIndex)") }
            entries.append(Parsed(firstOffset: first, lastOffset: last, maxTimestamp: timestamp, byteCount: Int(size)))
        }
        return entries
    }

    /// The entry's max timestamp, for the host's find-offset fallback.
    static func maxTimestamp(_ entry: ByteBuffer) -> Int64? {
        entry.getInteger(at: entry.readerIndex + 16, as: Int64.self)
    }
}

/// A plan of entries to append: `offsetCounts[i]` offsets in entry i.
struct LogPlan {
    var entries: [TestEntry.Parsed] = []

    var endOffset: Int64 { self.entries.last.map { $0.lastOffset + 1 } ?? 0 }
    var byteCount: UInt64 { self.entries.reduce(0) { $0 + UInt64($1.byteCount) } }

    mutating func add(offsetCount: Int64, maxTimestamp: Int64 = -1, byteCount: Int = 64) {
        let first = self.endOffset
        self.entries.append(
            TestEntry.Parsed(
                firstOffset: first,
                lastOffset: first + offsetCount - 1,
                maxTimestamp: maxTimestamp,
                byteCount: byteCount
            )
        )
    }

    /// The entry containing `offset`.
    func index(containing offset: Int64) -> Int? {
        self.entries.firstIndex { $0.firstOffset <= offset && offset <= $0.lastOffset }
    }
}

extension StorageLog {
    /// Appends the plan's entries from `from` on without waiting for each, then waits for all.
    func append(_ plan: LogPlan, from index: Int = 0) async throws {
        let failures = LockedState<[StorageError]>([])
        for entry in plan.entries[index...] {
            self.submitAppend(
                firstOffset: entry.firstOffset,
                lastOffset: entry.lastOffset,
                maxTimestamp: entry.maxTimestamp,
                parts: Self.split(
                    TestEntry.make(
                        firstOffset: entry.firstOffset,
                        lastOffset: entry.lastOffset,
                        maxTimestamp: entry.maxTimestamp,
                        byteCount: entry.byteCount
                    )
                )
            ) { result in
                if case .failure(let error) = result { failures.withLock { $0.append(error) } }
            }
        }
        try await self.sync()
        if let failure = failures.withLock({ $0.first }) { throw failure }
    }

    /// Splits an entry the way the broker does: a 16-byte head and the rest.
    static func split(_ entry: ByteBuffer) -> [ByteBuffer] {
        var entry = entry
        let head = entry.readSlice(length: min(16, entry.readableBytes))!
        return entry.readableBytes > 0 ? [head, entry] : [head]
    }

    /// Reads everything from `offset` in one go.
    func readAll(from offset: Int64, maxBytes: Int = 1 << 30) async throws -> [TestEntry.Parsed] {
        try TestEntry.parse(
            try await self.read(from: offset, limit: .max, maxBytes: maxBytes, minimumOneEntry: true).bytes
        )
    }
}

/// The code of the StorageError `body` throws, or nil if it does not throw one.
func storageErrorCode(_ body: () async throws -> Void) async -> StorageError.Code? {
    do {
        try await body()
        return nil
    } catch let error as StorageError {
        return error.code
    } catch {
        return .unknown(-999)
    }
}
