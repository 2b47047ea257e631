import CKStore
import Foundation
import KStoreFaulty
import NIOCore
import Testing

@testable import StorageHost
@testable import StorageTestSupport

#if canImport(Glibc)
import Glibc
#endif

extension URingFixture {
    /// Sets the faulty shim's seeded I/O schedule (KSTORE_FAULTY_CONTROL_SET_IO_SCHEDULE).
    func setIOSchedule(_ schedule: kstore_faulty_io_schedule) throws {
        try #require(self.faulty, "an I/O schedule needs a fixture opened through the faulty shim")
        var schedule = schedule
        let status = self.engine.control(KSTORE_FAULTY_CONTROL_SET_IO_SCHEDULE, &schedule)
        guard status == KSTORE_OK else { throw self.engine.context.error(status, "SET_IO_SCHEDULE") }
    }

    /// Disarms every I/O fault and clears the schedule (KSTORE_FAULTY_CONTROL_CLEAR_IO).
    func clearIO() throws {
        let status = self.engine.control(KSTORE_FAULTY_CONTROL_CLEAR_IO, nil)
        guard status == KSTORE_OK else { throw self.engine.context.error(status, "CLEAR_IO") }
    }

    /// The I/O calls of the uring instance the shim failed so far.
    func ioFailures() -> UInt64 {
        var stats = kstore_faulty_stats()
        stats.struct_size = UInt32(MemoryLayout<kstore_faulty_stats>.size)
        _ = self.engine.control(KSTORE_FAULTY_CONTROL_STATS, &stats)
        return stats.io_failures
    }
}

/// The uring backend under injected system-call failures, through the faulty shim: the kit's fault
/// hook under the I/O thread's WAL writes and fdatasync rounds and under the maintenance thread's
/// segment preparation. Every case is seeded like the file backend's and the shim's: the seed is
/// printed with the way to replay it, and it picks what the case varies (how much comes before the
/// fault, which call fails, entry sizes, torn or clean failures).
@Suite("uring backend: injected I/O faults", .serialized)
struct URingFaultTests {
    /// FJORD_URING_FAULT_SEED=n replays one seed; FJORD_URING_FAULT_SEEDS=n runs seeds 1...n (default 4).
    static let seeds: [UInt64] = {
        let environment = ProcessInfo.processInfo.environment
        if let replay = environment["FJORD_URING_FAULT_SEED"].flatMap({ UInt64($0) }) { return [replay] }
        let count = environment["FJORD_URING_FAULT_SEEDS"].flatMap { Int($0) } ?? 4
        return (1...max(count, 1)).map { UInt64($0) }
    }()

    static func announce(_ test: String, _ seed: UInt64) {
        print("uring fault test \(test): seed \(seed) (replay: FJORD_URING_FAULT_SEED=\(seed))")
    }

    /// `count` one-offset entries from offset 0 with seeded sizes in `sizes`.
    static func plan(count: Int, sizes: ClosedRange<Int>, _ random: inout SeededGenerator) -> LogPlan {
        var plan = LogPlan()
        for index in 0..<count {
            let offset = Int64(index)
            plan.entries.append(
                TestEntry.Parsed(
                    firstOffset: offset,
                    lastOffset: offset,
                    maxTimestamp: offset,
                    byteCount: Int.random(in: sizes, using: &random)
                )
            )
        }
        return plan
    }

    /// Syncs `log` and checks it holds `entries`, then closes it, reopens the instance (recovery) and
    /// checks the log again.
    static func expectIntactAfterReopening(
        _ fixture: URingFixture,
        _ log: StorageLog,
        _ entries: [TestEntry.Parsed],
        seed: UInt64
    ) async throws {
        try await log.sync()
        #expect(try await log.readAll(from: 0) == entries, "seed \(seed)")
        await log.close()
        try await fixture.reopen()
        let reopened = try await fixture.engine.openLog(named: log.name, create: false)
        #expect(try await reopened.readAll(from: 0) == entries, "seed \(seed)")
        await reopened.close()
    }

    // MARK: WAL writes

    /// A WAL write that fails with ENOSPC (cleanly or torn: half its bytes land first) fails that
    /// append and every later one of the log with NO_SPACE, retryable; the log's end returns to the
    /// first failed offset, the torn bytes never reappear, and appends from there succeed and reopen.
    @Test(arguments: seeds)
    func injectedNoSpaceRollsBackAndAppendsResume(seed: UInt64) async throws {
        Self.announce("no space in a WAL write", seed)
        var random = SeededGenerator(seed: seed)
        let before = Int.random(in: 1...6, using: &random)
        let burst = Int.random(in: 4...16, using: &random)
        let torn = Bool.random(using: &random)
        let plan = Self.plan(count: before + burst, sizes: 64...2_000, &random)
        // fallocate'd segments: the only writes then are the WAL's (zero-filling writes would ask the hook too).
        try await withURing(options: [(key: "uring.segment.zero", value: "fallocate")], faulty: true) { fixture in
            let log = try await fixture.engine.openLog(named: "n", create: true)
            try await log.append(LogPlan(entries: Array(plan.entries[..<before])))
            try fixture.failIO(KSTORE_FAULTY_IO_WRITE, error: ENOSPC, torn: torn)
            let outcomes = Outcomes()
            for entry in plan.entries[before...] {
                log.submitEntry(entry.firstOffset, byteCount: entry.byteCount) {
                    outcomes.record(Int(entry.firstOffset), $0)
                }
            }
            let results = await outcomes.wait(for: burst)
            let ordered = (before..<(before + burst)).map { results[$0] }
            let succeeded = ordered.prefix { (try? $0?.get()) != nil }.count
            #expect(succeeded < burst, "seed \(seed)")
            for result in ordered.dropFirst(succeeded) {
                guard case .failure(let error)? = result else {
                    Issue.record("seed \(seed): an append after the failed one succeeded")
                    continue
                }
                #expect(error.code == .noSpace)
                #expect(error.isRetriable)
            }
            #expect(fixture.ioFailures() == 1)
            try await log.sync()
            let end = before + succeeded
            #expect(try log.state().endOffset == Int64(end), "seed \(seed)")
            for entry in plan.entries[end...] { try await log.appendEntry(entry) }
            try await Self.expectIntactAfterReopening(fixture, log, plan.entries, seed: seed)
        }
    }

    /// A failed fdatasync fails the syncs it covered with IO and the log refuses later appends;
    /// reopening runs recovery and the instance works again.
    @Test(arguments: seeds)
    func injectedFsyncFailureFailsTheSyncAndTheLog(seed: UInt64) async throws {
        Self.announce("failed fdatasync", seed)
        var random = SeededGenerator(seed: seed)
        let plan = Self.plan(count: Int.random(in: 1...20, using: &random), sizes: 64...2_000, &random)
        let end = plan.endOffset
        try await withURing(faulty: true) { fixture in
            let log = try await fixture.engine.openLog(named: "f", create: true)
            for entry in plan.entries { try await log.appendEntry(entry) }
            // Every fsync fails from here on (the maintenance thread's directory fsyncs ask the same hook, so
            // failing only the next one could miss the WAL's round); the reopened instance has no faults.
            try fixture.failIO(KSTORE_FAULTY_IO_SYNC, error: EIO, count: 1_000_000)
            #expect(await storageErrorCode { try await log.sync() } == .io)
            let next = TestEntry.Parsed(firstOffset: end, lastOffset: end, maxTimestamp: end, byteCount: 64)
            #expect(await storageErrorCode { try await log.appendEntry(next) } == .io)
            #expect(await storageErrorCode { try await log.sync() } == .io)
            await log.close()
            try await fixture.reopen()
            let reopened = try await fixture.engine.openLog(named: "f", create: false)
            // Nothing was synced: recovery keeps a prefix of what reached the page cache.
            let recovered = try reopened.state().endOffset
            #expect(recovered <= end, "seed \(seed)")
            #expect(try await reopened.readAll(from: 0) == Array(plan.entries.prefix(Int(recovered))), "seed \(seed)")
            let resumed = TestEntry.Parsed(
                firstOffset: recovered,
                lastOffset: recovered,
                maxTimestamp: 0,
                byteCount: 64
            )
            try await reopened.appendEntry(resumed)
            try await reopened.sync()
            await reopened.close()
        }
    }

    /// What one run under a seeded write schedule saw: the entries whose appends failed (one element
    /// per failed attempt), the I/O failures the shim counted, and what the log held at the end.
    struct ScheduleOutcome: Equatable {
        var failedAppends: [Int] = []
        var ioFailures: UInt64 = 0
        var entries: [TestEntry.Parsed] = []
    }

    /// Appends 150 entries one at a time to one log while the shim's seeded schedule fails 8 % of the
    /// WAL writes with ENOSPC, retrying each NO_SPACE (kstore.h: retryable, the log unchanged); then
    /// the log holds every entry once, in order, and reopens so.
    static func runWriteSchedule(seed: UInt64) async throws -> ScheduleOutcome {
        var outcome = ScheduleOutcome()
        try await withURing(options: [(key: "uring.segment.zero", value: "fallocate")], faulty: true) { fixture in
            // The log first, its catalog frame written and synced: a failed write that took the frame
            // along would stage it again, to be written when the I/O thread gets to it, which timing
            // decides.
            let log = try await fixture.engine.openLog(named: "s", create: true)
            try await log.sync()
            var schedule = kstore_faulty_io_schedule()
            schedule.struct_size = UInt32(MemoryLayout<kstore_faulty_io_schedule>.size)
            schedule.seed = seed
            schedule.fail_ppm.1 = 80_000  // KSTORE_FAULTY_IO_WRITE
            schedule.error.1 = ENOSPC
            try fixture.setIOSchedule(schedule)
            var random = SeededGenerator(seed: seed)
            let plan = Self.plan(count: 150, sizes: 64...4_000, &random)
            for (index, entry) in plan.entries.enumerated() {
                var attempts = 0
                while true {
                    let code = await storageErrorCode { try await log.appendEntry(entry) }
                    if code == nil { break }
                    #expect(code == .noSpace, "seed \(seed), entry \(index): \(String(describing: code))")
                    #expect(try log.state().endOffset == entry.firstOffset, "seed \(seed), entry \(index)")
                    outcome.failedAppends.append(index)
                    attempts += 1
                    try #require(attempts < 50, "seed \(seed): entry \(index) never got through")
                }
            }
            outcome.ioFailures = fixture.ioFailures()
            try fixture.clearIO()
            try await log.sync()
            outcome.entries = try await log.readAll(from: 0)
            try await Self.expectIntactAfterReopening(fixture, log, plan.entries, seed: seed)
        }
        return outcome
    }

    /// The same seed fails the same WAL writes — the calls come in the same order when one log is
    /// appended to one entry at a time — so the same appends fail and the log ends the same.
    @Test(arguments: seeds)
    func aSeededWriteScheduleReplaysBySeed(seed: UInt64) async throws {
        Self.announce("seeded WAL write schedule", seed)
        let first = try await Self.runWriteSchedule(seed: seed)
        let second = try await Self.runWriteSchedule(seed: seed)
        #expect(first.failedAppends == second.failedAppends, "seed \(seed)")
        #expect(first.ioFailures == second.ioFailures, "seed \(seed)")
        #expect(first.entries == second.entries, "seed \(seed)")
        #expect(!first.failedAppends.isEmpty && first.ioFailures >= UInt64(first.failedAppends.count), "seed \(seed)")
    }

    // MARK: Segment preparation

    /// How the instance gets past a segment it could not prepare.
    enum PreparationRecovery: String, CaseIterable, Sendable, CustomTestStringConvertible {
        /// The fault clears: the maintenance thread prepares the segment again (poked by the refused
        /// append, or within 200 ms).
        case faultClears
        /// The instance is closed and opened again (recovery prepares what the WAL needs).
        case reopen
        var testDescription: String { self.rawValue }
    }

    /// When the maintenance thread cannot prepare the next WAL segment (its fallocate fails with
    /// ENOSPC, through the kit's KSTORE_KIT_IO_ALLOCATE hook), the append that needs it fails with
    /// NO_SPACE, retryable, and changes nothing; everything acknowledged before stays readable and
    /// durable; once the fault clears (or after reopening) the same append succeeds, the WAL rolls on
    /// and everything reopens intact.
    @Test(arguments: PreparationRecovery.allCases, seeds)
    func aFailedSegmentPreparationFailsAppendsUntilItClears(recovery: PreparationRecovery, seed: UInt64) async throws {
        Self.announce("failed segment preparation (\(recovery))", seed)
        var random = SeededGenerator(seed: seed)
        let warmup = Int.random(in: 0...40, using: &random)
        let preparedFirst = UInt32.random(in: 0...1, using: &random)
        // 64 KiB segments, entries of 0.5-3 KB: a few hundred entries pass the two spares prepared ahead.
        var plan = Self.plan(count: 2_000, sizes: 500...3_000, &random)
        let options = [(key: "uring.segment.bytes", value: "65536"), (key: "uring.segment.zero", value: "fallocate")]
        try await withURing(options: options, faulty: true) { fixture in
            var log = try await fixture.engine.openLog(named: "p", create: true)
            for entry in plan.entries[..<warmup] { try await log.appendEntry(entry) }
            try fixture.failIO(KSTORE_FAULTY_IO_ALLOCATE, error: ENOSPC, skip: preparedFirst, count: 1_000_000)
            var acknowledged = warmup
            var failure: StorageError? = nil
            while acknowledged < plan.entries.count && failure == nil {
                do {
                    try await log.appendEntry(plan.entries[acknowledged])
                    acknowledged += 1
                } catch let error as StorageError {
                    failure = error
                }
            }
            let error = try #require(failure, "seed \(seed): \(acknowledged) appends and no segment needed")
            print("segment preparation failed after \(acknowledged) entries: \(error)")
            #expect(error.code == .noSpace, "seed \(seed)")
            #expect(error.isRetriable)
            #expect(fixture.ioFailures() >= 1)
            let kept = Array(plan.entries[..<acknowledged])
            #expect(try log.state().endOffset == Int64(acknowledged), "seed \(seed)")
            #expect(try await log.readAll(from: 0) == kept, "seed \(seed)")
            try await log.sync()
            #expect(try log.state().durableEndOffset == Int64(acknowledged), "seed \(seed)")
            // Still failing: the same append is refused again and changes nothing.
            #expect(await storageErrorCode { try await log.appendEntry(plan.entries[acknowledged]) } == .noSpace)
            #expect(try log.state().endOffset == Int64(acknowledged))

            switch recovery {
            case .faultClears:
                try fixture.clearIO()
                // Bounded: the refused append pokes the maintenance thread, which retries at once.
                var resumed = false
                for _ in 0..<250 where !resumed {
                    if await storageErrorCode({ try await log.appendEntry(plan.entries[acknowledged]) }) == nil {
                        resumed = true
                    } else {
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
                #expect(resumed, "seed \(seed): appends did not resume once the fault cleared")
            case .reopen:
                await log.close()
                try await fixture.reopen()
                log = try await fixture.engine.openLog(named: "p", create: false)
                #expect(try log.state().endOffset == Int64(acknowledged), "seed \(seed)")
                #expect(try await log.readAll(from: 0) == kept, "seed \(seed)")
                try await log.appendEntry(plan.entries[acknowledged])
            }
            // The WAL rolls on through several more segments.
            let end = min(plan.entries.count, acknowledged + 200)
            for entry in plan.entries[(acknowledged + 1)..<end] { try await log.appendEntry(entry) }
            plan.entries.removeSubrange(end...)
            try await Self.expectIntactAfterReopening(fixture, log, plan.entries, seed: seed)
        }
    }
}
