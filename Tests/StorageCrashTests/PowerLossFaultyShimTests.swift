import CKStore
import Foundation
import KStoreFaulty
import NIOCore
import StorageBackends
import Testing

@testable import StorageHost
@testable import StorageTestSupport

/// A faulty shim (Backends/faulty) over a built-in backend, opened through the host on a scratch
/// directory with its own seeded schedule. `close()` closes the engine and removes the directory.
final class FaultyHarness: @unchecked Sendable {  // Used by one test task at a time.
    let table: UnsafePointer<kstore_backend>
    let backend: StorageBackend
    let scratch: ScratchDirectory
    let config: kstore_faulty_config
    private(set) var engine: StorageEngine

    init(inner: UnsafePointer<kstore_backend>, config: kstore_faulty_config, label: String) throws {
        self.table = try FaultyTables.table(wrapping: inner)
        self.backend = try StorageBackend(validating: self.table, origin: "faulty shim (\(label))")
        self.scratch = try ScratchDirectory("faulty-\(label)")
        self.config = config
        self.engine = try openEngine(self.backend, path: self.scratch.path)
        try #require(self.setConfig(config) == KSTORE_OK)
    }

    convenience init(inner name: String, config: kstore_faulty_config) throws {
        try self.init(inner: try StorageBackend.builtin(named: name).table.pointer, config: config, label: name)
    }

    /// Closes the engine and opens a new one (a new shim instance) on the same directory.
    func reopen() async throws {
        await self.engine.close()
        self.engine = try openEngine(self.backend, path: self.scratch.path)
        try #require(self.setConfig(self.config) == KSTORE_OK)
    }

    func close() async {
        await self.engine.close()
        self.scratch.remove()
    }

    func stats() -> kstore_faulty_stats {
        var stats = kstore_faulty_stats()
        stats.struct_size = UInt32(MemoryLayout<kstore_faulty_stats>.size)
        _ = self.engine.control(KSTORE_FAULTY_CONTROL_STATS, &stats)
        return stats
    }

    func crash() -> Int32 { self.engine.control(KSTORE_FAULTY_CONTROL_CRASH, nil) }

    func setConfig(_ config: kstore_faulty_config) -> Int32 {
        var config = config
        return self.engine.control(KSTORE_FAULTY_CONTROL_SET_CONFIG, &config)
    }

    /// Opens a log, retrying injected BUSY answers.
    func openLog(_ name: String, create: Bool = true) async throws -> StorageLog {
        for _ in 0..<1_000 {
            do {
                return try await self.engine.openLog(named: name, create: create)
            } catch let error as StorageError where error.code == .busy {
                continue
            }
        }
        throw StorageError(code: .busy, message: "open log '\(name)' stayed busy")
    }
}

/// The memory backend with every optional member removed (no instance control; logs without
/// truncate_to, delete_before, enforce_retention, find_offset_by_time and control).
enum ReducedMemoryBackend {
    nonisolated(unsafe) static let memory: UnsafePointer<kstore_backend> = {
        // Tests may trap on setup failures; the memory backend always exists.
        try! StorageBackend.builtin(named: "memory").table.pointer
    }()

    nonisolated(unsafe) static let logMethods: UnsafeMutablePointer<kstore_log_methods> = {
        let table = memory.pointee
        var instance: UnsafeMutablePointer<kstore_instance>? = nil
        precondition(table.open!(nil, 0, &instance, nil, 0) == KSTORE_OK)
        var log: UnsafeMutablePointer<kstore_log>? = nil
        precondition(table.open_log!(instance, "probe", UInt32(KSTORE_OPEN_CREATE), nil, 0, &log) == KSTORE_OK)
        var methods = log!.pointee.methods.pointee
        methods.close(log)
        table.close!(instance)
        methods.truncate_to = nil
        methods.delete_before = nil
        methods.enforce_retention = nil
        methods.find_offset_by_time = nil
        methods.control = nil
        let pointer = UnsafeMutablePointer<kstore_log_methods>.allocate(capacity: 1)
        pointer.initialize(to: methods)
        return pointer
    }()

    nonisolated(unsafe) static let table: UnsafeMutablePointer<kstore_backend> = {
        var table = memory.pointee
        table.control = nil
        table.open_log = { instance, name, flags, options, optionCount, log in
            let status = ReducedMemoryBackend.memory.pointee.open_log!(instance, name, flags, options, optionCount, log)
            if status == KSTORE_OK, let opened = log?.pointee {
                opened.pointee.methods = UnsafePointer(ReducedMemoryBackend.logMethods)
            }
            return status
        }
        let pointer = UnsafeMutablePointer<kstore_backend>.allocate(capacity: 1)
        pointer.initialize(to: table)
        return pointer
    }()
}

/// The faulty shim: its crash model and seeded error injection, over the memory and file backends
/// (DESIGN.md §6: crash tests run in-process and replay by seed).
@Suite("Faulty shim")
struct FaultyShimTests {
    static let inners = ["memory", "file"]

    /// FJORD_FAULTY_SEED=n replays one seed; FJORD_FAULTY_SEEDS=n runs seeds 1...n (default 20).
    static let seeds: [UInt64] = {
        let environment = ProcessInfo.processInfo.environment
        if let replay = environment["FJORD_FAULTY_SEED"].flatMap({ UInt64($0) }) { return [replay] }
        let count = environment["FJORD_FAULTY_SEEDS"].flatMap { Int($0) } ?? 20
        return (1...UInt64(max(count, 1))).map { $0 }
    }()

    static func plan(from start: Int64 = 0, count: Int) -> [TestEntry.Parsed] {
        var plan = LogPlan()
        var entries: [TestEntry.Parsed] = []
        for index in 0..<count {
            plan.add(offsetCount: Int64(index % 3 + 1), maxTimestamp: Int64(index), byteCount: 40 + index * 7 % 300)
            var entry = plan.entries.last!
            entry.firstOffset += start
            entry.lastOffset += start
            entries.append(entry)
        }
        return entries
    }

    /// The crash drops, in every log the instance has seen (open or closed), what no completed sync
    /// covered; open handles die; reopened logs hold exactly the synced entries — for a durable inner
    /// backend across a new instance too.
    @Test(arguments: inners)
    func aCrashDropsWhatNoSyncCovered(inner: String) async throws {
        let harness = try FaultyHarness(inner: inner, config: faultyConfig(seed: 1))
        do {
            var open = try await harness.openLog("open")
            var closed = try await harness.openLog("closed")
            let synced = Self.plan(count: 10)
            let unsynced = Self.plan(from: synced.last!.lastOffset + 1, count: 5)
            for log in [open, closed] {
                for entry in synced { try await log.appendEntry(entry) }
                try await log.sync()
                for entry in unsynced { try await log.appendEntry(entry) }
            }
            await closed.close()
            #expect(harness.crash() == KSTORE_OK)
            let dropped = unsynced.last!.lastOffset + 1 - unsynced.first!.firstOffset
            #expect(harness.stats().crashes == 1 && harness.stats().dropped_offsets == UInt64(2 * dropped))
            // The process is dead: its handles answer IO.
            #expect(await storageErrorCode { try await open.appendEntry(Self.plan(from: 100, count: 1)[0]) } == .io)
            #expect(
                await storageErrorCode {
                    _ = try await open.read(from: 0, limit: .max, maxBytes: 100, minimumOneEntry: true)
                }
                    == .io
            )
            await open.close()
            for round in 0..<(inner == "file" ? 2 : 1) {
                if round == 1 { try await harness.reopen() }
                open = try await harness.openLog("open", create: false)
                closed = try await harness.openLog("closed", create: false)
                for log in [open, closed] {
                    #expect(try log.state().endOffset == synced.last!.lastOffset + 1)
                    #expect(try await log.readAll(from: 0) == synced)
                    await log.close()
                }
            }
        } catch {
            await harness.close()
            throw error
        }
        await harness.close()
    }

    /// Seeded failures (append NO_SPACE/IO, sync IO, read IO, open_log BUSY) keep kstore.h's
    /// contract: completions in order, a failed append fails every later one in flight and leaves the
    /// end at its first offset, NO_SPACE is retryable there, IO fails the log until reopened; in the
    /// end the log holds exactly the entries whose appends succeeded.
    @Test(arguments: inners, seeds)
    func injectedFailuresKeepTheAppendContract(inner: String, seed: UInt64) async throws {
        print("faulty shim: inner '\(inner)' seed \(seed) (replay: FJORD_FAULTY_SEED=\(seed))")
        let config = faultyConfig(
            seed: seed,
            appendNoSpace: 60_000,
            appendIO: 10_000,
            syncIO: 20_000,
            readIO: 50_000,
            openLogBusy: 100_000
        )
        let harness = try FaultyHarness(inner: inner, config: config)
        do {
            var random = SeededGenerator(seed: seed)
            var log = try await harness.openLog("s")
            var committed: [TestEntry.Parsed] = []
            var end: Int64 = 0
            var failures = 0
            for round in 0..<60 {
                let burst = Self.plan(from: end, count: Int.random(in: 1...6, using: &random))
                let results = LockedState<[Result<Void, StorageError>]>([])
                for entry in burst {
                    log.submitAppend(
                        firstOffset: entry.firstOffset,
                        lastOffset: entry.lastOffset,
                        maxTimestamp: entry.maxTimestamp,
                        parts: StorageLog.split(
                            TestEntry.make(
                                firstOffset: entry.firstOffset,
                                lastOffset: entry.lastOffset,
                                maxTimestamp: entry.maxTimestamp,
                                byteCount: entry.byteCount
                            )
                        )
                    ) { result in results.withLock { $0.append(result) } }
                }
                let syncFailure = await storageErrorCode { try await log.sync() }
                let outcome = results.withLock { $0 }
                #expect(outcome.count == burst.count, "round \(round)")
                let firstFailure = outcome.firstIndex { if case .failure = $0 { true } else { false } }
                let succeeded = firstFailure ?? burst.count
                #expect(
                    outcome[succeeded...].allSatisfy { if case .failure = $0 { true } else { false } },
                    "round \(round)"
                )
                committed += burst[..<succeeded]
                end = committed.last.map { $0.lastOffset + 1 } ?? 0
                #expect(try log.state().endOffset == end, "round \(round)")
                var mustReopen = syncFailure == .io
                if let firstFailure, case .failure(let error) = outcome[firstFailure] {
                    failures += 1
                    #expect([.noSpace, .io].contains(error.code), "round \(round): \(error)")
                    #expect(error.message.contains("faulty: injected"), "round \(round): \(error.message)")
                    mustReopen = mustReopen || error.code == .io
                }
                if mustReopen {
                    // IO failed the log: every mutating call answers IO until it is reopened.
                    #expect(
                        await storageErrorCode { try await log.appendEntry(Self.plan(from: end, count: 1)[0]) } == .io
                    )
                    await log.close()
                    log = try await harness.openLog("s", create: false)
                    #expect(try log.state().endOffset == end)
                }
                if Int.random(in: 0..<4, using: &random) == 0, end > 0 {
                    let offset = Int64.random(in: 0..<end, using: &random)
                    let code = await storageErrorCode {
                        _ = try await log.read(from: offset, limit: .max, maxBytes: 1_000, minimumOneEntry: true)
                    }
                    #expect(code == nil || code == .io)
                }
            }
            #expect(harness.setConfig(faultyConfig(seed: seed)) == KSTORE_OK)
            #expect(try await log.readAll(from: 0) == committed)
            let stats = harness.stats()
            #expect(Int(stats.append_failures) >= failures)
            print(
                "faulty shim: inner '\(inner)' seed \(seed): \(committed.count) entries committed; injected "
                    + "\(stats.append_failures) append, \(stats.sync_failures) sync, \(stats.read_failures) read "
                    + "and \(stats.open_log_failures) open_log failures"
            )
            await log.close()
        } catch {
            await harness.close()
            throw error
        }
        await harness.close()
    }

    /// Whether the n-th call of an operation on a log fails depends only on the seed (and the log
    /// and the operation), so a run replays by its seed; another seed gives another schedule.
    @Test func schedulesReplayBySeed() async throws {
        func run(_ seed: UInt64) async throws -> [Bool] {
            let harness = try FaultyHarness(inner: "memory", config: faultyConfig(seed: seed, appendNoSpace: 200_000))
            var outcomes: [Bool] = []
            do {
                let log = try await harness.openLog("r")
                var end: Int64 = 0
                for _ in 0..<300 {
                    let entry = Self.plan(from: end, count: 1)[0]
                    let failed = await storageErrorCode { try await log.appendEntry(entry) } != nil
                    outcomes.append(failed)
                    if !failed { end = entry.lastOffset + 1 }
                }
                await log.close()
            } catch {
                await harness.close()
                throw error
            }
            await harness.close()
            return outcomes
        }
        let first = try await run(0xF1)
        #expect(try await run(0xF1) == first)
        #expect(try await run(0xF2) != first)
        #expect(first.contains(true) && first.contains(false))
    }

    /// A released table's slot is free again, and the released table no longer opens instances.
    @Test func releasedTablesFreeTheirSlot() throws {
        let memory = try StorageBackend.builtin(named: "memory").table.pointer
        var config = faultyConfig(seed: 9)
        let table = try #require(kstore_faulty_wrap(memory, &config))
        #expect(String(cString: table.pointee.name) == "faulty")
        kstore_faulty_release(table)
        var instance: UnsafeMutablePointer<kstore_instance>? = nil
        var reason = [CChar](repeating: 0, count: 128)
        #expect(table.pointee.open!(nil, 0, &instance, &reason, reason.count) == KSTORE_ERR_INVALID_ARGUMENT)
        let text = String(decoding: reason.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        #expect(instance == nil && text.contains("released"))
        let again = try #require(kstore_faulty_wrap(memory, &config))
        kstore_faulty_release(again)
    }

    /// The shim's tables have exactly the members the inner backend's have: a log table without
    /// truncate_to gives a shim log without it (the host then cannot roll back), and the crash, which
    /// needs truncate_to, answers UNSUPPORTED. Over a complete backend every member is there.
    @Test func theShimWrapsOnlyTheMembersTheInnerHas() async throws {
        let full = try FaultyHarness(inner: "memory", config: faultyConfig(seed: 3))
        #expect(full.backend.name == "faulty")
        #expect(full.backend.capabilities == (try StorageBackend.builtin(named: "memory")).capabilities)
        let complete = try await full.openLog("full")
        #expect(complete.supportsTruncation)
        #expect(complete.handle.member(\.delete_before) != nil && complete.handle.member(\.enforce_retention) != nil)
        #expect(complete.handle.member(\.find_offset_by_time) != nil && complete.handle.member(\.control) != nil)
        await complete.close()
        await full.close()

        let reduced = try FaultyHarness(
            inner: UnsafePointer(ReducedMemoryBackend.table),
            config: faultyConfig(seed: 3),
            label: "reduced"
        )
        let log = try await reduced.openLog("reduced")
        #expect(!log.supportsTruncation)
        #expect(log.handle.member(\.delete_before) == nil && log.handle.member(\.enforce_retention) == nil)
        #expect(log.handle.member(\.find_offset_by_time) == nil && log.handle.member(\.control) == nil)
        let entries = Self.plan(count: 3)
        try await log.appendEntry(entries[0])
        try await log.sync()
        try await log.appendEntry(entries[1])
        #expect(reduced.crash() == KSTORE_ERR_UNSUPPORTED)
        #expect(reduced.engine.control(0x7fff_0001, nil) == KSTORE_ERR_UNSUPPORTED)
        await log.close()
        await reduced.close()
    }
}
