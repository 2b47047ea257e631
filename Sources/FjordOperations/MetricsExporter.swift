import BrokerCore
import BrokerServer
import CoreMetrics
import Prometheus
import Synchronization

/// The Prometheus side of the broker's metrics: one registry holding the swift-metrics instruments
/// (requests, produce, fetch, storage latencies) and the series read at scrape time, rendered in
/// the Prometheus text format by swift-prometheus for `GET /metrics`.
public final class MetricsExporter: Sendable {
    public let registry: PrometheusCollectorRegistry
    /// The swift-metrics backend to create instruments with (`BrokerMetrics`, `StorageMetrics`).
    public let factory: PrometheusMetricsFactory

    /// Latency buckets, in seconds: 50 µs (a memory-backend append) to 10 s (a long poll), about
    /// 2.5 per decade, so one histogram reads sensibly for every backend.
    public static let latencyBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
        .milliseconds(1), .microseconds(2_500), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .milliseconds(2_500), .seconds(5), .seconds(10),
    ]

    private struct State {
        var sources: [any ScrapeSource] = []
        /// Not Sendable: it is only ever touched inside the mutex.
        var series: ScrapeSeries
    }

    private let state: Mutex<State>

    public init() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = Self.latencyBuckets
        self.registry = registry
        self.factory = factory
        self.state = Mutex(State(series: ScrapeSeries(registry: registry)))
    }

    /// Adds what to read at every scrape (a source added later appears from the next scrape on).
    func add(_ source: any ScrapeSource) {
        state.withLock { $0.sources.append(source) }
    }

    /// Reads every source and renders the registry (Prometheus text format, version 0.0.4).
    /// Concurrent scrapes take turns.
    public func render() -> [UInt8] {
        state.withLock { state in
            state.series.beginScrape()
            for source in state.sources { source.collect(into: state.series) }
            state.series.endScrape()
            return registry.emitToBuffer()
        }
    }

    /// `render()` as text.
    public func renderText() -> String {
        String(decoding: render(), as: UTF8.self)
    }
}

extension MetricsExporter {
    /// Partitions and consumer groups of `broker`, read at every scrape.
    public func observe(broker: Broker) { add(BrokerSource(broker: broker)) }

    /// The Kafka listener's connection counters.
    public func observe(server: KafkaServer) { add(ServerSource(server: server)) }

    /// The storage host's counters and the backend's own figures.
    public func observe(storage: StorageMetrics) { add(storage.scrapeSource) }

    /// `fjord_ready`.
    public func observe(health: HealthState) { add(health.scrapeSource) }

    /// The standard `process_*` metrics.
    public func observeProcess() { add(ProcessSource()) }
}
