import CKStore
import Foundation
import NIOCore
import StorageBackends
import Synchronization
import Testing

@testable import StorageHost
@testable import StorageTestSupport

/// Counts completion callbacks; passed to the backend as the context.
final class CompletionCounter: Sendable {
    let count = Atomic<Int>(0)
    let lastStatus = Atomic<Int32>(-1)

    var context: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    static let callback: kstore_completion = { context, status in
        let counter = Unmanaged<CompletionCounter>.fromOpaque(context!).takeUnretainedValue()
        counter.lastStatus.store(status, ordering: .relaxed)
        counter.count.add(1, ordering: .releasing)
    }

    /// Waits (bounded) until `expected` callbacks arrived: a backend may call them later.
    func wait(for expected: Int) -> Bool {
        for _ in 0..<5_000 {
            if self.count.load(ordering: .acquiring) >= expected { return true }
            usleep(1_000)
        }
        return false
    }
}

/// Contract points about the C calls themselves (kstore.h), checked through the table directly.
@Suite("C ABI behaviour")
struct CBehaviourTests {
    /// Appends one test entry through the C table.
    static func append(
        _ log: UnsafeMutablePointer<kstore_log>,
        first: Int64,
        last: Int64,
        timestamp: Int64 = -1,
        byteCount: Int = 64,
        counter: CompletionCounter
    ) -> Int32 {
        let entry = TestEntry.make(firstOffset: first, lastOffset: last, maxTimestamp: timestamp, byteCount: byteCount)
        return entry.withUnsafeReadableBytes { bytes in
            var iovec = kstore_iovec(base: bytes.baseAddress, len: bytes.count)
            return log.pointee.methods.pointee.append(
                log,
                first,
                last,
                timestamp,
                &iovec,
                1,
                CompletionCounter.callback,
                counter.context
            )
        }
    }

    /// A rejected append returns the error, never calls its callback, leaves the log unchanged and
    /// records a message; an accepted one calls it exactly once.
    @Test(arguments: StorageBackend.builtinNames)
    func rejectedAppendsNeverCallTheCallback(name: String) throws {
        let instance = try CInstance(StorageBackend.builtin(named: name))
        defer { instance.close() }
        let log = try instance.openLog("reject", flags: UInt32(KSTORE_OPEN_CREATE))
        defer { log.pointee.methods.pointee.close(log) }
        let methods = log.pointee.methods.pointee
        let counter = CompletionCounter()
        #expect(Self.append(log, first: 0, last: 1, counter: counter) == KSTORE_OK)
        #expect(counter.wait(for: 1) && counter.lastStatus.load(ordering: .relaxed) == KSTORE_OK)

        let rejected = CompletionCounter()
        #expect(Self.append(log, first: 5, last: 5, counter: rejected) == KSTORE_ERR_INVALID_ARGUMENT)
        #expect(instance.lastError().contains("5"))
        #expect(Self.append(log, first: 2, last: 1, counter: rejected) == KSTORE_ERR_INVALID_ARGUMENT)
        #expect(Self.append(log, first: 1, last: 1, counter: rejected) == KSTORE_ERR_INVALID_ARGUMENT)
        let byte: [UInt8] = [1]
        byte.withUnsafeBytes { byte in
            var iovec = kstore_iovec(base: byte.baseAddress, len: 0)
            #expect(
                methods.append(log, 2, 2, -1, &iovec, 1, CompletionCounter.callback, rejected.context)
                    == KSTORE_ERR_INVALID_ARGUMENT
            )
            iovec.len = 1
            #expect(
                methods.append(log, 2, 2, -1, &iovec, 0, CompletionCounter.callback, rejected.context)
                    == KSTORE_ERR_INVALID_ARGUMENT
            )
            #expect(
                methods.append(log, 2, 2, -1, nil, 1, CompletionCounter.callback, rejected.context)
                    == KSTORE_ERR_INVALID_ARGUMENT
            )
            #expect(methods.append(log, 2, 2, -1, &iovec, 1, nil, rejected.context) == KSTORE_ERR_INVALID_ARGUMENT)
        }
        #expect(!instance.lastError().isEmpty)
        usleep(10_000)
        #expect(rejected.count.load(ordering: .acquiring) == 0)

        var state = kstore_log_state()
        state.struct_size = UInt32(MemoryLayout<kstore_log_state>.size)
        #expect(methods.state(log, &state) == KSTORE_OK)
        #expect(state.end_offset == 2 && state.entry_count == 1 && state.byte_count == 64)
    }

    /// Whether a huge malloc returns NULL here: not so under AddressSanitizer or ThreadSanitizer
    /// unless their options say allocator_may_return_null=1.
    static let hugeAllocationsFail: Bool = {
        let environment = ProcessInfo.processInfo.environment
        for (runtime, options) in [("__asan_init", "ASAN_OPTIONS"), ("__tsan_init", "TSAN_OPTIONS")]
        where dlsym(UnsafeMutableRawPointer(bitPattern: 0), runtime) != nil {
            return environment[options]?.contains("allocator_may_return_null=1") == true
        }
        return true
    }()

    /// An append the memory backend cannot allocate answers NO_MEMORY, retryable, without calling
    /// the callback, and leaves the log unchanged and usable. (The backend allocates before it
    /// reads the iovec, so the 1 EiB length is never read.)
    @Test(
        .enabled(
            if: hugeAllocationsFail,
            "the sanitizer aborts on huge allocations; set ASAN_OPTIONS/TSAN_OPTIONS=allocator_may_return_null=1"
        )
    )
    func memoryAppendOutOfMemoryChangesNothing() throws {
        let instance = try CInstance(StorageBackend.builtin(named: "memory"))
        defer { instance.close() }
        let log = try instance.openLog("oom", flags: UInt32(KSTORE_OPEN_CREATE))
        defer { log.pointee.methods.pointee.close(log) }
        let methods = log.pointee.methods.pointee
        let counter = CompletionCounter()
        #expect(Self.append(log, first: 0, last: 0, counter: counter) == KSTORE_OK)
        var before = kstore_log_state()
        before.struct_size = UInt32(MemoryLayout<kstore_log_state>.size)
        #expect(methods.state(log, &before) == KSTORE_OK)
        let rejected = CompletionCounter()
        let byte: [UInt8] = [1]
        let status = byte.withUnsafeBytes { byte in
            var iovec = kstore_iovec(base: byte.baseAddress, len: 1 << 60)
            return methods.append(log, 1, 1, -1, &iovec, 1, CompletionCounter.callback, rejected.context)
        }
        #expect(status == KSTORE_ERR_NO_MEMORY)
        #expect(kstore_status_is_retryable(status) != 0)
        #expect(rejected.count.load(ordering: .acquiring) == 0)
        #expect(instance.lastError().contains("out of memory"))
        var after = kstore_log_state()
        after.struct_size = UInt32(MemoryLayout<kstore_log_state>.size)
        #expect(methods.state(log, &after) == KSTORE_OK)
        #expect(after.end_offset == before.end_offset && after.byte_count == before.byte_count)
        #expect(after.entry_count == before.entry_count)
        #expect(Self.append(log, first: 1, last: 1, counter: counter) == KSTORE_OK)
        #expect(counter.wait(for: 2))
    }

    /// sync calls its callback exactly once, after the appends before it.
    @Test(arguments: StorageBackend.builtinNames)
    func syncCallsItsCallbackOnce(name: String) throws {
        let instance = try CInstance(StorageBackend.builtin(named: name))
        defer { instance.close() }
        let log = try instance.openLog("sync", flags: UInt32(KSTORE_OPEN_CREATE))
        defer { log.pointee.methods.pointee.close(log) }
        let appends = CompletionCounter()
        for offset in Int64(0)..<10 {
            #expect(Self.append(log, first: offset, last: offset, counter: appends) == KSTORE_OK)
        }
        let sync = CompletionCounter()
        #expect(log.pointee.methods.pointee.sync(log, CompletionCounter.callback, sync.context) == KSTORE_OK)
        #expect(sync.wait(for: 1))
        #expect(appends.count.load(ordering: .acquiring) == 10)
        usleep(10_000)
        #expect(sync.count.load(ordering: .acquiring) == 1)
        #expect(log.pointee.methods.pointee.sync(log, nil, nil) == KSTORE_ERR_INVALID_ARGUMENT)
    }

    /// A read whose buffer cannot hold the first entry returns no entry and that entry's size; a
    /// read result and a state with a smaller struct_size get only the fields that fit.
    @Test(arguments: StorageBackend.builtinNames)
    func readReportsTheFirstEntrySizeAndFillsOnlyWhatFits(name: String) throws {
        let instance = try CInstance(StorageBackend.builtin(named: name))
        defer { instance.close() }
        let log = try instance.openLog("fit", flags: UInt32(KSTORE_OPEN_CREATE))
        defer { log.pointee.methods.pointee.close(log) }
        let methods = log.pointee.methods.pointee
        let counter = CompletionCounter()
        #expect(Self.append(log, first: 0, last: 3, byteCount: 100, counter: counter) == KSTORE_OK)
        #expect(Self.append(log, first: 4, last: 4, byteCount: 50, counter: counter) == KSTORE_OK)
        #expect(counter.wait(for: 2))
        var buffer = [UInt8](repeating: 0, count: 1_000)

        var result = kstore_read_result()
        result.struct_size = UInt32(MemoryLayout<kstore_read_result>.size)
        #expect(methods.read(log, 2, .max, &buffer, 99, &result) == KSTORE_OK)
        #expect(
            result.entry_count == 0 && result.byte_count == 0 && result.next_offset == 2
                && result.first_entry_bytes == 100
        )
        #expect(methods.read(log, 2, .max, &buffer, 149, &result) == KSTORE_OK)
        #expect(
            result.entry_count == 1 && result.byte_count == 100 && result.next_offset == 4
                && result.first_entry_bytes == 0
        )
        #expect(methods.read(log, 5, .max, &buffer, 1_000, &result) == KSTORE_OK)
        #expect(result.entry_count == 0 && result.next_offset == 5 && result.first_entry_bytes == 0)

        // Only struct_size, entry_count and byte_count fit in 16 bytes.
        result = kstore_read_result(
            struct_size: 16,
            entry_count: 77,
            byte_count: 77,
            next_offset: 77,
            first_entry_bytes: 77
        )
        #expect(methods.read(log, 0, .max, &buffer, 1_000, &result) == KSTORE_OK)
        #expect(
            result.entry_count == 2 && result.byte_count == 150 && result.next_offset == 77
                && result.first_entry_bytes == 77
        )

        var state = kstore_log_state()
        state.struct_size = 24  // struct_size, reserved, start_offset, end_offset
        state.durable_end_offset = 77
        state.max_timestamp = 77
        state.end_offset = 77
        #expect(methods.state(log, &state) == KSTORE_OK)
        #expect(
            state.start_offset == 0 && state.end_offset == 5 && state.durable_end_offset == 77
                && state.max_timestamp == 77
        )
    }

    /// last_error returns the full length and truncates what it copies, NUL-terminated.
    @Test(arguments: StorageBackend.builtinNames)
    func lastErrorTruncatesButReportsTheFullLength(name: String) throws {
        let instance = try CInstance(StorageBackend.builtin(named: name))
        defer { instance.close() }
        var log: UnsafeMutablePointer<kstore_log>? = nil
        #expect(instance.table.open_log(instance.pointer, "missing", 0, nil, 0, &log) == KSTORE_ERR_NOT_FOUND)
        #expect(log == nil)
        let length = instance.table.last_error(instance.pointer, nil, 0)
        #expect(length > 8)
        var small = [CChar](repeating: 65, count: 8)
        #expect(instance.table.last_error(instance.pointer, &small, small.count) == length)
        #expect(small[7] == 0 && strlen(small) == 7)
        #expect(instance.lastError().utf8.count == length)
    }

    /// open with NULL options but a count, or a NULL key, is an invalid argument with a reason.
    @Test(arguments: StorageBackend.builtinNames)
    func badInstanceOptionsAreInvalid(name: String) throws {
        let table = try StorageBackend.builtin(named: name).table.members
        var instance: UnsafeMutablePointer<kstore_instance>? = nil
        var reason = [CChar](repeating: 0, count: 256)
        #expect(table.open(nil, 1, &instance, &reason, reason.count) == KSTORE_ERR_INVALID_ARGUMENT)
        #expect(instance == nil && strlen(reason) > 0)
        var option = kstore_option(key: nil, value: nil)
        #expect(table.open(&option, 1, &instance, nil, 0) == KSTORE_ERR_INVALID_ARGUMENT)
        #expect(instance == nil)
    }

    /// control answers UNSUPPORTED for an op the backend does not know, on the instance and logs.
    @Test(arguments: StorageBackend.builtinNames)
    func unknownControlOpsAreUnsupported(name: String) throws {
        let instance = try CInstance(StorageBackend.builtin(named: name))
        defer { instance.close() }
        if let control = instance.table.control {
            #expect(control(instance.pointer, 0x7fff_0001, nil) == KSTORE_ERR_UNSUPPORTED)
        }
        let log = try instance.openLog("control", flags: UInt32(KSTORE_OPEN_CREATE))
        defer { log.pointee.methods.pointee.close(log) }
        if let control = log.pointee.methods.pointee.control {
            #expect(control(log, 0x7fff_0001, nil) == KSTORE_ERR_UNSUPPORTED)
        }
    }

    /// list_logs visits every log once.
    @Test(arguments: StorageBackend.builtinNames)
    func listLogsVisitsEveryLogOnce(name: String) throws {
        let instance = try CInstance(StorageBackend.builtin(named: name))
        defer { instance.close() }
        let names = (0..<40).map { "log-\($0)" }
        for name in names {
            let log = try instance.openLog(name, flags: UInt32(KSTORE_OPEN_CREATE))
            log.pointee.methods.pointee.close(log)
        }
        var seen: [String] = []
        let status = withUnsafeMutablePointer(to: &seen) { seen in
            instance.table.list_logs(
                instance.pointer,
                { context, name in
                    context!.assumingMemoryBound(to: [String].self).pointee.append(String(cString: name!))
                },
                seen
            )
        }
        #expect(status == KSTORE_OK)
        #expect(seen.sorted() == names.sorted())
    }

    /// Reader threads running against one writer thread through the C table only ever see whole,
    /// contiguous entries (the per-log reader/writer rule of kstore.h "Threading").
    @Test(.timeLimit(.minutes(2)), arguments: StorageBackend.builtinNames)
    func readerThreadsDuringAWriterThreadSeeWholeEntries(name: String) throws {
        let instance = try CInstance(StorageBackend.builtin(named: name))
        defer { instance.close() }
        let log = LogPointer(pointer: try instance.openLog("threads", flags: UInt32(KSTORE_OPEN_CREATE)))
        defer { log.pointer.pointee.methods.pointee.close(log.pointer) }
        let entryCountTotal = 2_000
        let end = Atomic<Int64>(0)
        let done = Atomic<Bool>(false)
        let failures = LockedState<[String]>([])
        let readCount = Atomic<Int>(0)
        let finished = DispatchGroup()

        let writer = Thread {
            defer {
                done.store(true, ordering: .releasing)
                finished.leave()
            }
            let counter = CompletionCounter()
            var next: Int64 = 0
            for index in 0..<entryCountTotal {
                let last = next + Int64(index % 3)
                guard
                    Self.append(
                        log.pointer,
                        first: next,
                        last: last,
                        byteCount: 28 + (index * 13) % 700,
                        counter: counter
                    ) == KSTORE_OK,
                    counter.wait(for: index + 1)
                else {
                    failures.withLock { $0.append("append \(index) failed") }
                    return
                }
                next = last + 1
                end.store(next, ordering: .releasing)
            }
        }
        var readers: [Thread] = []
        for reader in 0..<3 {
            readers.append(
                Thread {
                    defer { finished.leave() }
                    var buffer = [UInt8](repeating: 0, count: 8_192)
                    var reads = 0
                    while true {
                        let stop = done.load(ordering: .acquiring)
                        let limit = end.load(ordering: .acquiring)
                        let offset = limit == 0 ? 0 : Int64.random(in: 0..<limit)
                        var result = kstore_read_result()
                        result.struct_size = UInt32(MemoryLayout<kstore_read_result>.size)
                        let capacity = [100, 1_000, 8_192][(reads + reader) % 3]
                        let status = buffer.withUnsafeMutableBytes { bytes in
                            log.pointer.pointee.methods.pointee.read(
                                log.pointer,
                                offset,
                                .max,
                                bytes.baseAddress,
                                UInt64(capacity),
                                &result
                            )
                        }
                        reads += 1
                        readCount.add(1, ordering: .relaxed)
                        guard status == KSTORE_OK else {
                            failures.withLock { $0.append("read at \(offset) failed with \(status)") }
                            return
                        }
                        do {
                            let entries = try TestEntry.parse(ByteBuffer(bytes: buffer.prefix(Int(result.byte_count))))
                            if let first = entries.first, !(first.firstOffset <= offset && offset <= first.lastOffset) {
                                failures.withLock {
                                    $0.append("read at \(offset) began with entry \(first.firstOffset)")
                                }
                            }
                            for (a, b) in zip(entries, entries.dropFirst()) where b.firstOffset != a.lastOffset + 1 {
                                failures.withLock { $0.append("gap after \(a.lastOffset)") }
                            }
                            if entries.count != Int(result.entry_count) {
                                failures.withLock {
                                    $0.append("entry_count \(result.entry_count) for \(entries.count) entries")
                                }
                            }
                        } catch {
                            failures.withLock { $0.append("\(error)") }
                        }
                        if stop { return }
                        sched_yield()
                    }
                }
            )
        }
        for _ in 0..<4 { finished.enter() }
        writer.start()
        for reader in readers { reader.start() }
        #expect(finished.wait(timeout: .now() + 100) == .success)
        #expect(failures.withLock { $0 } == [])
        #expect(readCount.load(ordering: .relaxed) >= 3)
    }
}

/// A log handle shared with test threads; kstore.h allows reads concurrently with one writer.
struct LogPointer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<kstore_log>
}
