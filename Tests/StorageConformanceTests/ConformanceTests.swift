import NIOCore
import StorageBackends
import Synchronization
import Testing

@testable import StorageHost
@testable import StorageTestSupport

/// The storage conformance suite (DESIGN.md §3, §7): every built-in backend, called directly and
/// through the blocking pool. A new backend joins by being listed in `StorageBackend.builtinNames`;
/// the reopen cases run for DURABLE backends only.
@Suite("Storage conformance")
struct ConformanceTests {
    static let backends = StorageBackend.builtinNames
    static let paths = ExecutionPath.allCases

    // MARK: Logs of an instance

    /// Open, create, exclusive create, busy, delete and list behave as kstore.h documents.
    @Test(arguments: backends, paths)
    func logLifecycleFollowsTheOpenFlags(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            let engine = harness.engine
            #expect(await storageErrorCode { _ = try await engine.openLog(named: "p-0", create: false) } == .notFound)
            #expect(
                await storageErrorCode { _ = try await engine.openLog(named: "p-0", create: false, exclusive: true) }
                    == .invalidArgument
            )
            let log = try await engine.openLog(named: "p-0", create: true, exclusive: true)
            #expect(
                try log.state()
                    == StorageLogState(
                        startOffset: 0,
                        endOffset: 0,
                        durableEndOffset: 0,
                        maxTimestamp: -1,
                        byteCount: 0,
                        entryCount: 0
                    )
            )
            #expect(await storageErrorCode { _ = try await engine.openLog(named: "p-0", create: true) } == .busy)
            #expect(await storageErrorCode { _ = try await engine.openLog(named: "p-0", create: false) } == .busy)
            #expect(
                await storageErrorCode { _ = try await engine.openLog(named: "p-0", create: true, exclusive: true) }
                    == .exists
            )
            #expect(await storageErrorCode { try await engine.deleteLog(named: "p-0") } == .busy)
            let other = try await engine.openLog(named: "a-1", create: true)
            #expect(try await engine.listLogs() == ["a-1", "p-0"])
            await other.close()
            #expect(
                await storageErrorCode { _ = try await engine.openLog(named: "a-1", create: true, exclusive: true) }
                    == .exists
            )
            await log.close()
            try await engine.deleteLog(named: "p-0")
            #expect(try await engine.listLogs() == ["a-1"])
            #expect(await storageErrorCode { try await engine.deleteLog(named: "p-0") } == .notFound)
            #expect(await storageErrorCode { _ = try await engine.openLog(named: "p-0", create: false) } == .notFound)
        }
    }

    /// A log keeps its entries across close and reopen within the instance; a deleted and
    /// recreated log starts empty.
    @Test(arguments: backends, paths)
    func logsPersistUntilDeleted(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            var plan = LogPlan()
            for _ in 0..<5 { plan.add(offsetCount: 3, maxTimestamp: 100) }
            var log = try await harness.engine.openLog(named: "keep", create: true)
            try await log.append(plan)
            let before = try log.state()
            await log.close()
            log = try await harness.engine.openLog(named: "keep", create: false)
            #expect(try log.state() == before)
            #expect(try await log.readAll(from: 0) == plan.entries)
            await log.close()
            try await harness.engine.deleteLog(named: "keep")
            log = try await harness.engine.openLog(named: "keep", create: true, exclusive: true)
            #expect(
                try log.state()
                    == StorageLogState(
                        startOffset: 0,
                        endOffset: 0,
                        durableEndOffset: 0,
                        maxTimestamp: -1,
                        byteCount: 0,
                        entryCount: 0
                    )
            )
            #expect(try await log.readAll(from: 0).isEmpty)
            await log.close()
        }
    }

    static let invalidNames = [
        "", ".", "..", "a/b", "../x", "a b", "topic:0", "ünï", "tab\t", String(repeating: "x", count: 256),
    ]

    /// Bad log names are invalid arguments, for open, create and delete; 255 bytes is fine.
    @Test(arguments: backends, paths)
    func invalidLogNamesAreRejected(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            for name in Self.invalidNames {
                #expect(
                    await storageErrorCode { _ = try await harness.engine.openLog(named: name, create: true) }
                        == .invalidArgument,
                    "\(name)"
                )
                #expect(
                    await storageErrorCode { try await harness.engine.deleteLog(named: name) } == .invalidArgument,
                    "\(name)"
                )
            }
            #expect(
                await storageErrorCode { _ = try await harness.engine.openLog(named: "a\u{0}b", create: true) }
                    == .invalidArgument
            )
            let longest = String(repeating: "n", count: 255)
            let log = try await harness.engine.openLog(named: longest, create: true)
            #expect(log.name == longest)
            await log.close()
            #expect(try await harness.engine.listLogs() == [longest])
        }
    }

    /// Known log options with bad values are invalid arguments; unknown options are ignored.
    @Test(arguments: backends, paths)
    func logOptionsAreValidated(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            for value in ["", "0", "-1", "12x", "99999999999999999999"] {
                #expect(
                    await storageErrorCode {
                        _ = try await harness.engine.openLog(
                            named: "o",
                            create: true,
                            options: [(key: "segment.bytes", value: value)]
                        )
                    } == .invalidArgument
                )
            }
            let log = try await harness.engine.openLog(
                named: "o",
                create: true,
                options: [
                    (key: "segment.bytes", value: "1048576"), (key: "segment.ms", value: "60000"),
                    (key: "x.unknown", value: "?"),
                ]
            )
            await log.close()
        }
    }

    // MARK: Appends

    /// Appends must continue the log; a rejected append completes once with an invalid-argument
    /// error carrying the backend's message and changes nothing.
    @Test(arguments: backends, paths)
    func appendsMustContinueTheLog(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            let log = try await harness.engine.openLog(named: "c", create: true)
            try await log.append(
                firstOffset: 0,
                lastOffset: 2,
                maxTimestamp: 10,
                parts: [TestEntry.make(firstOffset: 0, lastOffset: 2)]
            )
            // The loop below syncs, which moves durableEndOffset on DURABLE backends: sync first.
            try await log.sync()
            let state = try log.state()
            let entry = TestEntry.make(firstOffset: 3, lastOffset: 3)
            let rejected: [(Int64, Int64, Int64, [ByteBuffer])] = [
                (5, 5, 10, [entry]),  // gap
                (2, 4, 10, [entry]),  // overlap
                (0, 0, 10, [entry]),  // rewrite
                (3, 2, 10, [entry]),  // last < first
                (3, 3, 10, []),  // no parts
                (3, 3, 10, [ByteBuffer()]),  // empty entry
                (3, 3, -2, [entry]),  // timestamp neither -1 nor >= 0
            ]
            for (first, last, timestamp, parts) in rejected {
                let calls = LockedState<[Result<Void, StorageError>]>([])
                log.submitAppend(firstOffset: first, lastOffset: last, maxTimestamp: timestamp, parts: parts) {
                    result in
                    calls.withLock { $0.append(result) }
                }
                try await log.sync()
                let results = calls.withLock { $0 }
                #expect(results.count == 1)
                guard case .failure(let error)? = results.first else {
                    Issue.record("append [\(first), \(last)] was accepted")
                    continue
                }
                #expect(error.code == .invalidArgument)
                #expect(!error.isRetriable)
                #expect(error.message.contains("append [\(first), \(last)]"))
                #expect(error.message.contains("backend '\(backend)'"))
                #expect(try log.state() == state)
            }
            try await log.append(firstOffset: 3, lastOffset: 3, maxTimestamp: -1, parts: [entry])
            #expect(try log.state().endOffset == 4)
            await log.close()
        }
    }

    // MARK: Reads

    /// A log of entries of 1, 2, 3, 4, 5 offsets used by the read cases.
    static func readPlan() -> LogPlan {
        var plan = LogPlan()
        for index in 0..<5 {
            plan.add(offsetCount: Int64(index + 1), maxTimestamp: Int64(100 * index), byteCount: 100 + 10 * index)
        }
        return plan  // offsets 0 | 1-2 | 3-5 | 6-9 | 10-14, end 15
    }

    /// Reads start with the entry containing the offset (start, middle of an entry, exact
    /// boundaries) and an offset at the end returns no entries.
    @Test(arguments: backends, paths)
    func readsStartWithTheEntryContainingTheOffset(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            let plan = Self.readPlan()
            let log = try await harness.engine.openLog(named: "r", create: true)
            try await log.append(plan)
            for offset in Int64(0)...plan.endOffset {
                let result = try await log.read(from: offset, limit: .max, maxBytes: 1 << 20, minimumOneEntry: true)
                let entries = try TestEntry.parse(result.bytes)
                let expected = plan.index(containing: offset).map { Array(plan.entries[$0...]) } ?? []
                #expect(entries == expected, "offset \(offset)")
                #expect(result.entryCount == expected.count)
                #expect(result.nextOffset == (expected.isEmpty ? offset : plan.endOffset))
            }
            await log.close()
        }
    }

    /// Offsets below start or beyond end are out of range.
    @Test(arguments: backends, paths)
    func readsOutsideTheLogAreOutOfRange(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            let log = try await harness.engine.openLog(named: "r", create: true)
            #expect(
                await storageErrorCode {
                    _ = try await log.read(from: 1, limit: .max, maxBytes: 100, minimumOneEntry: true)
                } == .outOfRange
            )
            #expect(try await log.read(from: 0, limit: .max, maxBytes: 100, minimumOneEntry: true).entryCount == 0)
            try await log.append(Self.readPlan())
            for offset: Int64 in [-1, 16, 1_000, .max] {
                #expect(
                    await storageErrorCode {
                        _ = try await log.read(from: offset, limit: .max, maxBytes: 100, minimumOneEntry: true)
                    } == .outOfRange,
                    "\(offset)"
                )
            }
            await log.close()
        }
    }

    /// No entry starting at or after the limit (the high watermark) is returned.
    @Test(arguments: backends, paths)
    func readsStopAtTheLimit(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            let plan = Self.readPlan()
            let log = try await harness.engine.openLog(named: "r", create: true)
            try await log.append(plan)
            for limit in Int64(0)...16 {
                for offset in Int64(0)...plan.endOffset {
                    let result = try await log.read(
                        from: offset,
                        limit: limit,
                        maxBytes: 1 << 20,
                        minimumOneEntry: true
                    )
                    let expected = plan.entries.filter { $0.lastOffset >= offset && $0.firstOffset < limit }
                    #expect(
                        try TestEntry.parse(result.bytes) == (offset >= limit ? [] : expected),
                        "offset \(offset) limit \(limit)"
                    )
                }
            }
            await log.close()
        }
    }

    /// maxBytes bounds the whole entries returned; with minimumOneEntry a first entry larger than
    /// maxBytes comes back alone (KIP-74), without it nothing does.
    @Test(arguments: backends, paths)
    func readsRespectMaxBytesAndMinimumOneEntry(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            let plan = Self.readPlan()  // entry sizes 100, 110, 120, 130, 140
            let log = try await harness.engine.openLog(named: "r", create: true)
            try await log.append(plan)
            for maxBytes in [0, 1, 99, 100, 209, 210, 211, 329, 330, 599, 600, 10_000] {
                // The longest prefix of whole entries that fits.
                var expected: [TestEntry.Parsed] = []
                var total = 0
                for entry in plan.entries {
                    if total + entry.byteCount > maxBytes { break }
                    expected.append(entry)
                    total += entry.byteCount
                }
                let without = try await log.read(from: 0, limit: .max, maxBytes: maxBytes, minimumOneEntry: false)
                #expect(try TestEntry.parse(without.bytes) == expected, "maxBytes \(maxBytes)")
                #expect(without.bytes.readableBytes <= maxBytes)
                let with = try await log.read(from: 0, limit: .max, maxBytes: maxBytes, minimumOneEntry: true)
                #expect(
                    try TestEntry.parse(with.bytes) == (expected.isEmpty ? [plan.entries[0]] : expected),
                    "maxBytes \(maxBytes)"
                )
            }
            // From the middle too: the oversized first entry is returned alone.
            let middle = try await log.read(from: 7, limit: .max, maxBytes: 10, minimumOneEntry: true)
            #expect(try TestEntry.parse(middle.bytes) == [plan.entries[3]])
            #expect(middle.nextOffset == 10)
            await log.close()
        }
    }

    /// Reading everything in small steps from nextOffset returns every entry exactly once.
    @Test(arguments: backends, paths)
    func readingInSmallChunksHasNoGapsOrDuplicates(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            var plan = LogPlan()
            for index in 0..<400 { plan.add(offsetCount: Int64(index % 7 + 1), byteCount: 28 + (index * 37) % 300) }
            let log = try await harness.engine.openLog(named: "chunks", create: true)
            try await log.append(plan)
            for maxBytes in [1, 300, 1_000, 4_096] {
                var offset: Int64 = 0
                var seen: [TestEntry.Parsed] = []
                while offset < plan.endOffset {
                    let result = try await log.read(
                        from: offset,
                        limit: .max,
                        maxBytes: maxBytes,
                        minimumOneEntry: true
                    )
                    #expect(result.entryCount >= 1)
                    seen += try TestEntry.parse(result.bytes)
                    offset = result.nextOffset
                }
                #expect(seen == plan.entries, "maxBytes \(maxBytes)")
            }
            await log.close()
        }
    }

    /// A read from the middle of a 5,000-entry log returns the right entry and its successors
    /// (DESIGN.md §4: reads seek by offset through an index).
    @Test(arguments: backends, paths)
    func readFromTheMiddleOfA5000EntryLog(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            var plan = LogPlan()
            for index in 0..<5_000 { plan.add(offsetCount: Int64(index % 3 + 1), maxTimestamp: Int64(index)) }
            let log = try await harness.engine.openLog(named: "big", create: true)
            try await log.append(plan)
            for index in [2_500, 2_501, 4_999, 1] {
                let entry = plan.entries[index]
                for offset in entry.firstOffset...entry.lastOffset {
                    let result = try await log.read(from: offset, limit: .max, maxBytes: 64 * 3, minimumOneEntry: true)
                    #expect(
                        try TestEntry.parse(result.bytes)
                            == Array(plan.entries[index..<min(index + 3, plan.entries.count)])
                    )
                }
            }
            // Consume 2,500 entries from the middle in fetch-sized steps.
            var offset = plan.entries[2_500].firstOffset
            var count = 0
            while offset < plan.endOffset {
                let result = try await log.read(from: offset, limit: .max, maxBytes: 4_096, minimumOneEntry: true)
                count += result.entryCount
                offset = result.nextOffset
            }
            #expect(count == 2_500)
            await log.close()
        }
    }

    /// 10,000+ entries append and read back exactly, and state counts them.
    @Test(arguments: backends, paths)
    func tenThousandEntriesRoundTrip(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            var plan = LogPlan()
            for index in 0..<10_240 {
                plan.add(offsetCount: 1 + Int64(index % 5), maxTimestamp: Int64(index), byteCount: 28 + index % 200)
            }
            let log = try await harness.engine.openLog(named: "many", create: true)
            try await log.append(plan)
            #expect(
                try log.state()
                    == StorageLogState(
                        startOffset: 0,
                        endOffset: plan.endOffset,
                        durableEndOffset: plan.endOffset,
                        maxTimestamp: 10_239,
                        byteCount: plan.byteCount,
                        entryCount: 10_240
                    )
            )
            #expect(try await log.readAll(from: 0) == plan.entries)
            await log.close()
        }
    }

    // MARK: Time index

    /// find_offset_by_time answers the first entry whose max timestamp is >= the timestamp, with
    /// timestamps that go up and down.
    @Test(arguments: backends, paths)
    func findOffsetByTimeWithNonMonotonicTimestamps(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            let log = try await harness.engine.openLog(named: "t", create: true)
            #expect(try await log.findOffset(atOrAfterTimestamp: 0) == nil)
            var plan = LogPlan()
            let timestamps: [Int64] = [100, 50, 300, -1, 200, 400, 150, 400, 10]
            for timestamp in timestamps { plan.add(offsetCount: 2, maxTimestamp: timestamp) }
            try await log.append(plan)
            for query: Int64 in [-5, -1, 0, 10, 50, 99, 100, 101, 150, 250, 300, 301, 399, 400, 401, .max] {
                let expected = plan.entries.first { $0.maxTimestamp >= query }?.firstOffset
                #expect(try await log.findOffset(atOrAfterTimestamp: query) == expected, "timestamp \(query)")
            }
            #expect(try log.state().maxTimestamp == 400)
            // After the start moves past the 300 entry, 250 finds the next one at or above it.
            try await log.deleteBefore(plan.entries[3].firstOffset)
            #expect(try await log.findOffset(atOrAfterTimestamp: 250) == plan.entries[5].firstOffset)
            #expect(try await log.findOffset(atOrAfterTimestamp: 0) == plan.entries[4].firstOffset)
            // Inside an entry: the start is reported, not the entry's first offset below it.
            try await log.deleteBefore(plan.entries[4].firstOffset + 1)
            #expect(try await log.findOffset(atOrAfterTimestamp: 150) == plan.entries[4].firstOffset + 1)
            await log.close()
        }
    }

    // MARK: Truncation and deletion

    /// truncate_to removes entries from an entry boundary on and rejects offsets that are not
    /// boundaries in [start, end]; appends then continue from the new end.
    @Test(arguments: backends, paths)
    func truncateToRemovesEntriesFromABoundary(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            let plan = Self.readPlan()  // boundaries 0, 1, 3, 6, 10, end 15
            let log = try await harness.engine.openLog(named: "t", create: true)
            try await log.append(plan)
            for offset: Int64 in [-1, 2, 4, 11, 14, 16] {
                #expect(await storageErrorCode { try await log.truncate(to: offset) } == .outOfRange, "\(offset)")
            }
            try await log.truncate(to: 15)  // the end: nothing to remove
            #expect(try log.state().endOffset == 15)
            try await log.truncate(to: 6)
            let remaining = Array(plan.entries.prefix(3))
            #expect(
                try log.state()
                    == StorageLogState(
                        startOffset: 0,
                        endOffset: 6,
                        durableEndOffset: 6,
                        maxTimestamp: 200,
                        byteCount: 330,
                        entryCount: 3
                    )
            )
            #expect(try await log.readAll(from: 0) == remaining)
            #expect(
                await storageErrorCode {
                    _ = try await log.read(from: 7, limit: .max, maxBytes: 100, minimumOneEntry: true)
                } == .outOfRange
            )
            // Appends continue from the new end; the old offsets are reusable with new bytes.
            var next = LogPlan(entries: remaining)
            next.add(offsetCount: 2, maxTimestamp: 5, byteCount: 77)
            try await log.append(next, from: 3)
            #expect(try await log.readAll(from: 0) == next.entries)
            try await log.truncate(to: 0)
            #expect(
                try log.state()
                    == StorageLogState(
                        startOffset: 0,
                        endOffset: 0,
                        durableEndOffset: 0,
                        maxTimestamp: -1,
                        byteCount: 0,
                        entryCount: 0
                    )
            )
            await log.close()
        }
    }

    /// delete_before moves the start (inside an entry too); reads below it are out of range; a
    /// smaller offset is a no-op and one beyond the end is out of range.
    @Test(arguments: backends, paths)
    func deleteBeforeMovesTheStart(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            let plan = Self.readPlan()
            let log = try await harness.engine.openLog(named: "d", create: true)
            try await log.append(plan)
            try await log.deleteBefore(4)  // inside the 3-5 entry, which stays
            #expect(
                try log.state()
                    == StorageLogState(
                        startOffset: 4,
                        endOffset: 15,
                        durableEndOffset: 15,
                        maxTimestamp: 400,
                        byteCount: 390,
                        entryCount: 3
                    )
            )
            #expect(
                await storageErrorCode {
                    _ = try await log.read(from: 3, limit: .max, maxBytes: 1_000, minimumOneEntry: true)
                } == .outOfRange
            )
            #expect(try await log.readAll(from: 4) == Array(plan.entries[2...]))
            try await log.deleteBefore(2)  // below the start: no-op
            #expect(try log.state().startOffset == 4)
            #expect(await storageErrorCode { try await log.deleteBefore(16) } == .outOfRange)
            // Truncating to the start inside an entry is not a boundary.
            #expect(await storageErrorCode { try await log.truncate(to: 4) } == .outOfRange)
            try await log.deleteBefore(10)
            #expect(
                try log.state()
                    == StorageLogState(
                        startOffset: 10,
                        endOffset: 15,
                        durableEndOffset: 15,
                        maxTimestamp: 400,
                        byteCount: 140,
                        entryCount: 1
                    )
            )
            try await log.deleteBefore(15)  // everything
            #expect(
                try log.state()
                    == StorageLogState(
                        startOffset: 15,
                        endOffset: 15,
                        durableEndOffset: 15,
                        maxTimestamp: -1,
                        byteCount: 0,
                        entryCount: 0
                    )
            )
            #expect(try await log.read(from: 15, limit: .max, maxBytes: 100, minimumOneEntry: true).entryCount == 0)
            try await log.append(
                firstOffset: 15,
                lastOffset: 15,
                maxTimestamp: 7,
                parts: [TestEntry.make(firstOffset: 15, lastOffset: 15)]
            )
            #expect(try await log.readAll(from: 15).map(\.firstOffset) == [15])
            await log.close()
        }
    }

    /// One entry per segment in backends with segments (an entry always fits an empty segment).
    static let entrySegments = [(key: "segment.bytes", value: "1")]

    /// Retention by bytes deletes the oldest entries while the log is over the limit, but never
    /// the entry holding the last offset.
    @Test(arguments: backends, paths)
    func retentionByBytes(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            let plan = Self.readPlan()  // sizes 100, 110, 120, 130, 140 = 600
            // kstore.h: retention deletes whole storage units; segment.bytes 1 makes every entry its own
            // segment in segmented backends, so entry-sized units are expected of every backend.
            let log = try await harness.engine.openLog(named: "rb", create: true, options: Self.entrySegments)
            try await log.append(plan)
            #expect(try await log.enforceRetention(retainBytes: -1, retainAfterTimestamp: -1) == 0)
            #expect(try await log.enforceRetention(retainBytes: 600, retainAfterTimestamp: -1) == 0)
            #expect(try await log.enforceRetention(retainBytes: 400, retainAfterTimestamp: -1) == 3)  // 390 left
            #expect(
                try log.state()
                    == StorageLogState(
                        startOffset: 3,
                        endOffset: 15,
                        durableEndOffset: 15,
                        maxTimestamp: 400,
                        byteCount: 390,
                        entryCount: 3
                    )
            )
            #expect(
                await storageErrorCode {
                    _ = try await log.read(from: 2, limit: .max, maxBytes: 1_000, minimumOneEntry: true)
                } == .outOfRange
            )
            #expect(try await log.enforceRetention(retainBytes: 0, retainAfterTimestamp: -1) == 10)  // last entry stays
            #expect(try log.state().entryCount == 1)
            #expect(try await log.readAll(from: 10) == [plan.entries[4]])
            await log.close()
        }
    }

    /// Retention by time deletes wholly expired entries from the start, the last one included.
    @Test(arguments: backends, paths)
    func retentionByTime(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            var plan = LogPlan()
            for timestamp: Int64 in [10, 20, 5, 40, 30] {
                plan.add(offsetCount: 2, maxTimestamp: timestamp, byteCount: 50)
            }
            let log = try await harness.engine.openLog(named: "rt", create: true, options: Self.entrySegments)
            try await log.append(plan)
            // 10 is not below 10.
            #expect(try await log.enforceRetention(retainBytes: -1, retainAfterTimestamp: 10) == 0)
            #expect(try await log.enforceRetention(retainBytes: -1, retainAfterTimestamp: 25) == 6)  // stops at 40
            #expect(
                try log.state()
                    == StorageLogState(
                        startOffset: 6,
                        endOffset: 10,
                        durableEndOffset: 10,
                        maxTimestamp: 40,
                        byteCount: 100,
                        entryCount: 2
                    )
            )
            // Both limits: bytes would keep the last entry, time expires it.
            #expect(try await log.enforceRetention(retainBytes: 1_000, retainAfterTimestamp: 41) == 10)
            #expect(
                try log.state()
                    == StorageLogState(
                        startOffset: 10,
                        endOffset: 10,
                        durableEndOffset: 10,
                        maxTimestamp: -1,
                        byteCount: 0,
                        entryCount: 0
                    )
            )
            await log.close()
        }
    }

    // MARK: State and sync

    /// state reflects each append, truncation and deletion.
    @Test(arguments: backends, paths)
    func stateFollowsEachOperation(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            let log = try await harness.engine.openLog(named: "s", create: true)
            var plan = LogPlan()
            var expectedMax: Int64 = -1
            for (index, timestamp) in [Int64(5), -1, 9, 3].enumerated() {
                plan.add(offsetCount: Int64(index + 1), maxTimestamp: timestamp, byteCount: 40 + index)
                try await log.append(plan, from: index)
                expectedMax = max(expectedMax, timestamp)
                #expect(
                    try log.state()
                        == StorageLogState(
                            startOffset: 0,
                            endOffset: plan.endOffset,
                            durableEndOffset: plan.endOffset,
                            maxTimestamp: expectedMax,
                            byteCount: plan.byteCount,
                            entryCount: UInt64(index + 1)
                        )
                )
            }
            try await log.truncate(to: 3)  // keeps entries 0 and 1-2
            #expect(
                try log.state()
                    == StorageLogState(
                        startOffset: 0,
                        endOffset: 3,
                        durableEndOffset: 3,
                        maxTimestamp: 5,
                        byteCount: 81,
                        entryCount: 2
                    )
            )
            try await log.deleteBefore(1)
            #expect(
                try log.state()
                    == StorageLogState(
                        startOffset: 1,
                        endOffset: 3,
                        durableEndOffset: 3,
                        maxTimestamp: -1,
                        byteCount: 41,
                        entryCount: 1
                    )
            )
            await log.close()
        }
    }

    /// sync completes, in order with appends, and leaves every earlier append readable.
    @Test(arguments: backends, paths)
    func syncCoversEarlierAppends(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            let log = try await harness.engine.openLog(named: "y", create: true)
            try await log.sync()  // an empty log syncs too
            let order = LockedState<[String]>([])
            for offset in Int64(0)..<20 {
                log.submitAppend(
                    firstOffset: offset,
                    lastOffset: offset,
                    maxTimestamp: offset,
                    parts: [TestEntry.make(firstOffset: offset, lastOffset: offset)]
                ) { result in
                    order.withLock { $0.append((try? result.get()) != nil ? "a\(offset)" : "failed") }
                }
            }
            try await log.sync()
            order.withLock { $0.append("sync") }
            #expect(order.withLock { $0 } == (0..<20).map { "a\($0)" } + ["sync"])
            #expect(try log.state().durableEndOffset == 20)
            #expect(try await log.readAll(from: 0).count == 20)
            await log.close()
        }
    }

    // MARK: Statistics

    /// KSTORE_CONTROL_STATS (kstore.h, since 1) is optional: a backend answers UNSUPPORTED, or it
    /// rejects an invalid visitor, reports names by kstore.h's rules (each once, the same names on
    /// every call) and never lets a counter go back.
    @Test(arguments: backends, paths)
    func statisticsFollowTheRulesOrAreUnsupported(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            let engine = harness.engine
            let invalid = StorageError.Code(status: engine.control(BackendStatistic.controlOp, nil))
            guard let before = engine.backendStatistics() else {
                #expect(invalid == .unsupported)
                return
            }
            #expect(invalid == .invalidArgument)
            #expect(Set(before.map(\.name)).count == before.count)
            #expect(before.allSatisfy { BackendStatistic.isValidName($0.name) })
            let log = try await engine.openLog(named: "s", create: true)
            for offset in Int64(0)..<10 {
                try await log.append(
                    firstOffset: offset,
                    lastOffset: offset,
                    maxTimestamp: offset,
                    parts: [TestEntry.make(firstOffset: offset, lastOffset: offset)]
                )
            }
            try await log.sync()
            let after = try #require(engine.backendStatistics())
            #expect(after.map(\.name) == before.map(\.name))
            for figure in after where figure.kind == .counter {
                let earlier = try #require(before.first { $0.name == figure.name })
                #expect(figure.value >= earlier.value, "\(figure.name) went back")
            }
            if let appends = after.first(where: { $0.name == "appends_total" }) {
                let earlier = before.first { $0.name == "appends_total" }?.value ?? 0
                #expect(appends.value - earlier == 10)
            }
            await log.close()
        }
    }

    // MARK: Concurrency

    /// Readers running during appends only ever see whole, ordered, contiguous entries starting
    /// with the one containing the offset they asked for.
    @Test(.timeLimit(.minutes(2)), arguments: backends, paths)
    func concurrentReadersSeeConsistentEntries(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            let log = try await harness.engine.openLog(named: "stress", create: true)
            let entryCountTotal = 2_000
            let progress = StressProgress()
            try await withThrowingTaskGroup(of: Int.self) { group in
                group.addTask {
                    defer { progress.writerDone.store(true, ordering: .releasing) }
                    // Start once every reader runs, so the reads overlap the appends.
                    while progress.readCount.load(ordering: .acquiring) < 3 { await Task.yield() }
                    var end: Int64 = 0
                    for index in 0..<entryCountTotal {
                        if index % 8 == 0 { await Task.yield() }
                        let count = Int64(index % 4 + 1)
                        try await log.append(
                            firstOffset: end,
                            lastOffset: end + count - 1,
                            maxTimestamp: Int64(index),
                            parts: StorageLog.split(
                                TestEntry.make(
                                    firstOffset: end,
                                    lastOffset: end + count - 1,
                                    byteCount: 28 + index % 500
                                )
                            )
                        )
                        end += count
                        progress.appended.store(end, ordering: .releasing)
                    }
                    return 0
                }
                for reader in 0..<3 {
                    group.addTask {
                        var reads = 0
                        var generator = SystemRandomNumberGenerator()
                        while true {
                            let finished = progress.writerDone.load(ordering: .acquiring)
                            let end = progress.appended.load(ordering: .acquiring)
                            let offset = end == 0 ? 0 : Int64.random(in: 0..<end, using: &generator)
                            let maxBytes = [1, 500, 4_096, 65_536][(reads + reader) % 4]
                            let result = try await log.read(
                                from: offset,
                                limit: .max,
                                maxBytes: maxBytes,
                                minimumOneEntry: true
                            )
                            let entries = try TestEntry.parse(result.bytes)
                            if end > 0 {
                                try #require(!entries.isEmpty)
                                #expect(entries[0].firstOffset <= offset && offset <= entries[0].lastOffset)
                            }
                            for (previous, next) in zip(entries, entries.dropFirst()) {
                                try #require(next.firstOffset == previous.lastOffset + 1)
                            }
                            #expect(result.nextOffset == (entries.last.map { $0.lastOffset + 1 } ?? offset))
                            reads += 1
                            progress.readCount.add(1, ordering: .releasing)
                            if finished { return reads }
                            // Direct reads never suspend: let the writer have a thread.
                            await Task.yield()
                        }
                    }
                }
                var readCount = 0
                for try await count in group { readCount += count }
                #expect(readCount > 6)
            }
            #expect(try log.state().entryCount == UInt64(entryCountTotal))
            await log.close()
        }
    }

    // MARK: Reopening the instance (DURABLE backends)

    /// Synced entries and the log state survive closing and reopening the instance.
    @Test(
        .enabled(if: !durableBuiltinNames.isEmpty, "no built-in backend is DURABLE yet (memory is not)"),
        arguments: durableBuiltinNames,
        paths
    )
    func syncedEntriesSurviveReopeningTheInstance(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            var plan = LogPlan()
            for index in 0..<50 { plan.add(offsetCount: 2, maxTimestamp: Int64(index), byteCount: 1_024) }
            var log = try await harness.engine.openLog(named: "durable", create: true)
            try await log.append(plan)
            let state = try log.state()
            await log.close()
            try await harness.reopenInstance()
            log = try await harness.engine.openLog(named: "durable", create: false)
            #expect(try log.state() == state)
            #expect(try await log.readAll(from: 0) == plan.entries)
            await log.close()
        }
    }
}

/// Shared between the stress test's writer and readers.
final class StressProgress: Sendable {
    /// The end offset acknowledged so far.
    let appended = Atomic<Int64>(0)
    let writerDone = Atomic<Bool>(false)
    let readCount = Atomic<Int>(0)
}
