import CKStore
import NIOCore
import StorageBackends
import Testing

@testable import StorageHost
@testable import StorageTestSupport

/// The file backend's answer to KSTORE_CONTROL_STATS (file_statistics.c): the write and sync
/// counters, and the descriptor cache's figures, which must be the cache's own.
@Suite("File backend statistics (KSTORE_CONTROL_STATS)")
struct FileStatisticsTests {
    private func value(_ figures: [BackendStatistic]?, _ name: String) -> Double? {
        figures?.first { $0.name == name }?.value
    }

    /// Every built-in backend answers the generic op (so the conformance suite checks each of them
    /// rather than skipping one that answers UNSUPPORTED).
    @Test func everyBuiltinBackendAnswersTheOp() async throws {
        for name in StorageBackend.builtinNames {
            let scratch = try ScratchDirectory("stats-\(name)")
            defer { scratch.remove() }
            let backend = try StorageBackend.builtin(named: name)
            let options = backend.capabilities.contains(.durable) ? [(key: "path", value: scratch.path)] : []
            let engine = try StorageEngine.open(backend: backend, options: options, logger: quietLogger)
            let figures = engine.backendStatistics()
            #expect(figures != nil, "\(name) does not answer KSTORE_CONTROL_STATS")
            #expect(value(figures, "appends_total") == 0, "\(name)")
            await engine.close()
        }
    }

    /// Appends, syncs and their bytes are counted as the log sees them: a sync makes every byte
    /// written so far count as synced, and each sync of new data is one fdatasync.
    @Test func writesAndSyncsAreCounted() async throws {
        let scratch = try ScratchDirectory("file-stats")
        defer { scratch.remove() }
        let engine = try openEngine(try fileBackend(), path: scratch.path)
        let log = try await engine.openLog(named: "a", create: true)
        for offset in Int64(0)..<5 {
            try await log.append(
                firstOffset: offset,
                lastOffset: offset,
                maxTimestamp: -1,
                parts: [TestEntry.make(firstOffset: offset, lastOffset: offset, byteCount: 100)]
            )
        }
        let unsynced = engine.backendStatistics()
        #expect(value(unsynced, "appends_total") == 5)
        #expect(value(unsynced, "append_bytes_total") == 500)
        let written = try #require(value(unsynced, "written_bytes_total"))
        #expect(written > 500, "frame headers are written too")
        #expect(value(unsynced, "synced_bytes_total") == 0)

        let syncsBefore = try #require(value(unsynced, "syncs_total"))
        try await log.sync()
        try await log.sync()  // Nothing new to sync: a request, no fdatasync.
        let synced = engine.backendStatistics()
        #expect(value(synced, "sync_requests_total") == 2)
        #expect(value(synced, "syncs_total") == syncsBefore + 1)
        #expect(value(synced, "synced_bytes_total") == written)
        #expect(value(synced, "recovered_logs_total") == 1)
        #expect(synced?.first { $0.name == "open_descriptors" }?.kind == .gauge)
        #expect(synced?.first { $0.name == "syncs_total" }?.kind == .counter)
        await log.close()
        await engine.close()
    }

    /// open_descriptors is what the descriptor cache holds (KSTORE_FILE_CONTROL_DESCRIPTOR_INFO),
    /// follows it as logs open and close, and the limit is file.open.files.max.
    @Test func openDescriptorsFollowTheCache() async throws {
        let scratch = try ScratchDirectory("file-stats-fds")
        defer { scratch.remove() }
        let engine = try openEngine(
            try fileBackend(),
            path: scratch.path,
            options: [(key: "file.open.files.max", value: "8")]
        )
        func check(_ when: String) throws -> Double {
            let figures = engine.backendStatistics()
            let info = try #require(engine.descriptorInfo())
            #expect(value(figures, "open_descriptors") == Double(info.open_count), "\(when)")
            #expect(value(figures, "open_descriptors_limit") == 8, "\(when)")
            #expect(value(figures, "descriptor_evictions_total") == Double(info.evictions), "\(when)")
            #expect(value(figures, "descriptor_opens_total") == Double(info.open_calls), "\(when)")
            return value(figures, "open_descriptors") ?? -1
        }
        let empty = try check("before any log")
        var logs: [StorageLog] = []
        for index in 0..<12 {
            let log = try await engine.openLog(named: "log\(index)", create: true)
            try await log.append(
                firstOffset: 0,
                lastOffset: 0,
                maxTimestamp: -1,
                parts: [TestEntry.make(firstOffset: 0, lastOffset: 0)]
            )
            logs.append(log)
        }
        let busy = try check("twelve logs written")
        #expect(busy > empty)
        #expect(busy <= 8, "idle descriptors beyond the limit are closed")
        #expect(value(engine.backendStatistics(), "descriptor_evictions_total") ?? 0 > 0, "twelve logs' files exceed 8")
        for log in logs { await log.close() }
        let closed = try check("every log closed")
        #expect(closed == empty)
        await engine.close()
    }
}
