import CKStore
import Foundation
import KStoreFaulty
import KStoreFile
import KStoreKit
import NIOCore
import Testing

@testable import StorageHost
@testable import StorageTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The file backend's descriptor cache (file.open.files.max, file_descriptor_cache.c): many logs under
/// a small limit, the durability of writes whose descriptor was closed to make room, and the answer
/// to descriptor exhaustion.
@Suite("File backend descriptor cache")
struct FileDescriptorCacheTests {
    static let limit = 16
    /// The instance's own descriptors beside the cache: the data directory, X/.lock, X/logs, X/deleted.
    static let instanceDescriptors = 4
    static let threads = 2
    /// What one call may hold above the limit: four leases (a torn-tail cut holds a segment's three
    /// files and reads a later segment's .log) and one uncached open (a directory listing, meta).
    static let perCall = 5
    static let smallSegments = [(key: "segment.bytes", value: "4096"), (key: "index.interval.bytes", value: "256")]

    static func open(_ scratch: ScratchDirectory, limit: Int = Self.limit) throws -> StorageEngine {
        try openEngine(
            try fileBackend(),
            path: scratch.path,
            threads: Self.threads,
            options: [(key: "file.open.files.max", value: String(limit))]
        )
    }

    /// What the test knows about one log.
    struct Model {
        var plan = LogPlan()
        var startOffset: Int64 = 0
        var live: [TestEntry.Parsed] { self.plan.entries.filter { $0.lastOffset >= self.startOffset } }

        mutating func next(_ index: Int) -> TestEntry.Parsed {
            self.plan.add(
                offsetCount: Int64(index % 3 + 1),
                maxTimestamp: Int64(1_000 + self.plan.entries.count * 10),
                byteCount: 200 + (index * 37) % 200
            )
            return self.plan.entries.last!
        }
    }

    /// Tracks the most descriptors seen open below a directory while work runs.
    final class Sampler: @unchecked Sendable {  // `maximum` is guarded by `lock`.
        private let lock = NSLock()
        private var maximum = 0
        let directory: String

        init(_ directory: String) { self.directory = directory }

        func sample() -> Int {
            let count = descriptorsBelow(self.directory)
            self.lock.withLock { self.maximum = max(self.maximum, count) }
            return count
        }

        var peak: Int { self.lock.withLock { self.maximum } }
    }

    /// Runs `body` for every index in `0..<count`, 16 at a time, while a sampler counts descriptors.
    static func forEachLog(
        _ count: Int,
        sampler: Sampler,
        _ body: @escaping @Sendable (Int) async throws -> Void
    )
        async throws
    {
        let done = LockedState(false)
        let watcher = Task.detached {
            while !done.withLock({ $0 }) {
                _ = sampler.sample()
                try? await Task.sleep(for: .milliseconds(10))  // Sampling, not timing: any pause will do.
            }
        }
        defer { done.withLock { $0 = true } }
        for chunk in stride(from: 0, to: count, by: 16) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in chunk..<min(chunk + 16, count) { group.addTask { try await body(index) } }
                try await group.waitForAll()
            }
        }
        done.withLock { $0 = true }
        await watcher.value
    }

    /// Reads every log back and checks it against its model, and a lookup by time in each.
    static func verify(_ logs: [StorageLog], _ models: [Model], sampler: Sampler) async throws {
        try await forEachLog(logs.count, sampler: sampler) { index in
            let model = models[index]
            let log = logs[index]
            let state = try log.state()
            #expect(state.startOffset == model.startOffset, "log \(index)")
            #expect(state.endOffset == model.plan.endOffset, "log \(index)")
            #expect(try await log.readAll(from: model.startOffset) == model.live, "log \(index)")
            if let probe = model.live.dropFirst(model.live.count / 2).first {
                let found = try await log.findOffset(atOrAfterTimestamp: probe.maxTimestamp)
                #expect(found == max(probe.firstOffset, model.startOffset), "log \(index)")
            }
        }
    }

    /// 500 logs work under a limit of 16 descriptors: appends that roll segments, syncs, reads, lookups
    /// by time, retention, delete_before and truncation on every log, then a clean reopen and a
    /// recovery after a crash of all of them; between calls the instance holds at most the limit (plus
    /// its four own descriptors), during them at most a few more per call in progress.
    @Test(.timeLimit(.minutes(5)))
    func fiveHundredLogsWorkUnderALimitOfSixteen() async throws {
        let logCount = 500
        let scratch = try ScratchDirectory("fdcache-many")
        defer { scratch.remove() }
        let sampler = Sampler(scratch.path)
        let betweenCalls = Self.limit + Self.instanceDescriptors
        let duringCalls = betweenCalls + Self.threads * Self.perCall
        var engine = try Self.open(scratch)
        let opened = LockedState<[Int: StorageLog]>([:])
        let creating = engine
        try await Self.forEachLog(logCount, sampler: sampler) { index in
            let log = try await creating.openLog(named: "p-\(index)", create: true, options: Self.smallSegments)
            opened.withLock { $0[index] = log }
        }
        var logs = (0..<logCount).map { index in opened.withLock { $0[index]! } }
        let created = logs
        #expect(sampler.sample() <= betweenCalls)
        let models = LockedState([Model](repeating: Model(), count: logCount))

        // Three rounds of six appends and a sync per log: every log rolls at least once, and every
        // log's descriptors are closed and reopened between its rounds.
        for round in 0..<3 {
            try await Self.forEachLog(logCount, sampler: sampler) { index in
                for step in 0..<6 {
                    let entry = models.withLock { $0[index].next(round * 6 + step) }
                    try await created[index].appendEntry(entry)
                }
                try await created[index].sync()
            }
            #expect(sampler.sample() <= betweenCalls, "after round \(round)")
            let info = try #require(engine.descriptorInfo())
            #expect(info.open_count <= UInt64(Self.limit) && info.evictions > 0)
        }
        #expect(segmentFiles(scratch.path, log: "p-0").count >= 2)
        try await Self.verify(logs, models.withLock { $0 }, sampler: sampler)

        // Retention on a third of the logs, delete_before inside an entry on a third, truncation on the rest.
        try await Self.forEachLog(logCount, sampler: sampler) { index in
            let log = created[index]
            let model = models.withLock { $0[index] }
            switch index % 3 {
            case 0:
                let start = try await log.enforceRetention(
                    retainBytes: Int64(model.plan.byteCount / 2),
                    retainAfterTimestamp: -1
                )
                #expect(start > 0, "log \(index)")
                models.withLock { $0[index].startOffset = start }
            case 1:
                // Entry 4 covers two offsets: the new start lies inside it.
                let offset = model.plan.entries[4].firstOffset + 1
                try await log.deleteBefore(offset)
                models.withLock { $0[index].startOffset = offset }
            default:
                try await log.truncate(to: model.plan.entries[11].firstOffset)
                models.withLock { $0[index].plan.entries.removeLast(model.plan.entries.count - 11) }
            }
            let entry = models.withLock { $0[index].next(100) }
            try await log.appendEntry(entry)
            try await log.sync()
        }
        try await Self.verify(logs, models.withLock { $0 }, sampler: sampler)
        #expect(sampler.sample() <= betweenCalls)
        let info = try #require(engine.descriptorInfo())
        #expect(info.peak_open_count <= UInt64(Self.limit + Self.threads * Self.perCall))

        // A clean reopen of every log, then a recovery after a crash (the clean-shutdown markers
        // removed, so every frame is verified and every index rebuilt), both under the limit.
        for clean in [true, false] {
            let closing = logs
            try await Self.forEachLog(logCount, sampler: sampler) { index in await closing[index].close() }
            await engine.close()
            #expect(descriptorsBelow(scratch.path) == 0)
            if !clean {
                for index in 0..<logCount {
                    try FileManager.default.removeItem(atPath: scratch.file("logs/p-\(index)/clean-shutdown"))
                }
            }
            engine = try Self.open(scratch)
            opened.withLock { $0 = [:] }
            let reopening = engine
            try await Self.forEachLog(logCount, sampler: sampler) { index in
                let log = try await reopening.openLog(named: "p-\(index)", create: false, options: Self.smallSegments)
                #expect(log.recoveryInfo()?.clean == (clean ? 1 : 0), "log \(index)")
                opened.withLock { $0[index] = log }
            }
            logs = (0..<logCount).map { index in opened.withLock { $0[index]! } }
            #expect(sampler.sample() <= betweenCalls)
            try await Self.verify(logs, models.withLock { $0 }, sampler: sampler)
        }
        print("descriptor cache: 500 logs under a limit of \(Self.limit): at most \(sampler.peak) descriptors open")
        #expect(sampler.peak <= duringCalls)
        let closing = logs
        try await Self.forEachLog(logCount, sampler: sampler) { index in await closing[index].close() }
        await engine.close()
    }

    // MARK: Durability across evictions

    /// The system calls of an instance, with the path each descriptor was open on.
    final class Trace: @unchecked Sendable {  // `calls` is guarded by `lock`.
        struct Call: Equatable {
            var operation: Int32
            var path: String
        }

        private let lock = NSLock()
        private var calls: [Call] = []

        func record(_ operation: Int32, fd: Int32) {
            var target = [CChar](repeating: 0, count: 4_096)
            let length = readlink("/proc/self/fd/\(fd)", &target, target.count - 1)
            guard length > 0 else { return }
            let path = String(decoding: target[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            self.lock.withLock { self.calls.append(Call(operation: operation, path: path)) }
        }

        /// The .log files below `directory` whose last write or truncation no later fdatasync covers.
        func unsyncedSegments(below directory: String) -> [String] {
            let calls = self.lock.withLock { self.calls }
            var lastWrite: [String: Int] = [:]
            var lastSync: [String: Int] = [:]
            for (index, call) in calls.enumerated()
            where call.path.hasPrefix(directory + "/") && call.path.hasSuffix(".log") {
                if call.operation == KSTORE_KIT_IO_SYNC {
                    lastSync[call.path] = index
                } else {
                    lastWrite[call.path] = index
                }
            }
            return lastWrite.filter { path, write in (lastSync[path] ?? -1) < write }.map(\.key).sorted()
        }
    }

    /// Installs a kit fault hook (kstore_kit_io.h) that fails nothing and records every write,
    /// truncation and sync with its file. Returns the hook, to free after the engine is closed.
    static func installTrace(
        _ trace: Trace,
        on engine: StorageEngine
    ) throws -> UnsafeMutablePointer<kstore_kit_fault_hook> {
        let decide:
            @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<kstore_kit_io_call>?, UnsafeMutablePointer<UInt64>?)
                -> Int32 = {
                    context,
                    call,
                    _ in
                    let trace = Unmanaged<Trace>.fromOpaque(context!).takeUnretainedValue()
                    let operation = call!.pointee.operation
                    if operation == KSTORE_KIT_IO_WRITE || operation == KSTORE_KIT_IO_TRUNCATE
                        || operation == KSTORE_KIT_IO_SYNC
                    {
                        trace.record(operation, fd: call!.pointee.fd)
                    }
                    return 0
                }
        let hook = UnsafeMutablePointer<kstore_kit_fault_hook>.allocate(capacity: 1)
        hook.initialize(
            to: kstore_kit_fault_hook(
                struct_size: UInt32(MemoryLayout<kstore_kit_fault_hook>.size),
                reserved: 0,
                decide: decide,
                context: Unmanaged.passUnretained(trace).toOpaque()
            )
        )
        try #require(engine.control(KSTORE_KIT_CONTROL_SET_FAULT_HOOK, hook) == KSTORE_OK)
        return hook
    }

    /// A completed sync covers every write made to the log's segments before it, even when the
    /// descriptor a write went through was closed to make room in between: at every completed sync,
    /// each written .log of the log has an fdatasync after its last write (fsync is per inode, so the
    /// descriptor it went through does not matter). Seeded: appends, syncs and reads over 24 logs
    /// under the smallest limit, so descriptors with unsynced writes are closed all the time.
    @Test(arguments: [1, 2, 3] as [UInt64])
    func aSyncCoversWritesWhoseDescriptorWasClosedToMakeRoom(seed: UInt64) async throws {
        print("descriptor cache durability: seed \(seed)")
        var random = SeededGenerator(seed: seed)
        let scratch = try ScratchDirectory("fdcache-durable")
        defer { scratch.remove() }
        let root = URL(fileURLWithPath: scratch.path).resolvingSymlinksInPath().path
        let engine = try Self.open(scratch, limit: 4)
        let trace = Trace()
        let hook = try Self.installTrace(trace, on: engine)
        defer { hook.deallocate() }
        let options = [(key: "segment.bytes", value: "2048"), (key: "index.interval.bytes", value: "256")]
        var logs: [StorageLog] = []
        var models: [Model] = []
        for index in 0..<24 {
            logs.append(try await engine.openLog(named: "d-\(index)", create: true, options: options))
            models.append(Model())
        }
        for step in 0..<1_500 {
            let index = Int.random(in: 0..<logs.count, using: &random)
            switch Int.random(in: 0..<100, using: &random) {
            case 0..<60:
                try await logs[index].appendEntry(models[index].next(step))
            case 60..<85:
                try await logs[index].sync()
                let unsynced = trace.unsyncedSegments(below: root + "/logs/d-\(index)")
                #expect(unsynced.isEmpty, "seed \(seed), step \(step): sync of d-\(index) left \(unsynced) unsynced")
            default:
                #expect(
                    try await logs[index].readAll(from: 0) == models[index].plan.entries,
                    "seed \(seed), d-\(index)"
                )
            }
        }
        for (index, log) in logs.enumerated() {
            try await log.sync()
            #expect(trace.unsyncedSegments(below: root + "/logs/d-\(index)").isEmpty, "seed \(seed), d-\(index)")
        }
        let info = try #require(engine.descriptorInfo())
        print("descriptor cache durability: \(info.evictions) evictions, \(info.eviction_syncs) needed an fdatasync")
        #expect(info.eviction_syncs > 0)
        for log in logs { await log.close() }
        await engine.close()
    }

    /// Opens `count` logs on the faulty shim over the file backend with a limit of 4, each holding one
    /// synced entry, so that only what the test writes later is unsynced.
    static func faultyLogs(
        _ scratch: ScratchDirectory,
        count: Int
    ) async throws -> (StorageEngine, [StorageLog], [Model]) {
        let engine = try openEngine(
            try faultyFileBackend(),
            path: scratch.path,
            options: [(key: "file.open.files.max", value: "4")]
        )
        var logs: [StorageLog] = []
        var models: [Model] = []
        for index in 0..<count {
            let log = try await engine.openLog(named: "f-\(index)", create: true)
            var model = Model()
            try await log.appendEntry(model.next(0))
            try await log.sync()
            logs.append(log)
            models.append(model)
        }
        return (engine, logs, models)
    }

    /// When the fdatasync that precedes closing an idle descriptor with unsynced writes fails, that
    /// log is failed — its next sync answers IO instead of claiming writes durable whose flush
    /// failed — and the other logs keep working.
    @Test func aFailedFdatasyncBeforeAnEvictionFailsThatLog() async throws {
        let scratch = try ScratchDirectory("fdcache-evict-fail")
        defer { scratch.remove() }
        let opened = try await Self.faultyLogs(scratch, count: 5)
        let engine = opened.0
        var logs = opened.1
        var models = opened.2
        // Four logs with unsynced appends fill the cache with descriptors that need an fdatasync
        // before they may close; log 0's is the least recently used.
        for index in 0..<4 { try await logs[index].appendEntry(models[index].next(1)) }
        #expect(engine.failIO(KSTORE_FAULTY_IO_SYNC, error: EIO) == KSTORE_OK)
        // Log 4's append needs room: log 0's descriptor is fdatasync'ed, which fails, and closed.
        try await logs[4].appendEntry(models[4].next(1))
        #expect(engine.lastError.contains("before closing its idle descriptor"), "\(engine.lastError)")
        #expect(await storageErrorCode { try await logs[0].sync() } == .io)
        #expect(await storageErrorCode { try await logs[0].appendEntry(models[0].next(2)) } == .io)
        for index in 1..<5 {
            try await logs[index].sync()
            #expect(try await logs[index].readAll(from: 0) == models[index].plan.entries)
        }
        // Reopened, log 0 runs recovery; what it holds is a prefix of what was appended.
        await logs[0].close()
        logs[0] = try await engine.openLog(named: "f-0", create: false)
        let recovered = try await logs[0].readAll(from: 0)
        #expect(recovered == Array(models[0].plan.entries.prefix(recovered.count)) && recovered.count >= 1)
        for log in logs { await log.close() }
        await engine.close()
    }

    /// EMFILE from an open closes the idle descriptors and retries once: one refusal is absorbed;
    /// two make a read answer BUSY (retryable) with a message naming both limits, and an append is
    /// refused BUSY without a change, which the host retries.
    @Test func descriptorExhaustionShrinksTheCacheAndRetriesOnce() async throws {
        let scratch = try ScratchDirectory("fdcache-emfile")
        defer { scratch.remove() }
        let (engine, logs, models) = try await Self.faultyLogs(scratch, count: 6)
        // Log 0's descriptors were closed to make room for the others': its next call opens its .log.
        #expect(engine.failIO(KSTORE_FAULTY_IO_OPEN, error: EMFILE) == KSTORE_OK)
        #expect(try await logs[0].readAll(from: 0) == models[0].plan.entries)
        for index in 1..<logs.count { _ = try await logs[index].readAll(from: 0) }
        #expect(engine.failIO(KSTORE_FAULTY_IO_OPEN, error: EMFILE, fail: 2) == KSTORE_OK)
        #expect(await storageErrorCode { _ = try await logs[0].readAll(from: 0) } == .busy)
        let message = engine.lastError
        #expect(message.contains("RLIMIT_NOFILE") && message.contains("Too many open files"), "\(message)")
        #expect(message.contains("file.open.files.max") && message.contains("limit of 4"), "\(message)")
        #expect(try await logs[0].readAll(from: 0) == models[0].plan.entries)
        // An append refused for want of descriptors changes nothing; the host's retry succeeds.
        for index in 1..<logs.count { _ = try await logs[index].readAll(from: 0) }
        #expect(engine.failIO(KSTORE_FAULTY_IO_OPEN, error: EMFILE, fail: 2) == KSTORE_OK)
        var model = models[0]
        try await logs[0].appendEntry(model.next(1))
        #expect(logs[0].busyWaits == 1)
        try await logs[0].sync()
        #expect(try await logs[0].readAll(from: 0) == model.plan.entries)
        let info = try #require(engine.descriptorInfo())
        #expect(info.exhausted_retries == 3)
        for log in logs { await log.close() }
        await engine.close()
    }

    // MARK: The option

    /// file.open.files.max defaults to half the soft RLIMIT_NOFILE at open; a value below 4 or not a
    /// decimal is refused with a message naming the option.
    @Test func theLimitDefaultsToHalfTheSoftLimitAndIsValidated() async throws {
        let scratch = try ScratchDirectory("fdcache-option")
        defer { scratch.remove() }
        var limit = rlimit()
        try #require(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0)
        let engine = try openEngine(try fileBackend(), path: scratch.path)
        let info = try #require(engine.descriptorInfo())
        let expected = limit.rlim_cur == rlim_t.max ? UInt64(1) << 20 : max(UInt64(limit.rlim_cur) / 2, 4)
        #expect(info.limit == expected)
        await engine.close()
        for value in ["3", "0", "-1", "many", "1073741825"] {
            do {
                let accepted = try openEngine(
                    try fileBackend(),
                    path: scratch.path,
                    options: [(key: "file.open.files.max", value: value)]
                )
                Issue.record("file.open.files.max=\(value) was accepted")
                await accepted.close()
            } catch let error as StorageError {
                #expect(error.code == .invalidArgument && error.message.contains("file.open.files.max"), "\(error)")
            }
        }
    }
}
