import Prometheus

/// Series set at scrape time from state read then — partitions, groups, connections, the backend's
/// own figures — next to the instruments that are updated as things happen. A series not set
/// during a scrape (a deleted partition, a group that is gone) is unregistered at its end, so it
/// disappears instead of freezing at its last value.
///
/// Not thread-safe: the exporter uses it only while it holds its scrape lock.
final class ScrapeSeries {
    private struct Key: Hashable {
        var name: String
        var labels: [String]

        init(_ name: String, _ labels: [(String, String)]) {
            self.name = name
            self.labels = labels.flatMap { [$0.0, $0.1] }
        }
    }

    private enum Kind { case gauge, counter }

    private let registry: PrometheusCollectorRegistry
    private var gauges: [Key: Gauge] = [:]
    /// Counters mirror a total read elsewhere: the registry's counter only grows, so each scrape
    /// adds the difference to the last value seen.
    private var counters: [Key: (counter: Counter, last: Double)] = [:]
    /// The registry traps on a name registered as two kinds or with two help texts: the first
    /// registration of a name decides both, later mismatches are skipped.
    private var kinds: [String: (kind: Kind, help: String)] = [:]
    private var seen: Set<Key> = []

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    func beginScrape() {
        seen.removeAll(keepingCapacity: true)
    }

    /// Sets a gauge to `value`.
    func gauge(_ name: String, help: String, labels: [(String, String)] = [], _ value: Double) {
        guard admit(name, .gauge, help) else { return }
        let key = Key(name, labels)
        seen.insert(key)
        let gauge = gauges[key] ?? registry.makeGauge(name: name, labels: labels, help: help)
        gauges[key] = gauge
        gauge.set(value)
    }

    /// Mirrors a total that only grows (a reset, such as a reopened backend, starts it again).
    func counter(_ name: String, help: String, labels: [(String, String)] = [], total: Double) {
        guard admit(name, .counter, help) else { return }
        let key = Key(name, labels)
        seen.insert(key)
        var entry = counters[key] ?? (registry.makeCounter(name: name, labels: labels, help: help), 0)
        if total < entry.last {
            entry.counter.reset()
            entry.last = 0
        }
        if total > entry.last { entry.counter.increment(by: total - entry.last) }
        entry.last = total
        counters[key] = entry
    }

    /// Unregisters the series not set since `beginScrape`.
    func endScrape() {
        for (key, gauge) in gauges where !seen.contains(key) {
            registry.unregisterGauge(gauge)
            gauges[key] = nil
        }
        for (key, entry) in counters where !seen.contains(key) {
            registry.unregisterCounter(entry.counter)
            counters[key] = nil
        }
    }

    private func admit(_ name: String, _ kind: Kind, _ help: String) -> Bool {
        if let known = kinds[name] { return known.kind == kind && known.help == help }
        kinds[name] = (kind, help)
        return true
    }
}

/// Something the exporter reads at every scrape.
protocol ScrapeSource: Sendable {
    func collect(into series: ScrapeSeries)
}
