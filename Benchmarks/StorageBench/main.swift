// fjord-storage-bench: storage throughput, latency, read-back and recovery through StorageHost, the
// way the broker uses it (submitAppend + submitSync, completions, in-order submission per partition,
// a bounded number of outstanding appends per partition). --durable counts a batch when a sync
// covers it; like the broker's partitions, each log has at most one sync in flight and appends
// submitted meanwhile are covered by the next one. As in the broker, completions never call the
// backend: they hand their producer to one of --pump-threads submitting threads (the broker's event
// loops), one wake-up per burst. Each entry is shaped like a RecordBatch v2 (magic 2 at byte 16,
// its CRC-32C field over bytes 21..<end) and appended as the broker appends produced batches, with
// checkedBatch (kstore.h append_checked_batch).
//
//   swift run -c release fjord-storage-bench --backend uring --data-dir /tmp/b --partitions 64 \
//       --batch-bytes 1024 --durable --duration 10
import Dispatch
import Foundation
import Histogram
import Logging
import NIOCore
import StorageBackends
import StorageHost

#if canImport(Glibc)
import Glibc
#endif

struct Options {
    var backend = "memory"
    var dataDirectory: String? = nil
    var batchBytes = 1024
    var partitions = 16
    var durable = false
    var durationSeconds = 5.0
    var totalBytes: Int64? = nil
    var inflight = 64
    var pumpThreads = 2
    var json = false
    var read = true
    var recovery = true
    var backendOptions: [(key: String, value: String)] = []

    static let usage = """
        usage: fjord-storage-bench [--backend memory|file|uring] [--data-dir DIR] [--batch-bytes N]
               [--partitions N] [--durable] [--duration SECONDS | --total-bytes N] [--inflight N] [--pump-threads N]
               [--option key=value]... [--no-read] [--no-recovery] [--json]
        """

    static func parse(_ arguments: [String]) -> Options {
        var options = Options()
        var iterator = arguments.makeIterator()
        func value(_ flag: String) -> String {
            guard let next = iterator.next() else { fail("\(flag) needs a value") }
            return next
        }
        while let argument = iterator.next() {
            switch argument {
            case "--backend": options.backend = value(argument)
            case "--data-dir": options.dataDirectory = value(argument)
            case "--batch-bytes": options.batchBytes = Int(value(argument)) ?? 0
            case "--partitions": options.partitions = Int(value(argument)) ?? 0
            case "--durable": options.durable = true
            case "--duration": options.durationSeconds = Double(value(argument)) ?? 0
            case "--total-bytes": options.totalBytes = Int64(value(argument))
            case "--inflight": options.inflight = Int(value(argument)) ?? 0
            case "--pump-threads": options.pumpThreads = Int(value(argument)) ?? 0
            case "--json": options.json = true
            case "--no-read": options.read = false
            case "--no-recovery": options.recovery = false
            case "--option":
                let pair = value(argument).split(separator: "=", maxSplits: 1).map(String.init)
                guard pair.count == 2 else { fail("--option wants key=value") }
                options.backendOptions.append((key: pair[0], value: pair[1]))
            case "--help", "-h":
                print(usage)
                exit(0)
            default: fail("unknown argument \(argument)\n\(usage)")
            }
        }
        guard options.batchBytes >= 64, options.partitions >= 1, options.inflight >= 1, options.pumpThreads >= 1 else {
            fail("--batch-bytes >= 64, --partitions >= 1, --inflight >= 1, --pump-threads >= 1")
        }
        return options
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("fjord-storage-bench: \(message)\n".utf8))
    exit(2)
}

func nowNs() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

/// Latency in nanoseconds, 1 ns to 100 s at three significant digits (HdrHistogram).
typealias LatencyHistogram = Histogram<UInt64>

/// An entry shaped like a RecordBatch v2 as far as kstore.h append_checked_batch looks: magic 2 at
/// byte 16 and the big-endian CRC-32C of bytes 21..<end at 17..<21 (byteCount >= 64). The broker
/// appends every produced batch so.
func makeBenchEntry(byteCount: Int) -> ByteBuffer {
    var bytes = (0..<byteCount).map { UInt8(truncatingIfNeeded: $0 &* 31) }
    bytes[16] = 2
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes[21...] {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
    }
    crc = ~crc
    for index in 0..<4 { bytes[17 + index] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * index)) }
    var batch = ByteBufferAllocator().buffer(capacity: byteCount)
    batch.writeBytes(bytes)
    return batch
}

func makeLatencyHistogram() -> LatencyHistogram {
    LatencyHistogram(highestTrackableValue: 100_000_000_000, numberOfSignificantValueDigits: .three)
}

extension Histogram {
    /// Records a latency, clamped into the trackable range (a value beyond it would be dropped).
    mutating func recordLatency(_ nanoseconds: UInt64) {
        _ = self.record(Swift.min(Swift.max(nanoseconds, 1), self.highestTrackableValue))
    }
}

/// A recursive pthread mutex: a synchronous backend (memory) completes inside submitAppend, on the
/// thread that holds the producer's lock.
final class Lock: @unchecked Sendable {  // The mutex is only used through lock/unlock.
    private var mutex = pthread_mutex_t()
    init() {
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_RECURSIVE))
        pthread_mutex_init(&self.mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
    }
    deinit { pthread_mutex_destroy(&self.mutex) }
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&self.mutex)
        defer { pthread_mutex_unlock(&self.mutex) }
        return try body()
    }
}

/// A submitting thread, like one of the broker's event loops: producers whose completions freed
/// room are queued here and pumped in turn (kstore.h: a completion must not call the backend).
final class PumpThread: @unchecked Sendable {  // `queue` is only used with `condition` locked.
    private let condition = NSCondition()
    private var queue: [Producer] = []

    init(name: String) {
        let thread = Thread { self.run() }
        thread.name = name
        thread.start()
    }

    func schedule(_ producer: Producer) {
        self.condition.lock()
        self.queue.append(producer)
        if self.queue.count == 1 { self.condition.signal() }
        self.condition.unlock()
    }

    private func run() {
        while true {
            self.condition.lock()
            while self.queue.isEmpty { self.condition.wait() }
            let producers = self.queue
            self.queue.removeAll(keepingCapacity: true)
            self.condition.unlock()
            for producer in producers {
                producer.lock.withLock {
                    producer.scheduled = false
                    producer.pump()
                }
            }
        }
    }
}

/// One partition's producer: submits appends in offset order, at most `inflight` outstanding.
final class Producer: @unchecked Sendable {  // Mutable state is guarded by `lock`.
    let log: StorageLog
    let lock = Lock()
    let parts: [ByteBuffer]
    let durable: Bool
    let inflight: Int
    let deadlineNs: UInt64
    let bytesLimit: Int64
    let done: DispatchGroup
    var nextOffset: Int64 = 0
    var outstanding = 0
    var submittedBytes: Int64 = 0
    var completedBatches: UInt64 = 0
    var failures: [String] = []
    var busyRetries: UInt64 = 0
    var histogram = makeLatencyHistogram()
    var finished = false
    /// Inside pump(): a completion delivered during a submit only updates the counters.
    var pumping = false
    /// Queued on `pumpThread` (completions queue it at most once).
    var scheduled = false
    var pumpThread: PumpThread!

    init(
        log: StorageLog,
        batch: ByteBuffer,
        durable: Bool,
        inflight: Int,
        deadlineNs: UInt64,
        bytesLimit: Int64,
        done: DispatchGroup
    ) {
        self.log = log
        var head = batch
        let first = head.readSlice(length: 16)!
        self.parts = [first, head]
        self.durable = durable
        self.inflight = inflight
        self.deadlineNs = deadlineNs
        self.bytesLimit = bytesLimit
        self.done = done
    }

    /// Durable mode: appends waiting for a sync to cover them, oldest first (end offset, start time).
    var awaitingSync: [(end: Int64, started: UInt64)] = []
    var awaitingSyncHead = 0
    /// Durable mode, like the broker's partitions: at most one sync in flight per log; appends
    /// submitted meanwhile are covered by the next one (group commit within the log — the backend
    /// merges the logs' syncs).
    var syncInFlight = false

    /// Submits while the window has room and time or bytes remain. Called with the lock held.
    func pump() {
        if self.pumping { return }
        self.pumping = true
        defer { self.pumping = false }
        // A backend that completes during the call (memory) frees the window while this runs, so go
        // around until no room is left.
        while self.canSubmit {
            self.submitWindow()
            if self.durable { self.syncIfNeeded() }
        }
        // Past the deadline appends are still waiting for a sync to cover them.
        if self.durable { self.syncIfNeeded() }
        if self.outstanding == 0 && !self.finished {
            self.finished = true
            self.done.leave()
        }
    }

    var canSubmit: Bool {
        self.outstanding < self.inflight && self.failures.isEmpty && nowNs() < self.deadlineNs
            && self.submittedBytes < self.bytesLimit
    }

    private func submitWindow() {
        while self.canSubmit {
            let offset = self.nextOffset
            let started = nowNs()
            self.nextOffset += 1
            self.outstanding += 1
            self.submittedBytes += Int64(self.parts[0].readableBytes + self.parts[1].readableBytes)
            if self.durable { self.awaitingSync.append((offset + 1, started)) }
            self.log.submitAppend(
                firstOffset: offset,
                lastOffset: offset,
                maxTimestamp: Int64(started / 1_000_000),
                parts: self.parts,
                checkedBatch: true
            ) { result in
                if case .failure(let error) = result {
                    if self.durable {
                        // Still counted out by the sync that covers its offset (syncIfNeeded).
                        self.lock.withLock {
                            self.failures.append("append \(offset): \(error)")
                            self.requestPump()
                        }
                    } else {
                        self.completed(started: started, failure: "append \(offset): \(error)")
                    }
                } else if !self.durable {
                    self.completed(started: started, failure: nil)
                }
            }
        }
    }

    /// Issues a sync covering every append submitted so far, unless one is in flight. Lock held.
    func syncIfNeeded() {
        guard !self.syncInFlight, self.awaitingSyncHead < self.awaitingSync.count else { return }
        self.syncInFlight = true
        let covered = self.nextOffset
        self.log.submitSync { result in
            let now = nowNs()
            self.lock.withLock {
                self.syncInFlight = false
                while self.awaitingSyncHead < self.awaitingSync.count,
                    self.awaitingSync[self.awaitingSyncHead].end <= covered
                {
                    let batch = self.awaitingSync[self.awaitingSyncHead]
                    self.awaitingSyncHead += 1
                    self.outstanding -= 1
                    if case .failure(let error) = result {
                        self.failures.append("sync covering \(batch.end - 1): \(error)")
                    } else {
                        self.completedBatches += 1
                        self.histogram.recordLatency(now &- batch.started)
                    }
                }
                if self.awaitingSyncHead > 4096 {
                    self.awaitingSync.removeFirst(self.awaitingSyncHead)
                    self.awaitingSyncHead = 0
                }
                self.requestPump()
            }
        }
    }

    func completed(started: UInt64, failure: String?) {
        let latency = nowNs() &- started
        self.lock.withLock {
            self.outstanding -= 1
            if let failure {
                self.failures.append(failure)
            } else {
                self.completedBatches += 1
                self.histogram.recordLatency(latency)
            }
            self.requestPump()
        }
    }

    /// From a completion, with the lock held: pump again, on the producer's pump thread unless a
    /// pump is running on this thread already (a synchronous backend completes inside submit).
    func requestPump() {
        if self.pumping || self.scheduled { return }
        self.scheduled = true
        self.pumpThread.schedule(self)
    }
}

struct RunResult: Encodable {
    var backend: String
    var partitions: Int
    var batchBytes: Int
    var durable: Bool
    var seconds: Double
    var batches: UInt64
    var megabytesPerSecond: Double
    var batchesPerSecond: Double
    var p50Us: Double
    var p99Us: Double
    var p999Us: Double
    var readMegabytesPerSecond: Double?
    var recoveryMs: Double?
    /// Data appended (GB) over the reopen's time: the recovery rate, the reciprocal of recovery time per GB.
    var recoveryScanGigabytesPerSecond: Double?
    var rssMegabytes: Double
    /// From the backend's own figures (kstore.h KSTORE_CONTROL_STATS; uring so far): physical syncs
    /// (fdatasync rounds) during the append phase, and the rate at which recovery replayed
    /// (checksummed and indexed) the WAL's frames at reopen.
    var fsyncs: UInt64?
    /// From the backend's figures (uring): WAL writes during the append phase, the bytes they wrote (frames and padding),
    /// and whether they were O_DIRECT.
    var writes: UInt64?
    var walBytesWritten: UInt64?
    var direct: Bool?
    var recoveryReplayGigabytesPerSecond: Double?
}

/// One of the backend's own figures (kstore.h KSTORE_CONTROL_STATS), nil when the backend does not
/// report it.
func backendFigure(_ engine: StorageEngine, _ name: String) -> Double? {
    engine.backendStatistics()?.first(where: { $0.name == name })?.value
}

func residentMegabytes() -> Double {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Double(fields[1]) else { return 0 }
    return pages * Double(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576
}

func openEngine(_ backend: StorageBackend, _ options: Options, _ directory: String?) throws -> StorageEngine {
    var engineOptions = options.backendOptions
    if let directory { engineOptions.append((key: "path", value: directory)) }
    return try StorageEngine.open(
        backend: backend,
        options: engineOptions,
        logger: Logger(label: "fjord.bench", factory: { _ in SwiftLogNoOpLogHandler() })
    )
}

func run(_ options: Options) async throws -> RunResult {
    let backend = try StorageBackend.builtin(named: options.backend)
    var directory: String? = nil
    if backend.capabilities.contains(.durable) {
        let base = options.dataDirectory ?? NSTemporaryDirectory()
        directory = (base as NSString).appendingPathComponent("fjord-bench-\(options.backend)-\(getpid())")
        try? FileManager.default.removeItem(atPath: directory!)
        try FileManager.default.createDirectory(atPath: directory!, withIntermediateDirectories: true)
    }
    defer { if let directory { try? FileManager.default.removeItem(atPath: directory) } }
    var engine = try openEngine(backend, options, directory)
    var logs: [StorageLog] = []
    for index in 0..<options.partitions {
        logs.append(try await engine.openLog(named: "bench-\(index)", create: true))
    }
    let batch = makeBenchEntry(byteCount: options.batchBytes)

    let started = nowNs()
    let deadline = options.totalBytes == nil ? started + UInt64(options.durationSeconds * 1e9) : UInt64.max
    let perPartitionBytes = options.totalBytes.map { max($0 / Int64(options.partitions), 1) } ?? Int64.max
    let done = DispatchGroup()
    // At most 32 MiB in flight over all logs (half of the uring backend's default staging, beyond
    // which appends answer BUSY): the window per log shrinks for big batches × many logs.
    let window = max(1, min(options.inflight, (32 << 20) / (options.partitions * options.batchBytes)))
    let producers = logs.map {
        Producer(
            log: $0,
            batch: batch,
            durable: options.durable,
            inflight: window,
            deadlineNs: deadline,
            bytesLimit: perPartitionBytes,
            done: done
        )
    }
    let pumpThreads = (0..<options.pumpThreads).map { PumpThread(name: "bench-pump-\($0)") }
    for (index, producer) in producers.enumerated() {
        done.enter()
        producer.pumpThread = pumpThreads[index % pumpThreads.count]
        producer.lock.withLock { producer.requestPump() }
    }
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        done.notify(queue: .global()) { continuation.resume() }
    }
    let elapsed = Double(nowNs() - started) / 1e9
    let fsyncs = backendFigure(engine, "syncs_total").map { UInt64($0) }
    let writes = backendFigure(engine, "writes_total").map { UInt64($0) }
    let walBytesWritten = backendFigure(engine, "written_bytes_total").map { UInt64($0) }
    let direct = backendFigure(engine, "direct_writes").map { $0 == 1 }
    var histogram = makeLatencyHistogram()
    var batches: UInt64 = 0
    for producer in producers {
        producer.lock.withLock {
            histogram.add(producer.histogram)
            batches += producer.completedBatches
            if let failure = producer.failures.first { fail("log \(producer.log.name): \(failure)") }
        }
    }
    let rss = residentMegabytes()
    let bytes = Double(batches) * Double(options.batchBytes)

    var readRate: Double? = nil
    if options.read {
        let readStarted = nowNs()
        var readBytes = 0
        for log in logs {
            var offset: Int64 = 0
            let end = try log.state().endOffset
            while offset < end {
                let result = try await log.read(from: offset, limit: .max, maxBytes: 1 << 20, minimumOneEntry: true)
                readBytes += result.bytes.readableBytes
                offset = result.nextOffset
            }
        }
        readRate = Double(readBytes) / 1e6 / (Double(nowNs() - readStarted) / 1e9)
    }
    var recoveryMs: Double? = nil
    var scanRate: Double? = nil
    var replayRate: Double? = nil
    if options.recovery && backend.capabilities.contains(.durable) {
        let ends = try logs.map { try $0.state().endOffset }
        await engine.close()
        let reopenStarted = nowNs()
        engine = try openEngine(backend, options, directory)
        var reopened: [StorageLog] = []
        for index in 0..<options.partitions {
            reopened.append(try await engine.openLog(named: "bench-\(index)", create: false))
        }
        let reopenNs = nowNs() - reopenStarted
        recoveryMs = Double(reopenNs) / 1e6
        if let replayBytes = backendFigure(engine, "recovery_replay_bytes"),
            let replaySeconds = backendFigure(engine, "recovery_replay_seconds"), replaySeconds > 0
        {
            replayRate = replayBytes / (replaySeconds * 1e9)
        }
        for (log, end) in zip(reopened, ends) where try log.state().endOffset != end {
            fail("recovered log \(log.name) ends at \(try log.state().endOffset), expected \(end)")
        }
        // Recovery rate: the data appended over the time the reopen took (open dominates it).
        scanRate = bytes / 1e9 / (Double(reopenNs) / 1e9)
        logs = reopened
    }
    for log in logs { await log.close() }
    await engine.close()
    return RunResult(
        backend: options.backend,
        partitions: options.partitions,
        batchBytes: options.batchBytes,
        durable: options.durable,
        seconds: elapsed,
        batches: batches,
        megabytesPerSecond: bytes / 1e6 / elapsed,
        batchesPerSecond: Double(batches) / elapsed,
        p50Us: Double(histogram.valueAtPercentile(50)) / 1e3,
        p99Us: Double(histogram.valueAtPercentile(99)) / 1e3,
        p999Us: Double(histogram.valueAtPercentile(99.9)) / 1e3,
        readMegabytesPerSecond: readRate,
        recoveryMs: recoveryMs,
        recoveryScanGigabytesPerSecond: scanRate,
        rssMegabytes: rss,
        fsyncs: fsyncs,
        writes: writes,
        walBytesWritten: walBytesWritten,
        direct: direct,
        recoveryReplayGigabytesPerSecond: replayRate
    )
}

let options = Options.parse(Array(CommandLine.arguments.dropFirst()))
do {
    let result = try await run(options)
    if options.json {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: try encoder.encode(result), as: UTF8.self))
    } else {
        func f(_ value: Double?, _ digits: Int = 1) -> String {
            value.map { String(format: "%.\(digits)f", $0) } ?? "-"
        }
        print(
            "backend=\(result.backend) partitions=\(result.partitions) batch=\(result.batchBytes)B "
                + "durable=\(result.durable) seconds=\(f(result.seconds, 2)) MB/s=\(f(result.megabytesPerSecond)) "
                + "batches/s=\(f(result.batchesPerSecond, 0)) p50=\(f(result.p50Us))us p99=\(f(result.p99Us))us "
                + "p99.9=\(f(result.p999Us))us read-MB/s=\(f(result.readMegabytesPerSecond)) "
                + "recovery-ms=\(f(result.recoveryMs)) scan-GB/s=\(f(result.recoveryScanGigabytesPerSecond, 2)) "
                + "replay-GB/s=\(f(result.recoveryReplayGigabytesPerSecond, 2)) rss-MB=\(f(result.rssMegabytes)) "
                + "fsyncs=\(result.fsyncs.map(String.init) ?? "-")"
        )
    }
} catch {
    fail("\(error)")
}
