internal import CKStore
import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Settings of the host itself; none of them reaches the backend.
public struct StorageHostConfiguration: Sendable {
    /// Run every backend call on the blocking thread pool even when the backend is
    /// KSTORE_CAP_NONBLOCKING, as the host does for backends without it. For tests: it exercises the
    /// path the file backend takes, with the memory backend.
    public var forceBlockingExecution: Bool
    /// Reads an entry's max timestamp from its bytes (for Fjord: a RecordBatch's maxTimestamp).
    /// Used only by the `findOffset(atOrAfterTimestamp:)` fallback for backends without
    /// find_offset_by_time; the host itself never parses entries.
    public var entryMaxTimestamp: (@Sendable (ByteBuffer) -> Int64?)?
    /// Told of every append and sync completion with its latency, and of every wait for a BUSY
    /// backend (nil: nothing is measured, and no clock is read).
    public var observer: (any StorageObserver)?

    public init(
        forceBlockingExecution: Bool = false,
        entryMaxTimestamp: (@Sendable (ByteBuffer) -> Int64?)? = nil,
        observer: (any StorageObserver)? = nil
    ) {
        self.forceBlockingExecution = forceBlockingExecution
        self.entryMaxTimestamp = entryMaxTimestamp
        self.observer = observer
    }
}

/// One open backend instance (kstore.h `kstore_instance`): opens, deletes and lists logs, and owns
/// the threads that run blocking backend calls.
///
/// Threading: for a KSTORE_CAP_NONBLOCKING backend (unless `forceBlockingExecution`), every call
/// runs on the caller's thread; otherwise instance calls (open/delete/list log, close) run on the
/// blocking pool and the caller suspends without blocking its thread.
public final class StorageEngine: Sendable {
    private enum Phase: Equatable {
        case open, closing, closed
    }

    private struct State {
        var phase = Phase.open
        /// Instance calls in progress; close waits for them before closing the logs.
        var activeCallCount = 0
        var drainWaiter: CheckedContinuation<Void, Never>?
        var closeWaiters: [CheckedContinuation<Void, Never>] = []
    }

    /// `package`: the storage test support (Tests/StorageTestSupport) reads the backend's last_error.
    package let context: InstanceContext
    private let state = LockedState(State())

    /// The backend this instance belongs to.
    public var backend: StorageBackend { self.context.backend }
    /// Whether backend calls go through the blocking thread pool (backend without
    /// KSTORE_CAP_NONBLOCKING, or `forceBlockingExecution`).
    public var usesBlockingPool: Bool { self.context.usesBlockingPool }

    private init(context: InstanceContext) {
        self.context = context
    }

    /// Opens an instance of `backend` with its options (kstore.h `kstore_option`; e.g. "path").
    /// Runs the backend's open on the calling thread: call it at startup, not on an event loop, for
    /// a backend that recovers its data here.
    ///
    /// - Parameter blockingThreadCount: the most threads the blocking pool starts (lazily).
    public static func open(
        backend: StorageBackend,
        options: [(key: String, value: String)],
        logger: Logger,
        blockingThreadCount: Int = 8,
        configuration: StorageHostConfiguration = StorageHostConfiguration()
    ) throws -> StorageEngine {
        guard blockingThreadCount >= 1 else {
            throw StorageError(
                code: .invalidArgument,
                message: "blockingThreadCount must be at least 1, not \(blockingThreadCount)"
            )
        }
        let instance = try withCOptions(options, what: "opening backend '\(backend.name)'") {
            options,
            optionCount -> UnsafeMutablePointer<kstore_instance> in
            var instance: UnsafeMutablePointer<kstore_instance>? = nil
            var reason = [CChar](repeating: 0, count: 1024)
            // `open` is REQUIRED and was checked non-NULL when the table was validated.
            let status = reason.withUnsafeMutableBufferPointer { reason in
                backend.table.members.open!(options, optionCount, &instance, reason.baseAddress, reason.count)
            }
            guard status == KSTORE_OK else {
                reason[reason.count - 1] = 0
                let text = String(decoding: reason.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                throw StorageError(
                    code: StorageError.Code(status: status),
                    message: "opening backend '\(backend.name)' failed: \(text.isEmpty ? "no reason given" : text)"
                )
            }
            guard let instance else {
                throw StorageError(
                    code: .unknown(status),
                    message: "backend '\(backend.name)' reported success from open but returned no instance"
                )
            }
            return instance
        }
        var logger = logger
        logger[metadataKey: "storage.backend"] = "\(backend.name)"
        let usesBlockingPool =
            configuration.forceBlockingExecution || !backend.capabilities.contains(.nonblocking)
        let context = InstanceContext(
            backend: backend,
            instance: InstancePointer(pointer: instance),
            executor: BlockingExecutor(threadLimit: blockingThreadCount),
            usesBlockingPool: usesBlockingPool,
            logger: logger,
            entryMaxTimestamp: configuration.entryMaxTimestamp,
            observer: configuration.observer
        )
        logger.info(
            "storage backend opened",
            metadata: [
                "storage.capabilities": "\(backend.capabilities.rawValue)",
                "storage.blocking-pool": "\(usesBlockingPool)",
            ]
        )
        return StorageEngine(context: context)
    }

    /// Opens the log `name` (1…255 bytes of [A-Za-z0-9._-]). A log is open at most once at a
    /// time: opening an open log throws `.busy`. With `create` a missing log is created empty;
    /// with `exclusive` (needs `create`) an existing one throws `.exists`.
    public func openLog(
        named name: String,
        create: Bool,
        exclusive: Bool = false,
        options: [(key: String, value: String)] = []
    ) async throws -> StorageLog {
        try self.enter("open log '\(name)'")
        defer { self.leave() }
        guard !name.utf8.contains(0) else {
            throw StorageError(code: .invalidArgument, message: "open log: the name contains a NUL byte")
        }
        let flags = (create ? UInt32(KSTORE_OPEN_CREATE) : 0) | (exclusive ? UInt32(KSTORE_OPEN_EXCLUSIVE) : 0)
        let context = self.context
        let handle = try await self.runInstanceCall {
            try context.openLogHandle(name: name, flags: flags, options: options)
        }
        let log = StorageLog(name: name, handle: handle, context: context)
        context.register(log)
        context.logger.debug(
            "log opened",
            metadata: ["storage.log": "\(name)", "storage.options": "\(options.map { "\($0.key)=\($0.value)" })"]
        )
        return log
    }

    /// The backend's instance `control` member (kstore.h's escape hatch for backend-specific
    /// operations, declared in the backend's own header): returns its status, KSTORE_ERR_UNSUPPORTED
    /// when the backend has none. Runs on the calling thread; `argument` must stay valid for the call.
    public func control(_ op: Int32, _ argument: UnsafeMutableRawPointer?) -> Int32 {
        guard let control = self.context.backend.table.control else { return KSTORE_ERR_UNSUPPORTED }
        return control(self.context.instance.pointer, op, argument)
    }

    /// Runs `work` on a storage thread of the blocking pool, where calls into a blocking backend
    /// (without KSTORE_CAP_NONBLOCKING) are made directly: one hand-off for a whole request rather
    /// than one per log. Work submitted this way runs in no particular order.
    public func runOnStorageThread(_ work: @escaping @Sendable () -> Void) {
        self.context.executor.submit(work)
    }

    /// Deletes a log that is not open (`.busy` if it is, `.notFound` if there is none).
    public func deleteLog(named name: String) async throws {
        try self.enter("delete log '\(name)'")
        defer { self.leave() }
        guard !name.utf8.contains(0) else {
            throw StorageError(code: .invalidArgument, message: "delete log: the name contains a NUL byte")
        }
        let context = self.context
        try await self.runInstanceCall {
            let status = name.withCString { name in
                // REQUIRED member, checked non-NULL when the table was validated.
                context.backend.table.members.delete_log!(context.instance.pointer, name)
            }
            guard status == KSTORE_OK else { throw context.error(status, "delete log '\(name)'") }
        }
    }

    /// The names of every log of the instance, open or not, sorted.
    public func listLogs() async throws -> [String] {
        try self.enter("list logs")
        defer { self.leave() }
        let context = self.context
        return try await self.runInstanceCall {
            var names: [String] = []
            let status = withUnsafeMutablePointer(to: &names) { names in
                // REQUIRED member, checked non-NULL when the table was validated. The callback
                // runs during the call, so the pointer to `names` does not outlive it.
                context.backend.table.members.list_logs!(
                    context.instance.pointer,
                    { context, name in
                        guard let context, let name else { return }
                        context.assumingMemoryBound(to: [String].self).pointee.append(String(cString: name))
                    },
                    names
                )
            }
            guard status == KSTORE_OK else { throw context.error(status, "list logs") }
            return names.sorted()
        }
    }

    /// Closes every log still open (each waits for its completions), then the instance, exactly
    /// once. Concurrent and later calls wait for the first to finish. Every later call on the
    /// engine throws.
    public func close() async {
        let first = self.state.withLock { state in
            guard state.phase == .open else { return false }
            state.phase = .closing
            return true
        }
        guard first else {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let closed = self.state.withLock { state in
                    if state.phase == .closed { return true }
                    state.closeWaiters.append(continuation)
                    return false
                }
                if closed { continuation.resume() }
            }
            return
        }
        // Let instance calls in progress finish (an openLog registers its log before leaving).
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let drained = self.state.withLock { state in
                if state.activeCallCount == 0 { return true }
                state.drainWaiter = continuation
                return false
            }
            if drained { continuation.resume() }
        }
        for log in self.context.openLogsSnapshot() {
            await log.close()
        }
        let context = self.context
        await self.runClose {
            // REQUIRED member, checked non-NULL when the table was validated.
            context.backend.table.members.close!(context.instance.pointer)
        }
        context.executor.shutdown()
        context.logger.info("storage backend closed")
        let waiters = self.state.withLock { state in
            state.phase = .closed
            defer { state.closeWaiters = [] }
            return state.closeWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func enter(_ operation: String) throws {
        try self.state.withLock { (state: inout State) throws(StorageError) in
            guard state.phase == .open else {
                throw StorageError(
                    code: .invalidArgument,
                    message: "\(operation): the storage engine (backend '\(self.context.backend.name)') is closed"
                )
            }
            state.activeCallCount += 1
        }
    }

    func leave() {
        let waiter = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.activeCallCount -= 1
            guard state.activeCallCount == 0, let waiter = state.drainWaiter else { return nil }
            state.drainWaiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Runs an instance call on the caller's thread (non-blocking backend) or on the pool.
    private func runInstanceCall<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        guard self.context.usesBlockingPool else { return try body() }
        return try await withCheckedThrowingContinuation { continuation in
            self.context.executor.submit { continuation.resume(with: Result { try body() }) }
        }
    }

    private func runClose(_ body: @escaping @Sendable () -> Void) async {
        guard self.context.usesBlockingPool else { return body() }
        await withCheckedContinuation { continuation in
            self.context.executor.submit {
                body()
                continuation.resume()
            }
        }
    }
}

/// The `kstore_instance` handle. kstore.h "Threading": instance members may be called concurrently
/// from any threads, and the host closes the instance exactly once after every log, so sharing the
/// pointer between threads is sound.
struct InstancePointer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<kstore_instance>
}

/// What the engine and its logs share: the backend table, the instance handle, the pool and the
/// registry of open logs.
package final class InstanceContext: Sendable {
    /// The largest last_error message the host reads.
    private static let lastErrorBytesMax = 64 * 1024

    let backend: StorageBackend
    let instance: InstancePointer
    let executor: BlockingExecutor
    let usesBlockingPool: Bool
    let logger: Logger
    let entryMaxTimestamp: (@Sendable (ByteBuffer) -> Int64?)?
    let observer: (any StorageObserver)?
    private let openLogs = LockedState<[ObjectIdentifier: StorageLog]>([:])
    /// Figure names the backend reported against kstore.h's rules, logged once each.
    private let rejectedStatisticNames = LockedState<Set<String>>([])

    init(
        backend: StorageBackend,
        instance: InstancePointer,
        executor: BlockingExecutor,
        usesBlockingPool: Bool,
        logger: Logger,
        entryMaxTimestamp: (@Sendable (ByteBuffer) -> Int64?)?,
        observer: (any StorageObserver)? = nil
    ) {
        self.backend = backend
        self.instance = instance
        self.executor = executor
        self.usesBlockingPool = usesBlockingPool
        self.logger = logger
        self.entryMaxTimestamp = entryMaxTimestamp
        self.observer = observer
    }

    /// Logs, once per name, figures the backend reported that the host drops.
    func noteRejectedStatistics(_ names: [String]) {
        let new = self.rejectedStatisticNames.withLock { seen in names.filter { seen.insert($0).inserted } }
        for name in new {
            self.logger.warning(
                "the backend reported a statistic the host ignores (kstore.h: names are [a-z][a-z0-9_]*, unique, kind counter or gauge)",
                metadata: ["storage.statistic": "\(name)"]
            )
        }
    }

    func register(_ log: StorageLog) {
        self.openLogs.withLock { $0[ObjectIdentifier(log)] = log }
    }

    func unregister(_ log: StorageLog) {
        _ = self.openLogs.withLock { $0.removeValue(forKey: ObjectIdentifier(log)) }
    }

    func openLogsSnapshot() -> [StorageLog] {
        self.openLogs.withLock { Array($0.values) }
    }

    /// The backend's most recent failure message (kstore.h last_error). Never call it from inside
    /// a completion callback: the ABI forbids calling the instance there.
    package func lastErrorText() -> String {
        // REQUIRED member, checked non-NULL when the table was validated.
        let lastError = self.backend.table.members.last_error!
        var capacity = 512
        while true {
            let (length, text) = withUnsafeTemporaryAllocation(of: CChar.self, capacity: capacity) {
                buffer -> (Int, String) in
                buffer.initialize(repeating: 0)
                let length = lastError(self.instance.pointer, buffer.baseAddress, buffer.count)
                buffer[buffer.count - 1] = 0
                let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
                return (length, String(decoding: bytes, as: UTF8.self))
            }
            if length < capacity || capacity >= Self.lastErrorBytesMax { return text }
            capacity = min(length + 1, Self.lastErrorBytesMax)
        }
    }

    /// A typed error for a failed call, with the backend's message.
    func error(_ status: Int32, _ operation: String) -> StorageError {
        let code = StorageError.Code(status: status)
        let text = self.lastErrorText()
        var message = "\(operation) failed with \(code.statusName) (backend '\(self.backend.name)')"
        if !text.isEmpty { message += ": \(text)" }
        return StorageError(code: code, message: message)
    }

    /// Opens a log and validates its methods table (kstore.h "Versioning rules").
    func openLogHandle(name: String, flags: UInt32, options: [(key: String, value: String)]) throws -> LogHandle {
        let pointer = try withCOptions(options, what: "open log '\(name)'") { options, optionCount in
            var log: UnsafeMutablePointer<kstore_log>? = nil
            let status = name.withCString { name in
                // REQUIRED member, checked non-NULL when the table was validated.
                self.backend.table.members.open_log!(self.instance.pointer, name, flags, options, optionCount, &log)
            }
            guard status == KSTORE_OK else { throw self.error(status, "open log '\(name)'") }
            guard let log else {
                throw StorageError(
                    code: .unknown(status),
                    message: "open log '\(name)': backend '\(self.backend.name)' reported success but returned no log"
                )
            }
            return log
        }
        do {
            return try LogHandle(validating: pointer, origin: "log '\(name)' of backend '\(self.backend.name)'")
        } catch {
            // Release the handle if the table at least lets us; a table without close leaks it.
            if let methods = pointer.pointee.methods,
                UnsafeRawPointer(methods).load(fromByteOffset: 4, as: UInt32.self) >= 16,
                let close = methods.pointee.close
            {
                close(pointer)
            }
            throw error
        }
    }
}

/// Runs `body` with options as a C array of NUL-terminated strings, valid only during the call.
func withCOptions<R>(
    _ options: [(key: String, value: String)],
    what: String,
    _ body: (UnsafePointer<kstore_option>?, UInt32) throws -> R
) throws -> R {
    for option in options where option.key.utf8.contains(0) || option.value.utf8.contains(0) {
        throw StorageError(code: .invalidArgument, message: "\(what): option '\(option.key)' contains a NUL byte")
    }
    var strings: [UnsafeMutablePointer<CChar>] = []
    defer { for string in strings { free(string) } }
    var array: [kstore_option] = []
    array.reserveCapacity(options.count)
    for option in options {
        guard let key = strdup(option.key) else {
            throw StorageError(code: .noMemory, message: "\(what): out of memory copying options")
        }
        strings.append(key)
        guard let value = strdup(option.value) else {
            throw StorageError(code: .noMemory, message: "\(what): out of memory copying options")
        }
        strings.append(value)
        array.append(kstore_option(key: key, value: value))
    }
    return try array.withUnsafeBufferPointer { array in
        try body(array.baseAddress, UInt32(array.count))
    }
}
