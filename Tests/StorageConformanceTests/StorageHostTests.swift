import CKStore
import NIOCore
import StorageBackends
import Synchronization
import Testing

@testable import StorageHost
@testable import StorageTestSupport

@Suite("StorageHost")
struct StorageHostBehaviourTests {
    static let statuses: [Int32] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, -1]

    /// Every status maps to its code and back, with kstore.h's retryable flag and data-loss flag.
    @Test(arguments: statuses)
    func statusesMapToCodes(status: Int32) {
        let code = StorageError.Code(status: status)
        let expected: StorageError.Code =
            switch status {
            case 1: .notFound
            case 2: .outOfRange
            case 3: .corrupt
            case 4: .noSpace
            case 5: .io
            case 6: .unsupported
            case 7: .busy
            case 8: .invalidArgument
            case 9: .exists
            case 10: .noMemory
            default: .unknown(status)
            }
        #expect(code == expected)
        #expect(code.status == status)
        let error = StorageError(code: code, message: "m")
        #expect(error.isRetriable == [4, 7, 10].contains(status))
        #expect(error.isRetriable == (kstore_status_is_retryable(status) != 0))
        #expect(error.isDataLoss == (status == 3))
        #expect(code.statusName == String(cString: kstore_status_name(status)))
        #expect(error.description.contains(code.statusName) && error.description.contains("m"))
    }

    /// An error from the backend names the operation and the log and carries last_error's text.
    @Test(arguments: ExecutionPath.allCases)
    func errorsCarryTheBackendMessage(path: ExecutionPath) async throws {
        try await withHarness("memory", path) { harness in
            let log = try await harness.engine.openLog(named: "errors", create: true)
            do {
                try await log.append(
                    firstOffset: 7,
                    lastOffset: 7,
                    maxTimestamp: -1,
                    parts: [TestEntry.make(firstOffset: 7, lastOffset: 7)]
                )
                Issue.record("a gap was accepted")
            } catch let error as StorageError {
                #expect(error.code == .invalidArgument)
                #expect(error.message.contains("log 'errors'"))
                #expect(error.message.contains("does not continue the log"))
                #expect(error.message.contains("KSTORE_ERR_INVALID_ARGUMENT"))
            }
            do {
                _ = try await log.read(from: 3, limit: .max, maxBytes: 10, minimumOneEntry: true)
                Issue.record("a read beyond the end succeeded")
            } catch let error as StorageError {
                #expect(error.code == .outOfRange && error.message.contains("outside [0, 0]"))
            }
            do {
                _ = try await harness.engine.openLog(named: "errors", create: true)
                Issue.record("a second open succeeded")
            } catch let error as StorageError {
                #expect(error.code == .busy && error.isRetriable && error.message.contains("already open"))
            }
            await log.close()
        }
    }

    /// submitAppend calls its completion exactly once per append; a memory append called directly
    /// completes before submitAppend returns.
    @Test(arguments: ExecutionPath.allCases)
    func submitAppendCompletesExactlyOnce(path: ExecutionPath) async throws {
        try await withHarness("memory", path) { harness in
            let log = try await harness.engine.openLog(named: "once", create: true)
            let calls = LockedState<[Int64: Int]>([:])
            var completedBeforeReturn = 0
            for offset in Int64(0)..<200 {
                log.submitAppend(
                    firstOffset: offset,
                    lastOffset: offset,
                    maxTimestamp: -1,
                    parts: [TestEntry.make(firstOffset: offset, lastOffset: offset)]
                ) { result in
                    #expect((try? result.get()) != nil)
                    calls.withLock { $0[offset, default: 0] += 1 }
                }
                if calls.withLock({ $0[offset] }) == 1 { completedBeforeReturn += 1 }
            }
            try await log.sync()
            #expect(calls.withLock { $0.count } == 200 && calls.withLock { $0.values.allSatisfy { $0 == 1 } })
            if path == .direct { #expect(completedBeforeReturn == 200) }
            await log.close()
        }
    }

    /// With concurrent submitters — one per log, and several sharing a log under the caller's lock —
    /// every log's completions arrive in submission order and all succeed.
    @Test(.timeLimit(.minutes(1)), arguments: ExecutionPath.allCases)
    func completionsKeepSubmissionOrderPerLog(path: ExecutionPath) async throws {
        try await withHarness("memory", path) { harness in
            let appendCountPerLog = 500
            var logs: [StorageLog] = []
            for index in 0..<4 { logs.append(try await harness.engine.openLog(named: "order-\(index)", create: true)) }
            let shared = try await harness.engine.openLog(named: "shared", create: true)
            let sharedState = SharedLogState()
            try await withThrowingTaskGroup(of: [Int64].self) { group in
                for log in logs {
                    group.addTask {
                        let completed = LockedState<[Int64]>([])
                        for offset in Int64(0)..<Int64(appendCountPerLog) {
                            log.submitAppend(
                                firstOffset: offset,
                                lastOffset: offset,
                                maxTimestamp: offset,
                                parts: StorageLog.split(TestEntry.make(firstOffset: offset, lastOffset: offset))
                            ) { result in
                                completed.withLock { $0.append((try? result.get()) != nil ? offset : -1) }
                            }
                        }
                        try await log.sync()
                        return completed.withLock { $0 }
                    }
                }
                for _ in 0..<4 {
                    group.addTask {
                        for _ in 0..<appendCountPerLog / 4 {
                            // The broker's pattern: assign the offset and submit under one lock.
                            sharedState.nextOffset.withLock { offset in
                                let assigned = offset
                                shared.submitAppend(
                                    firstOffset: assigned,
                                    lastOffset: assigned,
                                    maxTimestamp: -1,
                                    parts: [TestEntry.make(firstOffset: assigned, lastOffset: assigned)]
                                ) { result in
                                    if (try? result.get()) == nil { sharedState.failures.add(1, ordering: .relaxed) }
                                    sharedState.completed.withLock { $0.append(assigned) }
                                }
                                offset += 1
                            }
                            await Task.yield()
                        }
                        return []
                    }
                }
                for try await completed in group where !completed.isEmpty {
                    #expect(completed == (0..<Int64(appendCountPerLog)).map { $0 })
                }
            }
            try await shared.sync()
            #expect(sharedState.failures.load(ordering: .relaxed) == 0)
            #expect(sharedState.completed.withLock { $0 } == (0..<Int64(appendCountPerLog)).map { $0 })
            #expect(try await shared.readAll(from: 0).count == appendCountPerLog)
            for log in logs { await log.close() }
            await shared.close()
        }
    }

    /// close waits until every submitted append has been completed.
    @Test(arguments: ExecutionPath.allCases)
    func closeWaitsForInFlightCompletions(path: ExecutionPath) async throws {
        try await withHarness("memory", path) { harness in
            let log = try await harness.engine.openLog(named: "drain", create: true)
            let delivered = Atomic<Int>(0)
            for offset in Int64(0)..<300 {
                log.submitAppend(
                    firstOffset: offset,
                    lastOffset: offset,
                    maxTimestamp: -1,
                    parts: [TestEntry.make(firstOffset: offset, lastOffset: offset, byteCount: 4_096)]
                ) { result in
                    if (try? result.get()) != nil { delivered.add(1, ordering: .relaxed) }
                }
            }
            log.submitSync { _ in delivered.add(1, ordering: .relaxed) }
            await log.close()
            #expect(delivered.load(ordering: .relaxed) == 301)
            let reopened = try await harness.engine.openLog(named: "drain", create: false)
            #expect(try reopened.state().endOffset == 300)
            await reopened.close()
        }
    }

    /// After close every call on the log fails with an error (appends through their completion)
    /// and closing again returns at once.
    @Test(arguments: ExecutionPath.allCases)
    func callsAfterCloseFail(path: ExecutionPath) async throws {
        try await withHarness("memory", path) { harness in
            let log = try await harness.engine.openLog(named: "closed", create: true)
            await log.close()
            await log.close()
            #expect(throws: StorageError.self) { try log.state() }
            #expect(
                await storageErrorCode {
                    _ = try await log.read(from: 0, limit: .max, maxBytes: 10, minimumOneEntry: true)
                } == .invalidArgument
            )
            #expect(
                await storageErrorCode {
                    try await log.append(
                        firstOffset: 0,
                        lastOffset: 0,
                        maxTimestamp: -1,
                        parts: [TestEntry.make(firstOffset: 0, lastOffset: 0)]
                    )
                } == .invalidArgument
            )
            #expect(await storageErrorCode { try await log.sync() } == .invalidArgument)
            #expect(await storageErrorCode { try await log.truncate(to: 0) } == .invalidArgument)
            #expect(await storageErrorCode { try await log.deleteBefore(0) } == .invalidArgument)
            #expect(await storageErrorCode { _ = try await log.findOffset(atOrAfterTimestamp: 0) } == .invalidArgument)
            #expect(
                await storageErrorCode { _ = try await log.enforceRetention(retainBytes: 0, retainAfterTimestamp: -1) }
                    == .invalidArgument
            )
        }
    }

    /// Closing the engine closes its open logs and then refuses every call; closing twice is fine.
    @Test(arguments: ExecutionPath.allCases)
    func engineCloseClosesLogsAndRefusesLaterCalls(path: ExecutionPath) async throws {
        let harness = try Harness.open("memory", path)
        let logs = [
            try await harness.engine.openLog(named: "x", create: true),
            try await harness.engine.openLog(named: "y", create: true),
        ]
        try await logs[0].append(
            firstOffset: 0,
            lastOffset: 0,
            maxTimestamp: -1,
            parts: [TestEntry.make(firstOffset: 0, lastOffset: 0)]
        )
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<3 { group.addTask { await harness.engine.close() } }
        }
        for log in logs { #expect(throws: StorageError.self) { try log.state() } }
        #expect(
            await storageErrorCode { _ = try await harness.engine.openLog(named: "x", create: true) }
                == .invalidArgument
        )
        #expect(await storageErrorCode { _ = try await harness.engine.listLogs() } == .invalidArgument)
        #expect(await storageErrorCode { try await harness.engine.deleteLog(named: "x") } == .invalidArgument)
        await harness.close()
    }

    /// Engine options are checked before the backend sees them.
    @Test func engineOpenRejectsBadHostArguments() async throws {
        let backend = try StorageBackend.builtin(named: "memory")
        #expect(throws: StorageError.self) {
            try StorageEngine.open(backend: backend, options: [], logger: quietLogger, blockingThreadCount: 0)
        }
        #expect(throws: StorageError.self) {
            try StorageEngine.open(backend: backend, options: [(key: "a\u{0}", value: "b")], logger: quietLogger)
        }
        let engine = try StorageEngine.open(
            backend: backend,
            options: [(key: "path", value: "/ignored")],
            logger: quietLogger
        )
        #expect(!engine.usesBlockingPool && engine.backend.name == "memory")
        let forced = try StorageEngine.open(
            backend: backend,
            options: [],
            logger: quietLogger,
            configuration: .init(forceBlockingExecution: true)
        )
        #expect(forced.usesBlockingPool)
        await engine.close()
        await forced.close()
    }

    /// A small read allocates about what it returns, not maxBytes; a large entry grows the buffer.
    @Test(arguments: ExecutionPath.allCases)
    func readsAllocateOnlyWhatTheyReturn(path: ExecutionPath) async throws {
        try await withHarness("memory", path) { harness in
            let log = try await harness.engine.openLog(named: "alloc", create: true)
            try await log.append(
                firstOffset: 0,
                lastOffset: 0,
                maxTimestamp: -1,
                parts: [TestEntry.make(firstOffset: 0, lastOffset: 0, byteCount: 100)]
            )
            let small = try await log.read(from: 0, limit: .max, maxBytes: 100 << 20, minimumOneEntry: true)
            #expect(small.bytes.readableBytes == 100)
            #expect(small.bytes.capacity <= StorageLog.readInitialBytes)
            try await log.append(
                firstOffset: 1,
                lastOffset: 1,
                maxTimestamp: -1,
                parts: [TestEntry.make(firstOffset: 1, lastOffset: 1, byteCount: 1 << 20)]
            )
            let large = try await log.read(from: 1, limit: .max, maxBytes: 50 << 20, minimumOneEntry: true)
            #expect(try TestEntry.parse(large.bytes).map(\.byteCount) == [1 << 20])
            #expect(large.bytes.capacity < 4 << 20)
            await log.close()
        }
    }
}

/// One log shared by several submitters, as the broker shares a partition.
final class SharedLogState: Sendable {
    let nextOffset = LockedState<Int64>(0)
    let completed = LockedState<[Int64]>([])
    let failures = Atomic<Int>(0)
}

// MARK: - Host fallbacks and close accounting, through a shim over the memory backend

/// Memory backend tables whose logs carry a replaced methods table: one without the optional
/// members (to exercise the host fallbacks) and one missing a required member. The shim's log
/// close counts calls. kstore.h: a shim provides its own methods table, as sqlite3_file does.
enum MemoryShim {
    /// Immutable after creation and static for the process: safe to share.
    struct Tables: @unchecked Sendable {
        let memoryMethods: UnsafePointer<kstore_log_methods>
        let memoryOpenLog:
            @convention(c) (
                UnsafeMutablePointer<kstore_instance>?, UnsafePointer<CChar>?, UInt32, UnsafePointer<kstore_option>?,
                UInt32, UnsafeMutablePointer<UnsafeMutablePointer<kstore_log>?>?
            ) -> Int32
        let withoutOptionalMembers: UnsafeMutablePointer<kstore_log_methods>
        let missingRead: UnsafeMutablePointer<kstore_log_methods>
        let fallbackBackend: UnsafeMutablePointer<kstore_backend>
        let badLogBackend: UnsafeMutablePointer<kstore_backend>
    }

    static let closeCount = Atomic<Int>(0)

    static let tables: Tables = {
        let memory = try! StorageBackend.builtin(named: "memory")  // The built-in table is checked by other tests.
        let instance = try! CInstance(memory)
        let log = try! instance.openLog("shim-probe", flags: UInt32(KSTORE_OPEN_CREATE))
        let memoryMethods = log.pointee.methods!
        memoryMethods.pointee.close(log)
        instance.close()

        let withoutOptionalMembers = UnsafeMutablePointer<kstore_log_methods>.allocate(capacity: 1)
        withoutOptionalMembers.initialize(to: memoryMethods.pointee)
        withoutOptionalMembers.pointee.truncate_to = nil
        withoutOptionalMembers.pointee.delete_before = nil
        withoutOptionalMembers.pointee.enforce_retention = nil
        withoutOptionalMembers.pointee.find_offset_by_time = nil
        withoutOptionalMembers.pointee.control = nil
        withoutOptionalMembers.pointee.close = { log in
            MemoryShim.closeCount.add(1, ordering: .relaxed)
            MemoryShim.tables.memoryMethods.pointee.close(log)
        }
        let missingRead = UnsafeMutablePointer<kstore_log_methods>.allocate(capacity: 1)
        missingRead.initialize(to: withoutOptionalMembers.pointee)
        missingRead.pointee.read = nil

        let fallbackBackend = UnsafeMutablePointer<kstore_backend>.allocate(capacity: 1)
        fallbackBackend.initialize(to: memory.table.members)
        fallbackBackend.pointee.open_log = { instance, name, flags, options, count, log in
            let status = MemoryShim.tables.memoryOpenLog(instance, name, flags, options, count, log)
            if status == KSTORE_OK, let handle = log?.pointee {
                handle.pointee.methods = UnsafePointer(MemoryShim.tables.withoutOptionalMembers)
            }
            return status
        }
        let badLogBackend = UnsafeMutablePointer<kstore_backend>.allocate(capacity: 1)
        badLogBackend.initialize(to: memory.table.members)
        badLogBackend.pointee.open_log = { instance, name, flags, options, count, log in
            let status = MemoryShim.tables.memoryOpenLog(instance, name, flags, options, count, log)
            if status == KSTORE_OK, let handle = log?.pointee {
                handle.pointee.methods = UnsafePointer(MemoryShim.tables.missingRead)
            }
            return status
        }
        return Tables(
            memoryMethods: memoryMethods,
            memoryOpenLog: memory.table.members.open_log,
            withoutOptionalMembers: withoutOptionalMembers,
            missingRead: missingRead,
            fallbackBackend: fallbackBackend,
            badLogBackend: badLogBackend
        )
    }()

    static func engine(
        _ table: UnsafeMutablePointer<kstore_backend>,
        _ path: ExecutionPath,
        entryMaxTimestamp: (@Sendable (ByteBuffer) -> Int64?)? = TestEntry.maxTimestamp
    ) throws -> StorageEngine {
        try StorageEngine.open(
            backend: StorageBackend(validating: table, origin: "memory shim"),
            options: [],
            logger: quietLogger,
            configuration: StorageHostConfiguration(
                forceBlockingExecution: path == .forcedBlocking,
                entryMaxTimestamp: entryMaxTimestamp
            )
        )
    }
}

/// Serialized: the tests count the shim's log closes.
@Suite("StorageHost fallbacks and close accounting", .serialized)
struct StorageHostShimTests {
    /// Without truncate_to the host says it cannot truncate.
    @Test(arguments: ExecutionPath.allCases)
    func missingTruncateIsUnsupported(path: ExecutionPath) async throws {
        let engine = try MemoryShim.engine(MemoryShim.tables.fallbackBackend, path)
        let log = try await engine.openLog(named: "t", create: true)
        #expect(!log.supportsTruncation)
        #expect(await storageErrorCode { try await log.truncate(to: 0) } == .unsupported)
        await engine.close()
    }

    /// Without delete_before the host keeps the start offset: state reports it and reads below
    /// it are out of range.
    @Test(arguments: ExecutionPath.allCases)
    func missingDeleteBeforeKeepsTheStartInTheHost(path: ExecutionPath) async throws {
        let engine = try MemoryShim.engine(MemoryShim.tables.fallbackBackend, path)
        let log = try await engine.openLog(named: "d", create: true)
        try await log.append(ConformanceTests.readPlan())
        try await log.deleteBefore(4)
        #expect(try log.state().startOffset == 4)
        #expect(
            await storageErrorCode {
                _ = try await log.read(from: 3, limit: .max, maxBytes: 1_000, minimumOneEntry: true)
            } == .outOfRange
        )
        #expect(try await log.readAll(from: 4).first?.firstOffset == 3)
        #expect(await storageErrorCode { try await log.deleteBefore(16) } == .outOfRange)
        try await log.deleteBefore(2)
        #expect(try log.state().startOffset == 4)
        // Retention is not enforced without the member; the start is reported unchanged.
        #expect(try await log.enforceRetention(retainBytes: 0, retainAfterTimestamp: -1) == 4)
        #expect(try log.state().byteCount == ConformanceTests.readPlan().byteCount)
        await engine.close()
    }

    /// Without find_offset_by_time the host scans entries with the configured timestamp reader
    /// and finds what the backend would; without a reader it says it cannot.
    @Test(arguments: ExecutionPath.allCases)
    func missingFindOffsetFallsBackToAScan(path: ExecutionPath) async throws {
        let engine = try MemoryShim.engine(MemoryShim.tables.fallbackBackend, path)
        let log = try await engine.openLog(named: "f", create: true)
        var plan = LogPlan()
        for timestamp: Int64 in [100, 50, 300, -1, 200, 400, 150] { plan.add(offsetCount: 2, maxTimestamp: timestamp) }
        try await log.append(plan)
        for query: Int64 in [-1, 0, 60, 100, 250, 300, 399, 400, 401] {
            let expected = plan.entries.first { $0.maxTimestamp >= query }?.firstOffset
            #expect(try await log.findOffset(atOrAfterTimestamp: query) == expected, "\(query)")
        }
        try await log.deleteBefore(5)  // inside the entry 4-5 (300)
        #expect(try await log.findOffset(atOrAfterTimestamp: 250) == 5)
        #expect(try await log.findOffset(atOrAfterTimestamp: 301) == 10)
        await log.close()
        await engine.close()

        let blind = try MemoryShim.engine(MemoryShim.tables.fallbackBackend, path, entryMaxTimestamp: nil)
        let again = try await blind.openLog(named: "f", create: true)
        try await again.append(plan)
        #expect(await storageErrorCode { _ = try await again.findOffset(atOrAfterTimestamp: 0) } == .unsupported)
        await blind.close()
    }

    /// A log whose methods table lacks a required member is refused and released.
    @Test(arguments: ExecutionPath.allCases)
    func logsWithABadMethodsTableAreRefusedAndReleased(path: ExecutionPath) async throws {
        let engine = try MemoryShim.engine(MemoryShim.tables.badLogBackend, path)
        let before = MemoryShim.closeCount.load(ordering: .relaxed)
        do {
            _ = try await engine.openLog(named: "bad", create: true)
            Issue.record("a log without read was accepted")
        } catch let error as StorageError {
            #expect(error.code == .unsupported && error.message.contains("read are NULL"))
        }
        #expect(MemoryShim.closeCount.load(ordering: .relaxed) == before + 1)
        try await engine.deleteLog(named: "bad")  // not busy: the handle was closed
        await engine.close()
    }

    /// The backend's log close runs exactly once, however many callers close the log, and engine
    /// close closes each log still open exactly once.
    @Test(arguments: ExecutionPath.allCases)
    func backendCloseRunsExactlyOnce(path: ExecutionPath) async throws {
        let engine = try MemoryShim.engine(MemoryShim.tables.fallbackBackend, path)
        let before = MemoryShim.closeCount.load(ordering: .relaxed)
        let log = try await engine.openLog(named: "c", create: true)
        for offset in Int64(0)..<50 {
            log.submitAppend(
                firstOffset: offset,
                lastOffset: offset,
                maxTimestamp: -1,
                parts: [TestEntry.make(firstOffset: offset, lastOffset: offset)]
            ) { _ in }
        }
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<4 { group.addTask { await log.close() } }
        }
        #expect(MemoryShim.closeCount.load(ordering: .relaxed) == before + 1)
        let open = [
            try await engine.openLog(named: "c", create: false),
            try await engine.openLog(named: "d", create: true),
            try await engine.openLog(named: "e", create: true),
        ]
        await open[2].close()
        await engine.close()
        await engine.close()
        #expect(MemoryShim.closeCount.load(ordering: .relaxed) == before + 4)
        for log in open { #expect(throws: StorageError.self) { try log.state() } }
    }
}
