import CKStore
import Foundation
import KStoreFaulty
import KStoreFile
import NIOCore
import Testing

@testable import StorageHost
@testable import StorageTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Behaviour of the plain-file backend beyond the shared conformance suite: recovery, indexes,
/// segments, retention, the data directory, real and injected I/O failures, bounded memory.
@Suite("File backend")
struct FileBackendTests {
    /// Small segments and a small index interval, so a few hundred entries exercise rolling and the
    /// sparse indexes.
    static let smallSegments = [(key: "segment.bytes", value: "4096"), (key: "index.interval.bytes", value: "256")]

    /// `count` entries of 1...3 offsets, 60...459 bytes, rising timestamps (every 17th entry without
    /// one unless `untimed` is false).
    static func plan(count: Int, untimed: Bool = true) -> LogPlan {
        var plan = LogPlan()
        for index in 0..<count {
            let timestamp: Int64 = untimed && index % 17 == 5 ? -1 : Int64(1_000 + index * 10 + (index * 7) % 13)
            plan.add(offsetCount: Int64(index % 3 + 1), maxTimestamp: timestamp, byteCount: 60 + (index * 37) % 400)
        }
        return plan
    }

    static func open(_ scratch: ScratchDirectory) throws -> StorageEngine {
        try openEngine(try fileBackend(), path: scratch.path)
    }

    /// What a torn write leaves behind the last whole frame.
    enum TornTail: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case zeros, partialHeader, badChecksum, garbage
        var testDescription: String { self.rawValue }
    }

    /// A torn tail (zeros, a partial header, a frame with a bad checksum, garbage) after a crash is
    /// cut off at open: the log holds exactly what was synced, the file its old length, and appends
    /// continue.
    @Test(arguments: TornTail.allCases)
    func aTornTailIsTruncatedAtOpen(tail: TornTail) async throws {
        let scratch = try ScratchDirectory("file-torn")
        defer { scratch.remove() }
        var engine = try Self.open(scratch)
        let plan = Self.plan(count: 200)
        var log = try await engine.openLog(named: "t", create: true, options: Self.smallSegments)
        try await log.append(plan)
        let state = try log.state()
        await log.close()
        await engine.close()

        let last = scratch.file("logs/t/" + segmentFiles(scratch.path, log: "t").last!)
        let size = fileSize(last)
        let segment = try readFileBytes(last)
        var generator = SeededGenerator(seed: 7)
        let garbage: [UInt8]
        switch tail {
        case .zeros: garbage = [UInt8](repeating: 0, count: 300)
        case .partialHeader: garbage = Array(segment.prefix(20))
        case .badChecksum:
            // A copy of the segment's first frame with one payload byte changed.
            let payloadBytes = Int(segment[8]) | Int(segment[9]) << 8
            var frame = Array(segment.prefix(40 + payloadBytes))
            frame[45] ^= 0x40
            garbage = frame
        case .garbage: garbage = (0..<1_000).map { _ in UInt8.random(in: 0...255, using: &generator) }
        }
        try appendBytes(garbage, to: last)
        // As after a crash: the log was not closed cleanly.
        try FileManager.default.removeItem(atPath: scratch.file("logs/t/clean-shutdown"))

        engine = try Self.open(scratch)
        log = try await engine.openLog(named: "t", create: false, options: Self.smallSegments)
        #expect(try log.state() == state)
        #expect(fileSize(last) == size)
        let info = try #require(log.recoveryInfo())
        #expect(info.clean == 0)
        #expect(info.truncated_bytes == UInt64(garbage.count))
        #expect(try await log.readAll(from: 0) == plan.entries)
        var next = plan
        next.add(offsetCount: 2, maxTimestamp: 5, byteCount: 99)
        try await log.append(next, from: plan.entries.count)
        #expect(try await log.readAll(from: 0) == next.entries)
        await log.close()
        await engine.close()
    }

    /// After a clean close every frame was synced, so bytes that do not belong there are damage:
    /// open_log answers CORRUPT and names the file and position instead of dropping anything.
    @Test func garbageAfterACleanCloseIsCorruption() async throws {
        let scratch = try ScratchDirectory("file-clean-garbage")
        defer { scratch.remove() }
        var engine = try Self.open(scratch)
        var log = try await engine.openLog(named: "c", create: true)
        try await log.append(Self.plan(count: 20))
        await log.close()
        await engine.close()
        let segment = segmentFiles(scratch.path, log: "c").last!
        let size = fileSize(scratch.file("logs/c/" + segment))
        try appendBytes([UInt8](repeating: 0xEE, count: 64), to: scratch.file("logs/c/" + segment))
        engine = try Self.open(scratch)
        do {
            log = try await engine.openLog(named: "c", create: false)
            Issue.record("garbage after a clean close was accepted")
            await log.close()
        } catch let error as StorageError {
            #expect(error.code == .corrupt)
            #expect(error.message.contains(segment) && error.message.contains("position \(size)"))
        }
        await engine.close()
    }

    /// How the index files are damaged.
    enum IndexDamage: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case deleted, emptied, summaryOverwritten, entriesOverwritten, timeEntriesOverwritten
        var testDescription: String { self.rawValue }
    }

    /// Indexes are derived data: deleted or damaged index files are rebuilt (or bypassed) and reads
    /// and time lookups stay correct.
    @Test(arguments: IndexDamage.allCases)
    func damagedIndexesAreRebuiltAndReadsStayCorrect(damage: IndexDamage) async throws {
        let scratch = try ScratchDirectory("file-index")
        defer { scratch.remove() }
        var engine = try Self.open(scratch)
        let options = [(key: "segment.bytes", value: "16384"), (key: "index.interval.bytes", value: "256")]
        let plan = Self.plan(count: 600)
        var log = try await engine.openLog(named: "i", create: true, options: options)
        try await log.append(plan)
        let state = try log.state()
        await log.close()
        await engine.close()

        let directory = scratch.file("logs/i")
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
        let indexes = names.filter { $0.hasSuffix(".index") }
        let timeIndexes = names.filter { $0.hasSuffix(".timeindex") }
        #expect(indexes.count > 3)
        for name in indexes + timeIndexes {
            let path = directory + "/" + name
            let isTime = name.hasSuffix(".timeindex")
            switch damage {
            case .deleted: try FileManager.default.removeItem(atPath: path)
            case .emptied: truncate(path, 0)
            case .summaryOverwritten: if !isTime { try overwrite(path, at: 10, with: [1, 2, 3, 4]) }
            case .entriesOverwritten:
                if !isTime && fileSize(path) > 64 + 32 * 12 {
                    try overwrite(path, at: 64 + 32 * 3, with: [UInt8](repeating: 0xAB, count: 32 * 6))
                }
            case .timeEntriesOverwritten:
                if isTime && fileSize(path) > 32 * 8 {
                    try overwrite(path, at: 32, with: [UInt8](repeating: 0x5C, count: 32 * 4))
                }
            }
        }

        for round in 0..<2 {
            engine = try Self.open(scratch)
            log = try await engine.openLog(named: "i", create: false, options: options)
            #expect(try log.state() == state, "round \(round)")
            if round == 0 && [.deleted, .emptied, .summaryOverwritten].contains(damage) {
                #expect(try #require(log.recoveryInfo()).rebuilt_index_count >= UInt64(indexes.count))
            }
            for offset in stride(from: Int64(0), to: plan.endOffset, by: 7) {
                let result = try await log.read(from: offset, limit: .max, maxBytes: 1_000, minimumOneEntry: true)
                let entries = try TestEntry.parse(result.bytes)
                let index = try #require(plan.index(containing: offset))
                #expect(entries.first == plan.entries[index], "offset \(offset)")
                #expect(entries == Array(plan.entries[index..<(index + entries.count)]))
            }
            for query: Int64 in [-1, 0, 999, 1_000, 1_500, 2_345, 4_000, 6_000, 6_990, 7_000] {
                let expected = plan.entries.first { $0.maxTimestamp >= query }?.firstOffset
                #expect(try await log.findOffset(atOrAfterTimestamp: query) == expected, "timestamp \(query)")
            }
            await log.close()
            await engine.close()
        }
    }

    /// A segment rolls before an entry would take it past segment.bytes; segment files are named by
    /// the first offset they hold; everything survives reopening.
    @Test func segmentsRollWhenFull() async throws {
        let scratch = try ScratchDirectory("file-roll")
        defer { scratch.remove() }
        var engine = try Self.open(scratch)
        let plan = Self.plan(count: 300)
        var log = try await engine.openLog(named: "r", create: true, options: Self.smallSegments)
        try await log.append(plan)
        let state = try log.state()
        let segments = segmentFiles(scratch.path, log: "r")
        let firstOffsets = Set(plan.entries.map(\.firstOffset))
        #expect(segments.count > 10)
        var total = 0
        for name in segments {
            let base = try #require(Int64(name.dropLast(4)))
            #expect(firstOffsets.contains(base), "\(name)")
            let size = fileSize(scratch.file("logs/r/" + name))
            #expect(size <= 4_096, "\(name)")
            total += size
        }
        #expect(segments.first == String(format: "%020lld.log", 0))
        #expect(total == plan.entries.reduce(0) { $0 + $1.byteCount + 40 })
        await log.close()
        await engine.close()
        engine = try Self.open(scratch)
        log = try await engine.openLog(named: "r", create: false, options: Self.smallSegments)
        #expect(try log.state() == state)
        #expect(try #require(log.recoveryInfo()).clean == 1)
        #expect(try await log.readAll(from: 0) == plan.entries)
        await log.close()
        await engine.close()
    }

    /// A segment rolls once its first entry is segment.ms old.
    @Test func segmentsRollWhenOld() async throws {
        let scratch = try ScratchDirectory("file-roll-time")
        defer { scratch.remove() }
        let engine = try Self.open(scratch)
        let log = try await engine.openLog(named: "t", create: true, options: [(key: "segment.ms", value: "300")])
        var plan = LogPlan()
        for _ in 0..<3 { plan.add(offsetCount: 2, maxTimestamp: 1) }
        try await log.append(plan)
        #expect(segmentFiles(scratch.path, log: "t").count == 1)
        try await Task.sleep(for: .milliseconds(400))
        plan.add(offsetCount: 1, maxTimestamp: 2)
        plan.add(offsetCount: 1, maxTimestamp: 3)
        try await log.append(plan, from: 3)
        #expect(
            segmentFiles(scratch.path, log: "t") == [
                String(format: "%020lld.log", 0), String(format: "%020lld.log", 6),
            ]
        )
        #expect(try await log.readAll(from: 0) == plan.entries)
        await log.close()
        await engine.close()
    }

    /// Retention by bytes and by time deletes whole segments from the oldest; the new start is the
    /// oldest remaining segment's base, reads below it are out of range, and the start survives
    /// reopening, as does a delete_before inside a segment.
    @Test func retentionDeletesWholeSegments() async throws {
        let scratch = try ScratchDirectory("file-retention")
        defer { scratch.remove() }
        var engine = try Self.open(scratch)
        // Without untimed entries: a segment holding one never expires by time.
        let plan = Self.plan(count: 300, untimed: false)
        var log = try await engine.openLog(named: "k", create: true, options: Self.smallSegments)
        try await log.append(plan)
        let before = segmentFiles(scratch.path, log: "k")
        let bases = before.compactMap { Int64($0.dropLast(4)) }

        let bySize = try await log.enforceRetention(retainBytes: Int64(plan.byteCount / 2), retainAfterTimestamp: -1)
        #expect(bases.contains(bySize) && bySize > 0)
        var after = segmentFiles(scratch.path, log: "k")
        #expect(after == before.filter { Int64($0.dropLast(4))! >= bySize })
        let kept = plan.entries.filter { $0.firstOffset >= bySize }
        #expect(try log.state().byteCount == kept.reduce(0) { $0 + UInt64($1.byteCount) })
        #expect(try log.state().byteCount <= plan.byteCount / 2)
        #expect(
            await storageErrorCode {
                _ = try await log.read(from: bySize - 1, limit: .max, maxBytes: 100, minimumOneEntry: true)
            }
                == .outOfRange
        )
        #expect(try await log.readAll(from: bySize) == kept)

        // By time: every segment whose entries all lie below the threshold (and carry timestamps).
        let threshold = plan.entries[200].maxTimestamp
        let byTime = try await log.enforceRetention(retainBytes: -1, retainAfterTimestamp: threshold)
        after = segmentFiles(scratch.path, log: "k")
        let firstKept = try #require(after.first.flatMap { Int64($0.dropLast(4)) })
        #expect(byTime == firstKept && byTime > bySize)
        // The first remaining segment holds an entry at or above the threshold or without a timestamp.
        let nextBase = after.dropFirst().first.flatMap { Int64($0.dropLast(4)) } ?? plan.endOffset
        #expect(
            plan.entries.contains {
                $0.firstOffset >= byTime && $0.firstOffset < nextBase
                    && ($0.maxTimestamp >= threshold || $0.maxTimestamp < 0)
            }
        )
        #expect(try await log.readAll(from: byTime) == plan.entries.filter { $0.firstOffset >= byTime })

        // delete_before inside a segment is kept in the start-offset file.
        let inside = plan.entries[250].firstOffset + 1
        try await log.deleteBefore(inside)
        let state = try log.state()
        #expect(state.startOffset == inside)
        await log.close()
        await engine.close()
        engine = try Self.open(scratch)
        log = try await engine.openLog(named: "k", create: false, options: Self.smallSegments)
        #expect(try log.state() == state)
        #expect(try await log.readAll(from: inside) == Array(plan.entries[250...]))
        await log.close()
        await engine.close()
    }

    // MARK: The data directory

    /// A data directory that does not exist is NOT_FOUND, with a message naming it.
    @Test func aMissingDataDirectoryIsNotFound() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fjord-missing-\(UUID())").path
        #expect {
            try openEngine(try fileBackend(), path: path)
        } throws: { error in
            guard let error = error as? StorageError else { return false }
            return error.code == .notFound && error.message.contains("data directory \(path) does not exist")
        }
    }

    /// A data directory on a read-only file system is an I/O error saying it is not writable. (Root
    /// ignores permission bits, so a read-only tmpfs stands in for chmod 0500.)
    @Test(.enabled(if: canMountTemporaryFilesystems, "mounting a tmpfs needs root with CAP_SYS_ADMIN"))
    func aReadOnlyDataDirectoryIsNotWritable() throws {
        let scratch = try ScratchDirectory("file-ro")
        defer { scratch.remove() }
        try #require(mountTemporaryFilesystem(at: scratch.path, options: "ro,size=1m"))
        defer { unmountFilesystem(at: scratch.path) }
        #expect {
            try openEngine(try fileBackend(), path: scratch.path)
        } throws: { error in
            guard let error = error as? StorageError else { return false }
            return error.code == .io && error.message.contains("data directory \(scratch.path) is not writable")
        }
    }

    /// A second instance on the same data directory is BUSY and names the holder's pid; once the
    /// first closes, the directory opens.
    @Test func aLockedDataDirectoryIsBusy() async throws {
        let scratch = try ScratchDirectory("file-lock")
        defer { scratch.remove() }
        let first = try Self.open(scratch)
        #expect {
            try Self.open(scratch)
        } throws: { error in
            guard let error = error as? StorageError else { return false }
            return error.code == .busy && error.isRetriable
                && error.message.contains(
                    "data directory \(scratch.path) is locked by another process (pid \(getpid()))"
                )
        }
        await first.close()
        let second = try Self.open(scratch)
        await second.close()
    }

    /// A data directory marked by another backend, or by another format of this one, is refused.
    @Test(arguments: ["uring 1\n", "file 2\n"])
    func aDirectoryOfAnotherBackendIsRefused(marker: String) throws {
        let scratch = try ScratchDirectory("file-marker")
        defer { scratch.remove() }
        try marker.write(toFile: scratch.file(".fjord-backend"), atomically: false, encoding: .utf8)
        #expect {
            try Self.open(scratch)
        } throws: { error in
            guard let error = error as? StorageError else { return false }
            let owner = marker.hasPrefix("uring") ? "holds data of backend 'uring'" : "in format '2'"
            return error.code == .invalidArgument && error.message.contains(owner)
        }
    }

    // MARK: Running out of space and failing I/O

    /// On a really full file system (a 2 MiB tmpfs) appends answer NO_SPACE, retryable, and leave the
    /// log intact and readable; once retention frees space, appends succeed again, and the log
    /// reopens.
    @Test(.enabled(if: canMountTemporaryFilesystems, "mounting a tmpfs needs root with CAP_SYS_ADMIN"))
    func aFullFileSystemAnswersNoSpaceAndRecovers() async throws {
        let scratch = try ScratchDirectory("file-full")
        defer { scratch.remove() }
        try #require(mountTemporaryFilesystem(at: scratch.path, options: "size=2m"))
        defer { unmountFilesystem(at: scratch.path) }
        var engine = try Self.open(scratch)
        let options = [(key: "segment.bytes", value: "262144")]
        var log = try await engine.openLog(named: "full", create: true, options: options)
        var plan = LogPlan()
        var failure: StorageError? = nil
        for index in 0..<1_000 {
            plan.add(offsetCount: 4, maxTimestamp: Int64(index), byteCount: 16_384 + index)
            do {
                try await log.appendEntry(plan.entries.last!)
            } catch let error as StorageError {
                failure = error
                plan.entries.removeLast()
                break
            }
        }
        let error = try #require(failure)
        #expect(error.code == .noSpace && error.isRetriable)
        print(
            "file backend: a 2 MiB tmpfs took \(plan.entries.count) entries (\(plan.byteCount) bytes) before NO_SPACE"
        )
        #expect(try log.state().endOffset == plan.endOffset)
        #expect(try await log.readAll(from: 0) == plan.entries)
        // Still full: the same append fails the same way and changes nothing.
        var next = plan
        next.add(offsetCount: 4, maxTimestamp: 5_000, byteCount: 16_384)
        #expect(await storageErrorCode { try await log.appendEntry(next.entries.last!) } == .noSpace)
        #expect(try log.state().endOffset == plan.endOffset)
        // Retention frees whole segments; then appends succeed again.
        let start = try await log.enforceRetention(retainBytes: Int64(plan.byteCount / 2), retainAfterTimestamp: -1)
        #expect(start > 0)
        for _ in 0..<5 {
            try await log.appendEntry(next.entries.last!)
            next.add(offsetCount: 4, maxTimestamp: 5_000, byteCount: 16_384)
        }
        next.entries.removeLast()
        try await log.sync()
        let kept = next.entries.filter { $0.firstOffset >= start }
        #expect(try await log.readAll(from: start) == kept)
        let state = try log.state()
        await log.close()
        await engine.close()
        engine = try Self.open(scratch)
        log = try await engine.openLog(named: "full", create: false, options: options)
        #expect(try log.state() == state)
        #expect(try await log.readAll(from: start) == kept)
        await log.close()
        await engine.close()
    }

    /// Faults injected into the backend's system calls, through the faulty shim's I/O controls (the
    /// kit's fault hook under every system call of the file backend).
    enum InjectedFault: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case noSpaceWritingTheFrame, shortWriteThenNoSpace, noSpaceWritingTheIndex, noSpaceCreatingASegment
        case ioWritingTheFrame, ioInFdatasync
        var testDescription: String { self.rawValue }
    }

    /// NO_SPACE leaves the log unchanged (the segment and its indexes are cut back) and the same
    /// append succeeds on retry; IO fails the log until it is reopened, which recovers it.
    @Test(arguments: InjectedFault.allCases)
    func injectedFaultsFollowTheAppendContract(fault: InjectedFault) async throws {
        let scratch = try ScratchDirectory("file-fault")
        defer { scratch.remove() }
        let engine = try openEngine(try faultyFileBackend(), path: scratch.path)
        // Every 300-byte entry passes the 256-byte index interval, so each append writes an index entry;
        // 20 entries of 340 framed bytes fill two 3400-byte segments, so the next append rolls (only in
        // the case that fails the roll: a roll writes the old segment's summary first).
        let segmentLimit = fault == .noSpaceCreatingASegment ? "3400" : "1048576"
        let options = [(key: "segment.bytes", value: segmentLimit), (key: "index.interval.bytes", value: "256")]
        var log = try await engine.openLog(named: "f", create: true, options: options)
        var plan = LogPlan()
        for index in 0..<20 { plan.add(offsetCount: 2, maxTimestamp: Int64(index), byteCount: 300) }
        try await log.append(plan)
        let state = try log.state()
        let segment = scratch.file("logs/f/" + segmentFiles(scratch.path, log: "f").last!)
        let segmentBytes = fileSize(segment)
        plan.add(offsetCount: 2, maxTimestamp: 99, byteCount: 300)
        let entry = plan.entries.last!

        switch fault {
        case .noSpaceWritingTheFrame, .shortWriteThenNoSpace, .noSpaceWritingTheIndex, .noSpaceCreatingASegment:
            let status: Int32
            switch fault {
            case .noSpaceWritingTheFrame:
                status = engine.failIO(KSTORE_FAULTY_IO_WRITE, error: ENOSPC)
            case .shortWriteThenNoSpace:
                status = engine.failIO(KSTORE_FAULTY_IO_WRITE, error: ENOSPC, torn: true)
            case .noSpaceWritingTheIndex:
                status = engine.failIO(KSTORE_FAULTY_IO_WRITE, error: ENOSPC, skip: 1)
            default:
                status = engine.failIO(KSTORE_FAULTY_IO_OPEN, error: ENOSPC)
            }
            #expect(status == KSTORE_OK)
            let code = await storageErrorCode { try await log.appendEntry(entry) }
            #expect(code == .noSpace)
            #expect(try log.state() == state)
            #expect(fileSize(segment) == segmentBytes)
            #expect(engine.lastError.contains("log 'f'"))
            try await log.appendEntry(entry)
            try await log.sync()
            #expect(try await log.readAll(from: 0) == plan.entries)
        case .ioWritingTheFrame, .ioInFdatasync:
            if fault == .ioWritingTheFrame {
                #expect(engine.failIO(KSTORE_FAULTY_IO_WRITE, error: EIO) == KSTORE_OK)
                #expect(await storageErrorCode { try await log.appendEntry(entry) } == .io)
            } else {
                try await log.appendEntry(entry)
                #expect(engine.failIO(KSTORE_FAULTY_IO_SYNC, error: EIO) == KSTORE_OK)
                #expect(await storageErrorCode { try await log.sync() } == .io)
                #expect(engine.lastError.contains("fdatasync"))
            }
            // The log is failed: every mutating call answers IO until it is reopened.
            var later = plan
            later.add(offsetCount: 1, maxTimestamp: 1, byteCount: 64)
            #expect(await storageErrorCode { try await log.appendEntry(later.entries.last!) } == .io)
            #expect(await storageErrorCode { try await log.deleteBefore(1) } == .io)
            await log.close()
            log = try await engine.openLog(named: "f", create: false, options: options)
            let recovered = try await log.readAll(from: 0)
            let expected = fault == .ioWritingTheFrame ? Array(plan.entries.dropLast()) : plan.entries
            #expect(recovered == expected)
            #expect(try log.state().endOffset == expected.last!.lastOffset + 1)
            #expect(try #require(log.recoveryInfo()).clean == 0)
        }
        await log.close()
        await engine.close()
    }

    // MARK: Memory

    /// Memory does not grow with the data stored: appending gigabytes across many segments grows the
    /// resident set by far less than the data (only a descriptor per segment stays in memory), and
    /// recovery verifies every byte with large sequential reads. Prints the figures.
    @Test(.timeLimit(.minutes(15)))
    func memoryStaysBoundedWhileGigabytesAreAppended() async throws {
        // 1 GiB by default, to keep the whole test run (timing-sensitive server suites run alongside)
        // responsive on small machines; FJORD_FILE_RSS_GIB=2 (or more) for the full measurement.
        let gibibytes = Int(ProcessInfo.processInfo.environment["FJORD_FILE_RSS_GIB"] ?? "") ?? 1
        let entryBytes = 1 << 20
        let entryCount = gibibytes * 1_024
        let scratch = try ScratchDirectory("file-rss")
        defer { scratch.remove() }
        var engine = try Self.open(scratch)
        let options = [(key: "segment.bytes", value: String(64 << 20))]
        var log = try await engine.openLog(named: "big", create: true, options: options)
        var generator = SeededGenerator(seed: 42)
        var buffer = ByteBufferAllocator().buffer(capacity: entryBytes)
        buffer.writeBytes((0..<entryBytes).map { _ in UInt8.random(in: 0...255, using: &generator) })
        func append(_ index: Int) async throws {
            buffer.setInteger(Int64(index), at: 0)
            try await log.append(
                firstOffset: Int64(index),
                lastOffset: Int64(index),
                maxTimestamp: Int64(index),
                parts: [buffer]
            )
        }
        for index in 0..<16 { try await append(index) }
        try await log.sync()
        let residentBefore = residentBytes()
        let started = ContinuousClock.now
        for index in 16..<entryCount {
            try await append(index)
            if index % 256 == 0 { try await log.sync() }
        }
        try await log.sync()
        let appendTime = ContinuousClock.now - started
        let residentAfter = residentBytes()
        let segments = segmentFiles(scratch.path, log: "big").count
        let dataBytes = entryCount * entryBytes
        print(
            "file backend: appended \(dataBytes >> 20) MiB in \(entryCount) entries and \(segments) segments in "
                + "\(appendTime); RSS \(residentBefore >> 20) MiB -> \(residentAfter >> 20) MiB "
                + "(+\((residentAfter - residentBefore) >> 10) KiB)"
        )
        #expect(segments >= dataBytes / (64 << 20))
        #expect(residentAfter - residentBefore < dataBytes / 16)
        // A few entries from different segments read back exactly.
        for index in [0, entryCount / 3, entryCount - 1] {
            let result = try await log.read(
                from: Int64(index),
                limit: .max,
                maxBytes: entryBytes,
                minimumOneEntry: true
            )
            #expect(result.entryCount == 1 && result.bytes.readableBytes == entryBytes)
            #expect(result.bytes.getInteger(at: result.bytes.readerIndex, as: Int64.self) == Int64(index))
            #expect(
                result.bytes.getBytes(at: result.bytes.readerIndex + 8, length: 64)
                    == buffer.getBytes(at: 8, length: 64)
            )
        }
        let state = try log.state()
        await log.close()
        await engine.close()

        // Recovery after a crash verifies every frame: measure the scan rate.
        try FileManager.default.removeItem(atPath: scratch.file("logs/big/clean-shutdown"))
        engine = try Self.open(scratch)
        log = try await engine.openLog(named: "big", create: false, options: options)
        let info = try #require(log.recoveryInfo())
        let residentRecovered = residentBytes()
        #expect(try log.state() == state)
        #expect(info.clean == 0 && info.verified_bytes >= UInt64(dataBytes))
        let seconds = Double(info.scan_nanoseconds) / 1e9
        print(
            "file backend: recovery verified \(info.verified_bytes >> 20) MiB in \(info.verified_frames) frames and "
                + "rebuilt \(info.rebuilt_index_count) indexes in \(String(format: "%.3f", seconds)) s = "
                + "\(String(format: "%.2f", Double(info.verified_bytes) / seconds / 1e9)) GB/s; "
                + "RSS after recovery \(residentRecovered >> 20) MiB"
        )
        await log.close()
        await engine.close()
        // A clean reopen trusts the summaries and verifies only the last segment's tail.
        engine = try Self.open(scratch)
        log = try await engine.openLog(named: "big", create: false, options: options)
        let clean = try #require(log.recoveryInfo())
        #expect(clean.clean == 1 && clean.rebuilt_index_count == 0)
        #expect(clean.verified_bytes < UInt64(dataBytes / 8))
        print(
            "file backend: clean reopen verified \(clean.verified_bytes >> 10) KiB in "
                + "\(String(format: "%.3f", Double(clean.scan_nanoseconds) / 1e6)) ms"
        )
        await log.close()
        try await engine.deleteLog(named: "big")
        await engine.close()
    }
}
