import CKStore
import NIOCore
import StorageBackends
import Synchronization
import Testing

@testable import StorageHost
@testable import StorageTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Counts what a `StorageObserver` is told.
final class RecordingObserver: StorageObserver {
    struct Counts: Equatable {
        var appends = 0
        var appendBytes = 0
        var failedAppends = 0
        var syncs = 0
        var busyWaits = 0
        var longestNanoseconds: UInt64 = 0
    }

    let counts = Mutex(Counts())

    func appendCompleted(byteCount: Int, nanoseconds: UInt64, succeeded: Bool) {
        counts.withLock {
            if succeeded {
                $0.appends += 1
                $0.appendBytes += byteCount
            } else {
                $0.failedAppends += 1
            }
            $0.longestNanoseconds = max($0.longestNanoseconds, nanoseconds)
        }
    }

    func syncCompleted(nanoseconds: UInt64, succeeded: Bool) {
        counts.withLock { $0.syncs += 1 }
    }

    func callWaitedForBusyBackend() {
        counts.withLock { $0.busyWaits += 1 }
    }
}

@Suite("Backend statistics (KSTORE_CONTROL_STATS) and the host's storage observer")
struct BackendStatisticsTests {
    private func value(_ figures: [BackendStatistic]?, _ name: String) -> Double? {
        figures?.first { $0.name == name }?.value
    }

    /// The memory backend reports its figures through the generic op, named by kstore.h's rules.
    @Test func memoryBackendReportsItsFiguresThroughTheGenericOp() async throws {
        let engine = try StorageEngine.open(backend: .builtin(named: "memory"), options: [], logger: quietLogger)
        let log = try await engine.openLog(named: "a", create: true)
        for offset in Int64(0)..<3 {
            try await log.append(
                firstOffset: offset,
                lastOffset: offset,
                maxTimestamp: -1,
                parts: [TestEntry.make(firstOffset: offset, lastOffset: offset, byteCount: 100)]
            )
        }
        _ = try await engine.openLog(named: "b", create: true)
        let figures = engine.backendStatistics()
        #expect(value(figures, "appends_total") == 3)
        #expect(value(figures, "append_bytes_total") == 300)
        #expect(value(figures, "stored_bytes") == 300)
        #expect(value(figures, "entries") == 3)
        #expect(value(figures, "logs") == 2)
        #expect(figures?.first { $0.name == "appends_total" }?.kind == .counter)
        #expect(figures?.first { $0.name == "stored_bytes" }?.kind == .gauge)
        #expect(figures?.allSatisfy { BackendStatistic.isValidName($0.name) && !$0.help.isEmpty } == true)
        await engine.close()
    }

    /// A deleted log's appends stay counted: a counter never goes back.
    @Test func countersSurviveDeletingALog() async throws {
        let engine = try StorageEngine.open(backend: .builtin(named: "memory"), options: [], logger: quietLogger)
        let log = try await engine.openLog(named: "gone", create: true)
        try await log.append(
            firstOffset: 0,
            lastOffset: 0,
            maxTimestamp: -1,
            parts: [TestEntry.make(firstOffset: 0, lastOffset: 0)]
        )
        await log.close()
        try await engine.deleteLog(named: "gone")
        let figures = engine.backendStatistics()
        #expect(value(figures, "appends_total") == 1)
        #expect(value(figures, "stored_bytes") == 0)
        await engine.close()
    }

    /// A backend without the op (a memory table whose control member is NULL) gives no figures, and
    /// the engine works on.
    @Test func aBackendWithoutTheOpGivesNoFigures() async throws {
        let table = UnsafeMutablePointer<kstore_backend>.allocate(capacity: 1)
        table.initialize(to: try StorageBackend.builtin(named: "memory").table.members)
        table.pointee.control = nil
        // Never freed: the engine's backend keeps pointing at the table.
        let backend = try StorageBackend(validatingTable: UnsafeRawPointer(table), origin: "a table without control")
        let engine = try StorageEngine.open(backend: backend, options: [], logger: quietLogger)
        #expect(engine.backendStatistics() == nil)
        let log = try await engine.openLog(named: "a", create: true)
        try await log.append(
            firstOffset: 0,
            lastOffset: 0,
            maxTimestamp: -1,
            parts: [TestEntry.make(firstOffset: 0, lastOffset: 0)]
        )
        #expect(try log.state().endOffset == 1)
        await engine.close()
    }

    /// The uring backend reports its figures through the generic op under the names the host's
    /// mapping of its older op used (dashboards did not change when the mapping went).
    @Test(.enabled(if: StorageBackend.builtinNames.contains("uring"))) func uringReportsItsFiguresThroughTheGenericOp()
        async throws
    {
        var template = Array("/tmp/fjord-stats-XXXXXX".utf8CString)
        let directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        defer { _ = system("rm -rf '\(directory)'") }
        let engine: StorageEngine
        do {
            engine = try StorageEngine.open(
                backend: .builtin(named: "uring"),
                options: [(key: "path", value: directory)],
                logger: quietLogger
            )
        } catch {
            Issue.record("uring unavailable here: \(error)")
            return
        }
        let log = try await engine.openLog(named: "a", create: true)
        try await log.append(
            firstOffset: 0,
            lastOffset: 0,
            maxTimestamp: -1,
            parts: [TestEntry.make(firstOffset: 0, lastOffset: 0)]
        )
        try await log.sync()
        let figures = engine.backendStatistics()
        #expect(value(figures, "appends_total") ?? 0 >= 1)
        #expect(value(figures, "syncs_total") ?? 0 >= 1)
        #expect(value(figures, "staging_capacity_bytes") ?? 0 > 0)
        await engine.close()
    }

    /// The observer hears of every append (with its bytes) and sync, and sees real latencies.
    @Test func observerHearsOfEveryAppendAndSync() async throws {
        let observer = RecordingObserver()
        let engine = try StorageEngine.open(
            backend: .builtin(named: "memory"),
            options: [],
            logger: quietLogger,
            configuration: StorageHostConfiguration(observer: observer)
        )
        let log = try await engine.openLog(named: "a", create: true)
        for offset in Int64(0)..<4 {
            try await log.append(
                firstOffset: offset,
                lastOffset: offset,
                maxTimestamp: -1,
                parts: StorageLog.split(TestEntry.make(firstOffset: offset, lastOffset: offset, byteCount: 64))
            )
        }
        try await log.sync()
        // A rejected append (not continuing the log) is reported as failed, never as stored.
        await #expect(throws: StorageError.self) {
            try await log.append(
                firstOffset: 9,
                lastOffset: 9,
                maxTimestamp: -1,
                parts: [TestEntry.make(firstOffset: 9, lastOffset: 9)]
            )
        }
        let counts = observer.counts.withLock { $0 }
        #expect(counts.appends == 4)
        #expect(counts.appendBytes == 256)
        #expect(counts.failedAppends == 1)
        #expect(counts.syncs == 1)
        #expect(counts.longestNanoseconds > 0)
        await engine.close()
    }
}
