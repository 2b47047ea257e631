import StorageHost
import Synchronization
import Testing

@testable import FjordOperations

/// A scrape source whose series the test sets.
final class SettableSource: ScrapeSource, Sendable {
    let gauges = Mutex<[String: Double]>([:])
    let total = Mutex<Double?>(nil)

    func collect(into series: ScrapeSeries) {
        for (name, value) in gauges.withLock({ $0 }) {
            series.gauge(name, help: "A test gauge.", labels: [("partition", "0")], value)
        }
        if let total = total.withLock({ $0 }) {
            series.counter("fjord_test_events_total", help: "A test counter.", total: total)
        }
    }
}

@Suite("The Prometheus exporter and its scrape-time series")
struct MetricsExporterTests {
    private func sample(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    @Test func aGaugeNotSetDuringAScrapeDisappears() {
        let exporter = MetricsExporter()
        let source = SettableSource()
        exporter.add(source)
        source.gauges.withLock { $0 = ["fjord_test_size_bytes": 5] }
        #expect(sample(exporter.renderText(), "fjord_test_size_bytes{partition=\"0\"}") == 5)
        source.gauges.withLock { $0 = [:] }
        #expect(!exporter.renderText().contains("fjord_test_size_bytes"))
    }

    /// A counter mirrors a total read elsewhere; a total that went back (a reopened backend)
    /// starts it again rather than being ignored.
    @Test func aCounterMirrorsTheTotalAndRestartsWhenItGoesBack() {
        let exporter = MetricsExporter()
        let source = SettableSource()
        exporter.add(source)
        source.total.withLock { $0 = 3 }
        #expect(sample(exporter.renderText(), "fjord_test_events_total") == 3)
        source.total.withLock { $0 = 10 }
        #expect(sample(exporter.renderText(), "fjord_test_events_total") == 10)
        source.total.withLock { $0 = 2 }
        #expect(sample(exporter.renderText(), "fjord_test_events_total") == 2)
    }

    /// The backend's own figures appear as fjord_storage_backend_<name> with the backend label,
    /// and the group-commit factor is synced bytes per physical sync.
    @Test func backendFiguresAreExportedUnderTheirNames() {
        let exporter = MetricsExporter()
        let storage = StorageMetrics(backend: "file", factory: exporter.factory)
        storage.readBackendStatistics {
            [
                BackendStatistic(name: "open_descriptors", kind: .gauge, help: "Descriptors open now", value: 7),
                BackendStatistic(name: "syncs_total", kind: .counter, help: "fdatasyncs", value: 4),
                BackendStatistic(name: "synced_bytes_total", kind: .counter, help: "Bytes synced", value: 4096),
            ]
        }
        storage.recordRecovery(seconds: 1.5)
        exporter.observe(storage: storage)
        let text = exporter.renderText()
        #expect(text.contains("# TYPE fjord_storage_backend_open_descriptors gauge"), "\(text)")
        #expect(sample(text, "fjord_storage_backend_open_descriptors{backend=\"file\"}") == 7, "\(text)")
        #expect(text.contains("# TYPE fjord_storage_backend_syncs_total counter"), "\(text)")
        #expect(sample(text, "fjord_storage_backend_syncs_total{backend=\"file\"}") == 4, "\(text)")
        #expect(sample(text, "fjord_storage_recovery_seconds{backend=\"file\"}") == 1.5, "\(text)")
        #expect(sample(text, "fjord_storage_bytes_per_sync{backend=\"file\"}") == 1024, "\(text)")
    }
}
