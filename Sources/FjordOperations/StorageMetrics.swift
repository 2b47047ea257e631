import CoreMetrics
import StorageHost
import Synchronization

/// The host's measurements of the storage backend (kstore.h's fallback, the same for every
/// backend) and, at scrape time, the backend's own figures (KSTORE_CONTROL_STATS) as
/// `fjord_storage_backend_<name>`.
///
/// On the storage completion path it costs relaxed atomic adds and one histogram observation per
/// append or sync (the observer protocol's budget: no blocking, no allocation).
public final class StorageMetrics: StorageObserver, Sendable {
    public let backend: String
    private let appendDuration: Timer
    private let syncDuration: Timer
    private let appends = Atomic<Int>(0)
    private let appendBytes = Atomic<Int>(0)
    private let appendFailures = Atomic<Int>(0)
    private let syncs = Atomic<Int>(0)
    private let syncFailures = Atomic<Int>(0)
    private let busyWaits = Atomic<Int>(0)
    /// Seconds from opening the backend to the broker's partitions being restored (recovery).
    private let recoverySeconds = Atomic<UInt64>(0)
    private let statistics = Mutex<(@Sendable () -> [BackendStatistic]?)?>(nil)

    public init(backend: String, factory: any MetricsFactory) {
        self.backend = backend
        let labels = [("backend", backend)]
        appendDuration = Timer(label: "fjord_storage_append_duration_seconds", dimensions: labels, factory: factory)
        syncDuration = Timer(label: "fjord_storage_sync_duration_seconds", dimensions: labels, factory: factory)
    }

    // MARK: StorageObserver

    public func appendCompleted(byteCount: Int, nanoseconds: UInt64, succeeded: Bool) {
        appendDuration.recordNanoseconds(Int64(truncatingIfNeeded: nanoseconds))
        if succeeded {
            appends.add(1, ordering: .relaxed)
            appendBytes.add(byteCount, ordering: .relaxed)
        } else {
            appendFailures.add(1, ordering: .relaxed)
        }
    }

    public func syncCompleted(nanoseconds: UInt64, succeeded: Bool) {
        syncDuration.recordNanoseconds(Int64(truncatingIfNeeded: nanoseconds))
        if succeeded {
            syncs.add(1, ordering: .relaxed)
        } else {
            syncFailures.add(1, ordering: .relaxed)
        }
    }

    public func callWaitedForBusyBackend() {
        busyWaits.add(1, ordering: .relaxed)
    }

    // MARK: Set once

    /// How long recovery took at startup (opening the backend and restoring every partition).
    public func recordRecovery(seconds: Double) {
        recoverySeconds.store(seconds.bitPattern, ordering: .relaxed)
    }

    /// Where the backend's own figures come from (nil: none; see `StorageEngine.backendStatistics()`).
    public func readBackendStatistics(with read: @escaping @Sendable () -> [BackendStatistic]?) {
        statistics.withLock { $0 = read }
    }

    /// Reported at scrape time.
    var scrapeSource: any ScrapeSource { Source(metrics: self) }

    private struct Source: ScrapeSource {
        let metrics: StorageMetrics

        func collect(into series: ScrapeSeries) {
            metrics.collect(into: series)
        }
    }

    private func collect(into series: ScrapeSeries) {
        let labels = [("backend", backend)]
        let appendBytesTotal = Double(appendBytes.load(ordering: .relaxed))
        let syncsTotal = Double(syncs.load(ordering: .relaxed))
        series.counter(
            "fjord_storage_appends_total",
            help: "Appends the backend completed (host count).",
            labels: labels,
            total: Double(appends.load(ordering: .relaxed))
        )
        series.counter(
            "fjord_storage_append_bytes_total",
            help: "Bytes of the appends the backend completed (host count).",
            labels: labels,
            total: appendBytesTotal
        )
        series.counter(
            "fjord_storage_syncs_total",
            help: "Sync requests the backend completed (host count; a shared-WAL backend merges them).",
            labels: labels,
            total: syncsTotal
        )
        series.counter(
            "fjord_storage_failures_total",
            help: "Appends and syncs that completed with an error.",
            labels: [("backend", backend), ("operation", "append")],
            total: Double(appendFailures.load(ordering: .relaxed))
        )
        series.counter(
            "fjord_storage_failures_total",
            help: "Appends and syncs that completed with an error.",
            labels: [("backend", backend), ("operation", "sync")],
            total: Double(syncFailures.load(ordering: .relaxed))
        )
        series.counter(
            "fjord_storage_busy_waits_total",
            help: "Appends and syncs the backend refused as busy (staging full) that waited and were retried.",
            labels: labels,
            total: Double(busyWaits.load(ordering: .relaxed))
        )
        let recovery = Double(bitPattern: recoverySeconds.load(ordering: .relaxed))
        series.gauge(
            "fjord_storage_recovery_seconds",
            help: "How long opening the backend and restoring every partition took at startup.",
            labels: labels,
            recovery
        )
        let figures = statistics.withLock { $0 }?() ?? []
        for figure in figures {
            let name = "fjord_storage_backend_" + figure.name
            let help = figure.help.isEmpty ? "Reported by the storage backend." : figure.help
            switch figure.kind {
            case .counter: series.counter(name, help: help, labels: labels, total: figure.value)
            case .gauge: series.gauge(name, help: help, labels: labels, figure.value)
            }
        }
        // The group-commit factor: bytes made durable per physical sync, from the backend's own
        // figures when it reports them (kstore.h names), else the host's (appended bytes per sync
        // request, which overstates the syncs a shared WAL really issues).
        let backendSyncs = figures.first { $0.name == "syncs_total" }?.value
        let backendSynced = figures.first { $0.name == "synced_bytes_total" }?.value
        let bytesPerSync: Double? =
            if let backendSyncs, let backendSynced {
                backendSyncs > 0 ? backendSynced / backendSyncs : nil
            } else {
                syncsTotal > 0 ? appendBytesTotal / syncsTotal : nil
            }
        if let bytesPerSync {
            series.gauge(
                "fjord_storage_bytes_per_sync",
                help: "Bytes made durable per physical sync since startup (the group-commit factor).",
                labels: labels,
                bytesPerSync
            )
        }
    }
}
