internal import CKStore
internal import KStoreURing
import StorageHost

extension StorageBackend {
    /// The backend's own figures: kstore.h's KSTORE_CONTROL_STATS, or — for a built-in backend that
    /// does not implement that op yet — the same figures read through its older, backend-specific
    /// op. nil when there are none (the host's own measurements are then all there is).
    ///
    /// The fallback exists only until the uring backend answers KSTORE_CONTROL_STATS itself (with
    /// the names below, so nothing changes for dashboards when it does); then it is removed.
    public static func statistics(of engine: StorageEngine) -> [BackendStatistic]? {
        if let figures = engine.backendStatistics() { return figures }
        if engine.backend.name == "uring" { return uringStatistics(engine) }
        return nil
    }

    /// `kstore_uring_stats` (KSTORE_URING_CONTROL_STATS) under kstore.h's figure names.
    private static func uringStatistics(_ engine: StorageEngine) -> [BackendStatistic]? {
        var stats = kstore_uring_stats()
        stats.struct_size = UInt32(MemoryLayout<kstore_uring_stats>.size)
        let status = withUnsafeMutablePointer(to: &stats) { engine.control(KSTORE_URING_CONTROL_STATS, $0) }
        guard status == KSTORE_OK else { return nil }
        func counter(_ name: String, _ value: UInt64, _ help: String) -> BackendStatistic {
            BackendStatistic(name: name, kind: .counter, help: help, value: Double(value))
        }
        func gauge(_ name: String, _ value: Double, _ help: String) -> BackendStatistic {
            BackendStatistic(name: name, kind: .gauge, help: help, value: value)
        }
        return [
            counter("appends_total", stats.appends, "Appends accepted"),
            counter("sync_requests_total", stats.syncs, "Sync requests accepted (the host's and internal ones)"),
            counter("syncs_total", stats.fsyncs, "fdatasync rounds issued (group commits)"),
            // The older op has no exact figure for this: every WAL byte written is covered by the next
            // fdatasync round, so the bytes written stand in for it (off by what was written since the
            // last round).
            counter("synced_bytes_total", stats.bytes_written, "WAL bytes made durable by fdatasync rounds"),
            counter("writes_total", stats.writes, "WAL writes submitted"),
            counter("written_bytes_total", stats.bytes_written, "WAL bytes written (frames and padding)"),
            gauge("direct_writes", Double(stats.direct), "1 when the WAL is written with O_DIRECT (uring.direct), else 0"),
            counter("pad_bytes_total", stats.pad_bytes, "Bytes of pad frames written (direct mode), included in written_bytes_total"),
            gauge("writes_in_flight_max", Double(stats.writes_in_flight_max), "The most WAL writes in flight at once"),
            gauge("segments", Double(stats.segments), "WAL segment files in use, the prepared spare included"),
            counter("segments_created_total", stats.segments_created, "WAL segment files created"),
            counter("segments_deleted_total", stats.segments_deleted, "WAL segment files deleted"),
            counter("segments_recycled_total", stats.segments_recycled, "WAL segments made from a retired file"),
            gauge("staging_bytes", Double(stats.staging_bytes), "Staging buffer bytes allocated now"),
            gauge("staging_capacity_bytes", Double(stats.staging_bytes_max), "The staging bound (uring.staging.bytes)"),
            gauge("index_memory_bytes", Double(stats.index_memory_bytes), "Memory of the active segment's fine index"),
            counter("busy_rejections_total", stats.busy_rejections, "Appends answered BUSY because staging was full"),
            gauge("recovery_seconds", Double(stats.recovery_ns) / 1e9, "How long recovery took at open"),
            gauge("recovery_scanned_bytes", Double(stats.recovery_bytes), "WAL bytes recovery scanned at open"),
            gauge("recovery_frames", Double(stats.recovery_frames), "Frames recovery replayed at open"),
            gauge("recovery_replay_bytes", Double(stats.recovery_replay_bytes), "Bytes of valid frames replayed at open"),
            gauge("recovery_replay_seconds", Double(stats.recovery_replay_ns) / 1e9, "Time recovery spent replaying them"),
        ]
    }
}
