import CKStore
import Foundation
import KStoreFaulty
import Testing

@testable import StorageHost
@testable import StorageTestSupport

#if canImport(Glibc)
import Glibc
#endif

extension FaultyHarness {
    /// Sets the shim's seeded I/O schedule (KSTORE_FAULTY_CONTROL_SET_IO_SCHEDULE).
    func setIOSchedule(_ schedule: kstore_faulty_io_schedule) -> Int32 {
        var schedule = schedule
        return self.engine.control(KSTORE_FAULTY_CONTROL_SET_IO_SCHEDULE, &schedule)
    }
}

/// A seeded I/O schedule that fails `writePpm` of the inner backend's writes with ENOSPC, half of
/// them torn.
func ioSchedule(seed: UInt64, writePpm: UInt32) -> kstore_faulty_io_schedule {
    var schedule = kstore_faulty_io_schedule()
    schedule.struct_size = UInt32(MemoryLayout<kstore_faulty_io_schedule>.size)
    schedule.seed = seed
    schedule.fail_ppm.1 = writePpm  // KSTORE_FAULTY_IO_WRITE
    schedule.error.1 = ENOSPC
    schedule.torn_write_ppm = 500_000
    return schedule
}

/// The faulty shim's I/O-level faults: the kit's fault hook under the inner backend's system calls,
/// armed (FAIL_IO) or seeded (SET_IO_SCHEDULE), replayable by seed.
@Suite("Faulty shim I/O faults")
struct FaultyShimIOTests {
    /// What one seeded run saw: the entries whose appends failed (one element per failed attempt), the
    /// I/O failures the shim counted, and what the log held at the end.
    struct Outcome: Equatable {
        var failedAppends: [Int] = []
        var ioFailures: UInt64 = 0
        var entries: [TestEntry.Parsed] = []
    }

    /// Appends 150 entries to a file-backend log under the schedule, retrying each NO_SPACE (kstore.h:
    /// retryable, the log unchanged), then checks the log holds every entry once, in order.
    static func run(seed: UInt64) async throws -> Outcome {
        let harness = try FaultyHarness(inner: "file", config: faultyConfig(seed: 0))
        var outcome = Outcome()
        do {
            #expect(harness.setIOSchedule(ioSchedule(seed: seed, writePpm: 80_000)) == KSTORE_OK)
            let options = [(key: "segment.bytes", value: "8192"), (key: "index.interval.bytes", value: "512")]
            let log = try await harness.engine.openLog(named: "s", create: true, options: options)
            let plan = FaultyShimTests.plan(count: 150)
            for (index, entry) in plan.enumerated() {
                var attempts = 0
                while true {
                    let code = await storageErrorCode { try await log.appendEntry(entry) }
                    if code == nil { break }
                    #expect(code == .noSpace, "entry \(index): \(String(describing: code))")
                    #expect(try log.state().endOffset == entry.firstOffset)
                    outcome.failedAppends.append(index)
                    attempts += 1
                    try #require(attempts < 50, "entry \(index) never got through")
                }
            }
            #expect(harness.engine.control(KSTORE_FAULTY_CONTROL_CLEAR_IO, nil) == KSTORE_OK)
            try await log.sync()
            outcome.entries = try await log.readAll(from: 0)
            #expect(outcome.entries == plan)
            outcome.ioFailures = harness.stats().io_failures
            await log.close()
        } catch {
            await harness.close()
            throw error
        }
        await harness.close()
        return outcome
    }

    /// The same seed fails the same system calls, so the same appends fail (some torn mid-write) and
    /// the log ends the same; every failed append left the log unchanged and succeeded on retry.
    @Test(arguments: [UInt64(3), 17])
    func theIOScheduleReplaysBySeed(seed: UInt64) async throws {
        print("faulty shim I/O schedule: seed \(seed)")
        let first = try await Self.run(seed: seed)
        let second = try await Self.run(seed: seed)
        #expect(first == second)
        #expect(!first.failedAppends.isEmpty && first.ioFailures >= UInt64(first.failedAppends.count))
    }

    /// Different seeds fail different calls.
    @Test func differentSeedsFailDifferentCalls() async throws {
        let first = try await Self.run(seed: 3)
        let second = try await Self.run(seed: 17)
        #expect(first.failedAppends != second.failedAppends)
    }

    /// An armed fault (skip one write, fail the next with EIO) fails exactly that call: the append
    /// whose write it was fails and the log is failed until reopened; CLEAR_IO disarms what is left.
    @Test func anArmedFaultFailsExactlyTheChosenCall() async throws {
        let harness = try FaultyHarness(inner: "file", config: faultyConfig(seed: 0))
        do {
            var log = try await harness.engine.openLog(named: "a", create: true)
            let plan = FaultyShimTests.plan(count: 4)
            try await log.appendEntry(plan[0])
            #expect(harness.engine.failIO(KSTORE_FAULTY_IO_WRITE, error: EIO, skip: 1, fail: 1) == KSTORE_OK)
            try await log.appendEntry(plan[1])
            #expect(await storageErrorCode { try await log.appendEntry(plan[2]) } == .io)
            #expect(harness.stats().io_failures == 1)
            #expect(await storageErrorCode { try await log.appendEntry(plan[2]) } == .io)
            await log.close()
            #expect(harness.engine.failIO(KSTORE_FAULTY_IO_READ, error: EIO, fail: 1000) == KSTORE_OK)
            #expect(harness.engine.control(KSTORE_FAULTY_CONTROL_CLEAR_IO, nil) == KSTORE_OK)
            log = try await harness.engine.openLog(named: "a", create: false)
            #expect(try await log.readAll(from: 0) == Array(plan[0...1]))
            try await log.appendEntry(plan[2])
            #expect(try await log.readAll(from: 0) == Array(plan[0...2]))
            await log.close()
        } catch {
            await harness.close()
            throw error
        }
        await harness.close()
    }

    /// A backend without the kit's fault hook (memory makes no I/O) refuses I/O faults as
    /// unsupported and says why; a malformed fault is an invalid argument.
    @Test func ioFaultsNeedABackendWithTheFaultHook() async throws {
        let harness = try FaultyHarness(inner: "memory", config: faultyConfig(seed: 0))
        #expect(harness.engine.failIO(KSTORE_FAULTY_IO_WRITE, error: ENOSPC) == KSTORE_ERR_UNSUPPORTED)
        #expect(harness.engine.lastError.contains("takes no I/O fault hook"))
        #expect(harness.setIOSchedule(ioSchedule(seed: 1, writePpm: 1)) == KSTORE_ERR_UNSUPPORTED)
        #expect(harness.engine.failIO(0, error: ENOSPC) == KSTORE_ERR_INVALID_ARGUMENT)
        #expect(harness.engine.failIO(KSTORE_FAULTY_IO_WRITE, error: 0) == KSTORE_ERR_INVALID_ARGUMENT)
        await harness.close()
    }
}
