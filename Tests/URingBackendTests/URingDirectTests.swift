import CKStore
import Foundation
import KStoreURing
import NIOCore
import StorageBackends
import Testing

@testable import StorageHost
@testable import StorageTestSupport

/// One frame of a uring WAL segment as these tests see it (docs/storage-formats.md ("uring backend"), "Frames").
struct WALFrame: Equatable, Sendable {
    static let data: UInt16 = 1
    static let mark: UInt16 = 6

    var position: Int
    var payloadBytes: Int
    var kind: UInt16
    var logId: UInt64
    var firstOffset: Int64
    var sequence: UInt64
    var durableSequence: UInt64

    var frameBytes: Int { (72 + self.payloadBytes + 7) / 8 * 8 }
    var end: Int { self.position + self.frameBytes }
    /// Direct writes end with a MARK whose zero payload fills the write up to the alignment.
    var isPad: Bool { self.kind == Self.mark && self.payloadBytes > 0 }
}

/// The frames of the segment file at `path` from position 0 while they continue: the magic, the
/// generation in the file's name, consecutive sequences and room in the file. (No CRC check: the
/// tests that use this damage frames on purpose and let recovery judge them.)
func walFrames(_ path: String) throws -> [WALFrame] {
    let bytes = try readFileBytes(path)
    let name = (path as NSString).lastPathComponent
    let generation = try #require(UInt64(name.dropFirst(4).prefix(16), radix: 16))
    func integer<T: FixedWidthInteger>(_ position: Int, _: T.Type) -> T {
        bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: position, as: T.self)) }
    }
    var frames: [WALFrame] = []
    var position = 0
    while position + 72 <= bytes.count, integer(position, UInt32.self) == 0x3157_4A46,
        integer(position + 16, UInt64.self) == generation
    {
        let frame = WALFrame(
            position: position,
            payloadBytes: Int(integer(position + 8, UInt32.self)),
            kind: integer(position + 12, UInt16.self),
            logId: integer(position + 24, UInt64.self),
            firstOffset: integer(position + 32, Int64.self),
            sequence: integer(position + 56, UInt64.self),
            durableSequence: integer(position + 64, UInt64.self)
        )
        if let last = frames.last, frame.sequence != last.sequence + 1 { break }
        guard frame.end <= bytes.count else { break }
        frames.append(frame)
        position = frame.end
    }
    return frames
}

/// Direct mode: the writes of a segment as runs of frames, each ending with its pad frame (a write
/// that happened to end aligned needs no pad and is merged with the next one here).
func walRounds(_ frames: [WALFrame]) -> [[WALFrame]] {
    var rounds: [[WALFrame]] = []
    var current: [WALFrame] = []
    for frame in frames {
        current.append(frame)
        if frame.isPad {
            rounds.append(current)
            current = []
        }
    }
    if !current.isEmpty { rounds.append(current) }
    return rounds
}

extension URingFixture {
    /// Submits entries without syncing and waits until every append completed (readable, written).
    func appendUnsynced(_ log: StorageLog, _ entries: ArraySlice<TestEntry.Parsed>) async throws {
        let outcomes = Outcomes()
        for (index, entry) in entries.enumerated() {
            log.submitAppend(
                firstOffset: entry.firstOffset,
                lastOffset: entry.lastOffset,
                maxTimestamp: entry.maxTimestamp,
                parts: StorageLog.split(
                    TestEntry.make(
                        firstOffset: entry.firstOffset,
                        lastOffset: entry.lastOffset,
                        byteCount: entry.byteCount
                    )
                )
            ) { outcomes.record(index, $0) }
        }
        let results = await outcomes.wait(for: entries.count)
        #expect(results.count == entries.count)
        #expect(results.values.allSatisfy { (try? $0.get()) != nil })
    }
}

/// The WAL written with O_DIRECT (uring.direct, docs/storage-formats.md ("uring backend")): aligned writes that
/// end with pad frames, what recovery makes of torn and missing writes, the buffered fallback, and
/// the read cache that serves the tail now that the page cache does not hold it.
@Suite("uring backend: direct writes and the read cache", .serialized)
struct URingDirectTests {
    /// Whether the temporary directory's file system takes O_DIRECT (ext4 and xfs do; tmpfs does not).
    static let directAvailable: Bool = {
        guard let fixture = try? URingFixture() else { return false }
        let direct = (try? fixture.stats().direct) == 1
        let semaphore = DispatchSemaphore(value: 0)
        Task {
            await fixture.close()
            semaphore.signal()
        }
        semaphore.wait()
        return direct
    }()

    static func walPath(_ directory: String, _ file: String) -> String {
        (directory as NSString).appendingPathComponent(file)
    }

    // MARK: The format

    /// Every direct write starts at a multiple of the alignment and ends with a pad frame up to the
    /// next one, so the WAL stays a gapless run of frames with consecutive sequences; reopening
    /// replays it whole.
    @Test(.enabled(if: directAvailable, "the temporary directory does not take O_DIRECT"))
    func directWritesStartAlignedAndEndWithPadFrames() async throws {
        try await withURing(options: [(key: "uring.write.bytes", value: "16384")]) { fixture in
            let stats = try fixture.stats()
            #expect(stats.direct == 1)
            let align = Int(stats.write_align_bytes)
            #expect(align >= 512 && align & (align - 1) == 0, "alignment \(align)")
            let log = try await fixture.engine.openLog(named: "aligned", create: true)
            var plan = LogPlan()
            for index in 0..<300 { plan.add(offsetCount: 1 + Int64(index % 3), byteCount: 28 + (index * 97) % 2_900) }
            for start in stride(from: 0, to: plan.entries.count, by: 25) {
                try await log.append(
                    LogPlan(entries: Array(plan.entries[..<min(start + 25, plan.entries.count)])),
                    from: start
                )
            }
            let written = try fixture.stats()
            #expect(written.pad_bytes > 0)
            var sequences: [UInt64] = []
            var pads = 0
            for file in fixture.walFiles {
                let frames = try walFrames(Self.walPath(fixture.directory, file))
                for frame in frames where frame.isPad {
                    pads += 1
                    #expect(frame.end % align == 0, "\(file): pad frame at \(frame.position) ends unaligned")
                }
                sequences += frames.map(\.sequence)
            }
            #expect(pads >= 12, "one pad per write: \(pads) for \(written.writes) writes")
            #expect(
                sequences == Array(sequences[0]...(sequences[0] + UInt64(sequences.count) - 1)),
                "gapless sequences"
            )
            let state = try log.state()
            await log.close()
            try await fixture.reopen()
            let reopened = try await fixture.engine.openLog(named: "aligned", create: false)
            #expect(try reopened.state() == state)
            #expect(try await reopened.readAll(from: 0) == plan.entries)
            await reopened.close()
        }
    }

    /// A write torn halfway (its first sectors on disk, garbage after them) loses only the frames it
    /// did not finish, none of them synced; recovery pads the WAL to the alignment and it continues.
    @Test(.enabled(if: directAvailable, "the temporary directory does not take O_DIRECT"))
    func aTornPaddedWriteLosesOnlyItsUnfinishedFrames() async throws {
        try await withURing(options: [(key: "uring.write.bytes", value: "4096")]) { fixture in
            try await Self.recoverWithATornWrite(fixture)
        }
    }

    static func recoverWithATornWrite(_ fixture: URingFixture) async throws {
        let scene = try await CrashScene(fixture)
        defer { scene.remove() }
        let torn = scene.roundsOfB[1]
        let start = torn[0].position
        let end = torn.last!.end
        // Torn at a sector: the first half of the write reached the disk, the rest is garbage.
        let tear = (start + max(512, (end - start) / 2) + 511) / 512 * 512
        try #require(start % 512 == 0 && tear > start && tear < end)
        try patchFile(scene.wal, at: tear, with: (0..<(end - tear)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 0x5B) })
        // What survives: B's frames that ended before the tear.
        let survivingB = scene.frames.filter { $0.kind == WALFrame.data && $0.logId == scene.bId && $0.end <= tear }
            .count
        try await scene.recover(keptB: survivingB)
    }

    /// Several writes in flight complete out of order and the process dies: a later write reached
    /// the disk, an earlier one did not. Recovery keeps the frames before the missing write and
    /// removes the later ones (never synced, so never acknowledged as durable); the WAL continues.
    @Test(.enabled(if: directAvailable, "the temporary directory does not take O_DIRECT"))
    func aCrashWithWritesCompletedOutOfOrderKeepsThePrefix() async throws {
        try await withURing(options: [(key: "uring.write.bytes", value: "4096")]) { fixture in
            try await Self.recoverWithAMissingWrite(fixture)
        }
    }

    static func recoverWithAMissingWrite(_ fixture: URingFixture) async throws {
        let scene = try await CrashScene(fixture)
        defer { scene.remove() }
        // The second write of B never reached the disk (it still reads as the zeros the segment
        // was prepared with); the writes after it did.
        let missing = scene.roundsOfB[1]
        try patchFile(
            scene.wal,
            at: missing[0].position,
            with: [UInt8](repeating: 0, count: missing.last!.end - missing[0].position)
        )
        let keptB = scene.roundsOfB[0].filter { $0.kind == WALFrame.data && $0.logId == scene.bId }.count
        let later = Array(scene.roundsOfB[2...].joined())
        try await scene.recover(keptB: keptB) { () throws -> Void in
            // The later frames were zeroed, so no later recovery can take them for the WAL.
            let left = try Self.framesLeft(scene.wal, later)
            #expect(left == [])
        }
    }

    /// What a crash leaves of an instance that synced log "a" and wrote, without syncing, log "b"
    /// in several writes: a copy of its directory, and the frames of its first segment.
    struct CrashScene {
        let a: StorageLog
        let b: StorageLog
        let planA: LogPlan
        let planB: LogPlan
        let stateA: StorageLogState
        let copy: String
        let wal: String
        let frames: [WALFrame]
        let roundsOfB: [[WALFrame]]
        let bId: UInt64

        init(_ fixture: URingFixture) async throws {
            (self.a, self.b, self.planA, self.planB) = try await URingDirectTests.syncedAAndUnsyncedB(fixture)
            self.stateA = try self.a.state()
            self.copy = try fixture.copyDirectory()
            self.wal = URingDirectTests.walPath(self.copy, fixture.walFiles[0])
            self.frames = try walFrames(self.wal)
            self.roundsOfB = try URingDirectTests.roundsOfB(self.frames, self.planB)
            self.bId = try #require(self.roundsOfB[1].first { $0.kind == WALFrame.data }).logId
        }

        func remove() { try? FileManager.default.removeItem(atPath: self.copy) }

        /// Opens the damaged copy: "a" whole, "b" its first keptB entries, `check` on the files, and
        /// the WAL continues.
        func recover(keptB: Int, check: () throws -> Void = {}) async throws {
            let recovered = try URingFixture(directory: self.copy)
            let reopenedA = try await recovered.engine.openLog(named: "a", create: false)
            let reopenedB = try await recovered.engine.openLog(named: "b", create: false)
            #expect(try reopenedA.state() == self.stateA)
            #expect(try await reopenedA.readAll(from: 0) == self.planA.entries)
            let expectedB = Array(self.planB.entries[..<keptB])
            #expect(try reopenedB.state().endOffset == (expectedB.last?.lastOffset ?? -1) + 1)
            #expect(try reopenedB.state().durableEndOffset == (expectedB.last?.lastOffset ?? -1) + 1)
            #expect(try await reopenedB.readAll(from: 0) == expectedB)
            try check()
            try await URingDirectTests.continueAndReopen(recovered, reopenedA, reopenedB, expectedB: expectedB)
            await self.a.close()
            await self.b.close()
        }
    }

    /// The positions of `frames` whose magic is still in the file.
    static func framesLeft(_ path: String, _ frames: [WALFrame]) throws -> [Int] {
        let bytes = try readFileBytes(path)
        return frames.map(\.position).filter { position in bytes[position..<(position + 4)].contains { $0 != 0 } }
    }

    /// Log "a" with synced entries, then log "b" with entries appended (written) but not synced, in
    /// several writes of at most uring.write.bytes — small enough for the instance's first segment
    /// (1 MiB with direct writes), so the tests edit one file.
    static func syncedAAndUnsyncedB(_ fixture: URingFixture) async throws -> (StorageLog, StorageLog, LogPlan, LogPlan)
    {
        let a = try await fixture.engine.openLog(named: "a", create: true)
        let b = try await fixture.engine.openLog(named: "b", create: true)
        var planA = LogPlan()
        for index in 0..<6 { planA.add(offsetCount: 1, maxTimestamp: Int64(index), byteCount: 300) }
        try await a.append(planA)
        var planB = LogPlan()
        for _ in 0..<16 { planB.add(offsetCount: 2, byteCount: 500) }
        try await fixture.appendUnsynced(b, planB.entries[...])
        return (a, b, planA, planB)
    }

    /// The writes (rounds) holding B's entries: all of B in this segment, in at least 3 writes.
    static func roundsOfB(_ frames: [WALFrame], _ planB: LogPlan) throws -> [[WALFrame]] {
        let data = frames.filter { $0.kind == WALFrame.data }
        let aId = try #require(data.first).logId
        let ofB = data.filter { $0.logId != aId }
        try #require(
            ofB.map(\.firstOffset) == planB.entries.map(\.firstOffset),
            "B's frames are all in the first segment"
        )
        let rounds = walRounds(frames).filter { $0.contains { $0.kind == WALFrame.data && $0.logId != aId } }
        try #require(rounds.count >= 3, "B was written in \(rounds.count) writes")
        return rounds
    }

    /// After recovery the WAL takes appends again, and they survive another reopen.
    static func continueAndReopen(
        _ recovered: URingFixture,
        _ a: StorageLog,
        _ b: StorageLog,
        expectedB: [TestEntry.Parsed]
    ) async throws {
        var plan = LogPlan(entries: expectedB)
        plan.add(offsetCount: 1, byteCount: 900)
        try await b.append(plan, from: expectedB.count)
        #expect(try await b.readAll(from: 0) == plan.entries)
        await a.close()
        await b.close()
        try await recovered.reopen()
        let again = try await recovered.engine.openLog(named: "b", create: false)
        #expect(try await again.readAll(from: 0) == plan.entries)
        await again.close()
        await recovered.engine.close()
    }

    // MARK: Modes

    /// With uring.direct=off the WAL is written through the page cache, without pad frames; a data
    /// directory written in either mode opens, continues and reads back in the other.
    @Test func eitherModeReadsTheOthersDataDirectory() async throws {
        let directory = URingFixture.newDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var plan = LogPlan()
        for index in 0..<120 { plan.add(offsetCount: 1, maxTimestamp: Int64(index), byteCount: 100 + index * 13) }
        for (round, mode) in ["off", "auto", "off", "auto"].enumerated() {
            let fixture = try URingFixture(directory: directory, options: [(key: "uring.direct", value: mode)])
            let stats = try fixture.stats()
            if mode == "off" {
                #expect(stats.direct == 0)
                #expect(stats.write_align_bytes == 8)
            } else {
                #expect(stats.direct == (Self.directAvailable ? 1 : 0))
            }
            let log = try await fixture.engine.openLog(named: "modes", create: true)
            let done = round * 30
            #expect(try await log.readAll(from: 0) == Array(plan.entries[..<done]), "reopened in mode \(mode)")
            try await log.append(LogPlan(entries: Array(plan.entries[..<(done + 30)])), from: done)
            if mode == "off" { #expect(try fixture.stats().pad_bytes == 0, "buffered writes have no pad frames") }
            await log.close()
            await fixture.engine.close()
        }
        let last = try URingFixture(directory: directory)
        let log = try await last.engine.openLog(named: "modes", create: false)
        #expect(try await log.readAll(from: 0) == plan.entries)
        await log.close()
        await last.engine.close()
    }

    /// Where the file system takes no O_DIRECT — a tmpfs, which the disk-full tests use — auto
    /// writes buffered (no alignment, no pad frames) and everything works as before; on either works
    /// (this kernel's tmpfs takes O_DIRECT) or is refused with a message naming the option.
    @Test(.enabled(if: URingTests.tmpfsMountable, "mounting a tmpfs is not permitted here"))
    func aFileSystemWithoutDirectIOFallsBackToBufferedWrites() async throws {
        let directory = URingFixture.newDirectory()
        #expect(URingTests.run("/bin/mount", ["-t", "tmpfs", "-o", "size=64m", "tmpfs", directory]))
        defer {
            _ = URingTests.run("/bin/umount", [directory])
            try? FileManager.default.removeItem(atPath: directory)
        }
        var plan = LogPlan()
        for index in 0..<200 { plan.add(offsetCount: 1, maxTimestamp: Int64(index), byteCount: 700) }
        // Small segments: a direct instance's young segments start at 1 MiB and double per generation.
        let small = (key: "uring.segment.bytes", value: "2097152")
        let fixture = try URingFixture(directory: directory, options: [small])
        let stats = try fixture.stats()
        #expect(stats.direct == 0)
        #expect(stats.write_align_bytes == 8)
        let log = try await fixture.engine.openLog(named: "tmpfs", create: true)
        try await log.append(LogPlan(entries: Array(plan.entries[..<100])))
        #expect(try fixture.stats().pad_bytes == 0)
        #expect(try fixture.walFiles.flatMap { try walFrames(Self.walPath(directory, $0)) }.allSatisfy { !$0.isPad })
        await log.close()
        await fixture.engine.close()

        let forced: URingFixture?
        do {
            forced = try URingFixture(directory: directory, options: [small, (key: "uring.direct", value: "on")])
        } catch let error as StorageError {
            #expect(error.code == .unsupported)
            #expect(error.message.contains("uring.direct=on"), "\(error.message)")
            forced = nil
            plan = LogPlan(entries: Array(plan.entries[..<100]))
        }
        if let forced {
            #expect(try forced.stats().direct == 1)
            let reopened = try await forced.engine.openLog(named: "tmpfs", create: false)
            #expect(try await reopened.readAll(from: 0) == Array(plan.entries[..<100]))
            try await reopened.append(plan, from: 100)
            await reopened.close()
            await forced.engine.close()
        }
        let last = try URingFixture(directory: directory, options: [small])
        let again = try await last.engine.openLog(named: "tmpfs", create: false)
        #expect(try await again.readAll(from: 0) == plan.entries)
        await again.close()
        await last.engine.close()
    }

    /// Bad values of the new options are refused at open.
    @Test(arguments: [
        ("uring.direct", "sometimes"), ("uring.read.cache.bytes", "-1"), ("uring.read.cache.bytes", "lots"),
        ("uring.segment.zero", "never"),
    ])
    func badDirectAndCacheOptionsAreRefused(key: String, value: String) throws {
        let directory = URingFixture.newDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect {
            _ = try URingFixture.open([(key: "path", value: directory), (key: key, value: value)])
        } throws: { error in
            guard let error = error as? StorageError else { return false }
            return error.code == .invalidArgument && error.message.contains(key)
        }
    }

    // MARK: The read cache

    /// Reads of the tail copy from the read cache, older entries come from the files, and both give
    /// exactly the bytes a read from the files alone gives (after reopening, and with the cache off).
    @Test func readsFromTheCacheAndFromTheFilesAgreeByteForByte() async throws {
        let options = [(key: "uring.read.cache.bytes", value: "262144"), (key: "uring.write.bytes", value: "16384")]
        try await withURing(options: options) { fixture in
            let log = try await fixture.engine.openLog(named: "cached", create: true)
            var plan = LogPlan()
            for index in 0..<500 {
                plan.add(
                    offsetCount: 1 + Int64(index % 4),
                    maxTimestamp: Int64(index),
                    byteCount: 300 + (index * 131) % 3_000
                )
            }
            for start in stride(from: 0, to: plan.entries.count, by: 50) {
                try await log.append(LogPlan(entries: Array(plan.entries[..<(start + 50)])), from: start)
            }
            let before = try fixture.stats()
            let cachedRead = try await Self.readBytes(log, from: 0)
            let after = try fixture.stats()
            #expect(after.read_cache_bytes > 0 && after.read_cache_bytes <= 262_144)
            #expect(after.read_cache_hits > before.read_cache_hits, "the tail came from the cache")
            #expect(after.read_cache_misses > before.read_cache_misses, "older entries came from the files")
            #expect(try TestEntry.parse(cachedRead) == plan.entries)
            // The tail alone: every frame from the cache.
            let tailStart = plan.entries[plan.entries.count - 20].firstOffset
            let tailBefore = try fixture.stats()
            let tail = try await Self.readBytes(log, from: tailStart)
            let tailAfter = try fixture.stats()
            #expect(tailAfter.read_cache_misses == tailBefore.read_cache_misses)
            #expect(tailAfter.read_cache_hits - tailBefore.read_cache_hits == 20)
            await log.close()

            try await fixture.reopen()
            let reopened = try await fixture.engine.openLog(named: "cached", create: false)
            let fileRead = try await Self.readBytes(reopened, from: 0)
            #expect(try fixture.stats().read_cache_hits == 0, "a reopened instance reads from the files")
            #expect(fileRead == cachedRead)
            #expect(try await Self.readBytes(reopened, from: tailStart) == tail)
            await reopened.close()
        }
        try await withURing(options: [(key: "uring.read.cache.bytes", value: "0")]) { fixture in
            let log = try await fixture.engine.openLog(named: "uncached", create: true)
            var plan = LogPlan()
            for index in 0..<50 { plan.add(offsetCount: 1, byteCount: 200 + index * 7) }
            try await log.append(plan)
            #expect(try await log.readAll(from: 0) == plan.entries)
            let stats = try fixture.stats()
            #expect(stats.read_cache_hits == 0 && stats.read_cache_bytes == 0)
            #expect(stats.read_cache_misses >= 50)
            await log.close()
        }
    }

    /// Everything from `offset` to the end, read in pieces of at most 64 KiB as a consumer does.
    static func readBytes(_ log: StorageLog, from offset: Int64) async throws -> ByteBuffer {
        var bytes = ByteBufferAllocator().buffer(capacity: 0)
        var next = offset
        let end = try log.state().endOffset
        while next < end {
            let result = try await log.read(from: next, limit: .max, maxBytes: 65_536, minimumOneEntry: true)
            var piece = result.bytes
            bytes.writeBuffer(&piece)
            next = result.nextOffset
        }
        return bytes
    }
}
