import CoreMetrics
import KafkaMessages
import StorageHost
import Synchronization

/// The broker's instruments (swift-metrics), and the few points where the core records through
/// them: a request answered, a produce submitted, a fetch served or kept waiting.
///
/// Cost on the hot path: nothing when disabled (one branch; no clock is read). When enabled, a
/// request costs two clock reads, a lock-free load of its API version's instruments (created on
/// first use, never looked up by name again), relaxed atomic counter adds and one histogram
/// observation; error codes are looked up by name only when a response carries one. Figures that
/// would cost a write per append — partition offsets and sizes, group lag — are not recorded
/// here: the exporter reads them from the partitions at scrape time (`Broker.observePartitions`).
public final class BrokerMetrics: Sendable {
    /// Records nothing and reads no clock: the broker without `--metrics-listen`.
    public static let disabled = BrokerMetrics(factory: nil)

    /// The metric names the core records (the README documents each).
    public enum Name {
        public static let requests = "fjord_requests_total"
        public static let requestDuration = "fjord_request_duration_seconds"
        public static let requestErrors = "fjord_request_errors_total"
        public static let requestBytes = "fjord_request_bytes_total"
        public static let responseBytes = "fjord_response_bytes_total"
        public static let produceRecords = "fjord_produce_records_total"
        public static let produceBatches = "fjord_produce_batches_total"
        public static let produceBytes = "fjord_produce_bytes_total"
        public static let fetchBytes = "fjord_fetch_bytes_total"
        public static let fetchWait = "fjord_fetch_wait_seconds"
    }

    public let isEnabled: Bool
    private let factory: (any MetricsFactory)?
    /// One slot per generated (API, version), found by `slotIndex` without a lock.
    private let slots: [RequestSlot]
    /// By API key: the slot of the API's lowest version, and its lowest and highest versions
    /// (first slot -1: none).
    private let firstSlot: [Int]
    private let lowestVersion: [Int16]
    private let highestVersion: [Int16]
    private let global: GlobalInstruments?
    /// `fjord_request_errors_total` by (API, error code): the error path only, so a lock is fine.
    private let errorCounters = Mutex<[Int32: Counter]>([:])

    /// - Parameter factory: the swift-metrics backend to create the instruments with (nil: disabled).
    public init(factory: (any MetricsFactory)?) {
        self.factory = factory
        self.isEnabled = factory != nil
        var slots: [RequestSlot] = []
        let keyCount = Int(ApiKey.allCases.map(\.rawValue).max() ?? 0) + 1
        var firstSlot = [Int](repeating: -1, count: keyCount)
        var lowestVersion = [Int16](repeating: 0, count: keyCount)
        var highestVersion = [Int16](repeating: -1, count: keyCount)
        for key in ApiKey.allCases {
            guard let versions = key.generatedVersions else { continue }
            firstSlot[Int(key.rawValue)] = slots.count
            lowestVersion[Int(key.rawValue)] = versions.lowerBound
            highestVersion[Int(key.rawValue)] = versions.upperBound
            for version in versions { slots.append(RequestSlot(api: key.name, version: version)) }
        }
        self.slots = slots
        self.firstSlot = firstSlot
        self.lowestVersion = lowestVersion
        self.highestVersion = highestVersion
        self.global = factory.map(GlobalInstruments.init)
    }

    /// When a request started: the clock when enabled, 0 otherwise (no clock read).
    @inline(__always)
    func startTime() -> UInt64 {
        isEnabled ? MonotonicClock.nanoseconds() : 0
    }

    private func slot(_ apiKey: ApiKey, _ version: Int16) -> RequestSlot? {
        let key = Int(apiKey.rawValue)
        guard key < firstSlot.count, firstSlot[key] >= 0, (lowestVersion[key]...highestVersion[key]).contains(version)
        else { return nil }
        return slots[firstSlot[key] + Int(version - lowestVersion[key])]
    }

    /// A request was answered: its count, duration, bytes both ways, and the error codes its
    /// response carries (`responseBytes` 0 for a request answered without a response).
    func requestAnswered<M: KafkaResponseMessage>(
        _ apiKey: ApiKey,
        version: Int16,
        startedAt: UInt64,
        requestBytes: Int,
        responseBytes: Int,
        response: M
    ) {
        guard let factory, let slot = slot(apiKey, version) else { return }
        let instruments = slot.instruments(factory)
        instruments.requests.increment()
        instruments.duration.recordNanoseconds(Int64(truncatingIfNeeded: MonotonicClock.nanoseconds() &- startedAt))
        instruments.requestBytes.increment(by: requestBytes)
        if responseBytes > 0 { instruments.responseBytes.increment(by: responseBytes) }
        if let reporting = response as? any ResponseErrorCodes {
            reporting.forEachErrorCode { code in
                if code != 0 { countError(apiKey, code) }
            }
        }
    }

    private func countError(_ apiKey: ApiKey, _ code: Int16) {
        guard let factory else { return }
        let key = Int32(apiKey.rawValue) << 16 | Int32(UInt16(bitPattern: code))
        let counter = errorCounters.withLock { counters in
            if let existing = counters[key] { return existing }
            let created = Counter(
                label: Name.requestErrors,
                dimensions: [("api", apiKey.name), ("error", ErrorCode(rawValue: code).name)],
                factory: factory
            )
            counters[key] = created
            return created
        }
        counter.increment()
    }

    /// One Produce request's accepted batches (validated and submitted), counted once per request.
    func produced(_ tally: ProduceTally) {
        guard let global, tally.batches > 0 else { return }
        global.produceBatches.increment(by: tally.batches)
        global.produceRecords.increment(by: tally.records)
        global.produceBytes.increment(by: tally.bytes)
    }

    /// Record bytes one Fetch response carries.
    func fetched(recordBytes: Int) {
        guard let global, recordBytes > 0 else { return }
        global.fetchBytes.increment(by: recordBytes)
    }

    /// A long-poll Fetch waited this long for data (once per wait).
    func fetchWaited(nanoseconds: UInt64) {
        global?.fetchWait.recordNanoseconds(Int64(truncatingIfNeeded: nanoseconds))
    }
}

/// What one Produce request submitted, summed on its own thread and counted once.
struct ProduceTally {
    var batches = 0
    var records = 0
    var bytes = 0
}

/// The instruments of one API version, created on its first request.
private final class RequestInstruments: Sendable {
    let requests: Counter
    let duration: Timer
    let requestBytes: Counter
    let responseBytes: Counter

    init(api: String, version: Int16, factory: any MetricsFactory) {
        let dimensions = [("api", api), ("version", String(version))]
        requests = Counter(label: BrokerMetrics.Name.requests, dimensions: dimensions, factory: factory)
        duration = Timer(label: BrokerMetrics.Name.requestDuration, dimensions: dimensions, factory: factory)
        requestBytes = Counter(label: BrokerMetrics.Name.requestBytes, dimensions: dimensions, factory: factory)
        responseBytes = Counter(label: BrokerMetrics.Name.responseBytes, dimensions: dimensions, factory: factory)
    }
}

/// A lazily filled, lock-free cell for one API version's instruments: the first request creates
/// them and publishes them with a compare-and-exchange; every later one only loads the reference.
private final class RequestSlot: Sendable {
    let api: String
    let version: Int16
    private let cell = Atomic<Unmanaged<RequestInstruments>?>(nil)

    init(api: String, version: Int16) {
        self.api = api
        self.version = version
    }

    func instruments(_ factory: any MetricsFactory) -> RequestInstruments {
        if let existing = cell.load(ordering: .acquiring) { return existing.takeUnretainedValue() }
        let created = Unmanaged.passRetained(RequestInstruments(api: api, version: version, factory: factory))
        let (exchanged, current) = cell.compareExchange(
            expected: nil,
            desired: created,
            ordering: .acquiringAndReleasing
        )
        if exchanged { return created.takeUnretainedValue() }
        // Another thread published first; the backend returns the same series for the same labels.
        created.release()
        // Cannot be nil: the exchange failed because the cell holds a value.
        return current!.takeUnretainedValue()
    }

    deinit {
        cell.load(ordering: .acquiring)?.release()
    }
}

/// Instruments without per-request labels.
private struct GlobalInstruments: Sendable {
    let produceRecords: Counter
    let produceBatches: Counter
    let produceBytes: Counter
    let fetchBytes: Counter
    let fetchWait: Timer

    init(factory: any MetricsFactory) {
        produceRecords = Counter(label: BrokerMetrics.Name.produceRecords, factory: factory)
        produceBatches = Counter(label: BrokerMetrics.Name.produceBatches, factory: factory)
        produceBytes = Counter(label: BrokerMetrics.Name.produceBytes, factory: factory)
        fetchBytes = Counter(label: BrokerMetrics.Name.fetchBytes, factory: factory)
        fetchWait = Timer(label: BrokerMetrics.Name.fetchWait, factory: factory)
    }
}
