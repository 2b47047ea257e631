import CKStore
import Foundation
import NIOCore
import StorageBackends
import Testing

@testable import StorageHost
@testable import StorageTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The files of a data directory at one moment.
struct DirectoryImage: Sendable {
    struct File: Sendable, Equatable {
        var inode: UInt64
        var bytes: [UInt8]
    }

    /// Relative path → file.
    var files: [String: File] = [:]
    /// Relative paths of the directories.
    var directories: Set<String> = []

    /// Reads every file under `root`. Files equal to `previous`'s share its storage, so a history
    /// of images costs only what changed.
    static func capture(_ root: String, previous: DirectoryImage? = nil) throws -> DirectoryImage {
        var image = DirectoryImage()
        guard let enumerator = FileManager.default.enumerator(atPath: root) else { return image }
        while let relative = enumerator.nextObject() as? String {
            let path = root + "/" + relative
            var status = stat()
            guard lstat(path, &status) == 0 else { continue }
            if (status.st_mode & S_IFMT) == S_IFDIR {
                image.directories.insert(relative)
                continue
            }
            guard (status.st_mode & S_IFMT) == S_IFREG else { continue }
            let bytes = try readFileBytes(path)
            var file = File(inode: UInt64(status.st_ino), bytes: bytes)
            if let old = previous?.files[relative], old == file { file = old }
            image.files[relative] = file
        }
        return image
    }

    /// Writes the image into the (empty) directory `root`.
    func write(to root: String) throws {
        for directory in self.directories.sorted() {
            try FileManager.default.createDirectory(atPath: root + "/" + directory, withIntermediateDirectories: true)
        }
        for (relative, file) in self.files {
            let path = root + "/" + relative
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent,
                withIntermediateDirectories: true
            )
            try Data(file.bytes).write(to: URL(fileURLWithPath: path))
        }
    }

    /// What a power loss during the operation that turned `self` into `next` may leave on disk.
    ///
    /// Writes reach the disk in the order they were made, up to the crash (the file backend
    /// fdatasyncs a segment before it creates the next one, so a sealed segment cannot lose bytes
    /// that a later segment kept): everything before the operation is whole, and the operation's own
    /// changes are torn. For each file the operation changed in place: `self`'s bytes up to the first
    /// byte where `next` differs, then a random prefix of `next`'s bytes from there, then random
    /// garbage of random length (zeros sometimes). A file the operation created is torn the same way
    /// from nothing; a file it replaced by rename is the old or the new one, whole. The operation's
    /// directory changes (creations, deletions, renames) all persisted, or none did.
    func tornInto(_ next: DirectoryImage, using random: inout SeededGenerator) -> DirectoryImage {
        let namespaceChanged = Bool.random(using: &random)
        var result = DirectoryImage(directories: namespaceChanged ? next.directories : self.directories)
        let paths = namespaceChanged ? Array(next.files.keys) : Array(self.files.keys)
        for path in paths.sorted() {
            switch (self.files[path], next.files[path]) {
            case (let old?, let new?) where old.inode == new.inode:
                result.files[path] = File(inode: new.inode, bytes: Self.torn(old.bytes, new.bytes, using: &random))
            case (let old?, let new?):
                result.files[path] = Bool.random(using: &random) ? old : new
            case (nil, let new?):
                result.files[path] = File(inode: new.inode, bytes: Self.torn([], new.bytes, using: &random))
            case (let old?, nil):
                result.files[path] = old
            case (nil, nil):
                break
            }
        }
        return result
    }

    static func torn(_ old: [UInt8], _ new: [UInt8], using random: inout SeededGenerator) -> [UInt8] {
        if old == new { return old }
        let common = min(old.count, new.count)
        var first = 0
        while first < common && old[first] == new[first] { first += 1 }
        let kept = Int.random(in: 0...(new.count - first), using: &random)
        let garbageBytes: Int
        switch Int.random(in: 0..<4, using: &random) {
        case 0: garbageBytes = 0
        case 1, 2: garbageBytes = Int.random(in: 1...64, using: &random)
        default: garbageBytes = Int.random(in: 65...4_096, using: &random)
        }
        let zeros = Int.random(in: 0..<3, using: &random) == 0
        var bytes = Array(old[0..<first]) + Array(new[first..<(first + kept)])
        bytes.reserveCapacity(bytes.count + garbageBytes)
        for _ in 0..<garbageBytes { bytes.append(zeros ? 0 : UInt8.random(in: 0...255, using: &random)) }
        return bytes
    }
}

/// Power-loss simulation, seeded and replayable, for every DURABLE built-in backend (DESIGN.md §3,
/// §7; STYLE 18): a random workload runs against a data directory whose files are captured after
/// every operation from the last completed sync on; at a random point the instance is abandoned (a
/// dead process does not close), a torn image of the directory is built, and a fresh instance must
/// open it with every synced entry intact and nothing but a clean prefix of what was appended.
@Suite("Power loss")
struct PowerLossTests {
    /// FJORD_POWERLOSS_SEED=n replays one seed; FJORD_POWERLOSS_SEEDS=n runs seeds 1...n (default 50).
    static let seeds: [UInt64] = {
        let environment = ProcessInfo.processInfo.environment
        if let replay = environment["FJORD_POWERLOSS_SEED"].flatMap({ UInt64($0) }) { return [replay] }
        let count = environment["FJORD_POWERLOSS_SEEDS"].flatMap { Int($0) } ?? 50
        return (1...UInt64(max(count, 1))).map { $0 }
    }()

    /// What the test knows about one log.
    struct Model {
        var name: String
        var options: [(key: String, value: String)]
        var entries: [TestEntry.Parsed] = []
        var startOffset: Int64 = 0
        var syncedEnd: Int64 = 0
        var endOffset: Int64 { self.entries.last.map { $0.lastOffset + 1 } ?? 0 }
        var byteCount: Int { self.entries.filter { $0.lastOffset >= self.startOffset }.reduce(0) { $0 + $1.byteCount } }
    }

    /// The directory and every log's start and end after one operation.
    struct Moment {
        var image: DirectoryImage
        var starts: [Int64]
        var ends: [Int64]
    }

    /// Every entry appended before the last completed sync survives a power loss at any later
    /// point, byte for byte, and the recovered log is a clean prefix of what was appended: whole
    /// entries, in order, no gaps, no garbage; the log then takes appends again.
    @Test(.timeLimit(.minutes(10)), arguments: durableBuiltinNames, PowerLossTests.seeds)
    func syncedEntriesSurviveAPowerLoss(backend: String, seed: UInt64) async throws {
        try await Self.powerLoss(backend: backend, seed: seed)
    }

    /// The same with the file backend's descriptor cache at its smallest (file.open.files.max=4) and
    /// up to eight logs, so descriptors with unsynced writes are closed between the operations (the
    /// first 20 seeds: CI time).
    @Test(.timeLimit(.minutes(10)), arguments: PowerLossTests.seeds.prefix(20))
    func syncedEntriesSurviveAPowerLossWithATinyDescriptorCache(seed: UInt64) async throws {
        try await Self.powerLoss(
            backend: "file",
            seed: seed,
            options: [(key: "file.open.files.max", value: "4")],
            logCounts: 4...8
        )
    }

    /// One seeded power-loss run (see syncedEntriesSurviveAPowerLoss) on an instance opened with
    /// `options`, over a number of logs drawn from `logCounts`.
    static func powerLoss(
        backend: String,
        seed: UInt64,
        options instanceOptions: [(key: String, value: String)] = [],
        logCounts: ClosedRange<Int> = 1...3
    ) async throws {
        print("power loss: backend '\(backend)' seed \(seed) (replay: FJORD_POWERLOSS_SEED=\(seed))")
        var random = SeededGenerator(seed: seed)
        let original = try ScratchDirectory("powerloss-\(backend)-\(seed)")
        let recovered = try ScratchDirectory("powerloss-\(backend)-\(seed)-after")
        defer {
            original.remove()
            recovered.remove()
        }
        let storage = try StorageBackend.builtin(named: backend)
        let engine = try openEngine(storage, path: original.path, options: instanceOptions)
        var models: [Model] = []
        var logs: [StorageLog] = []
        for index in 0..<Int.random(in: logCounts, using: &random) {
            let segmentBytes = [600, 1_500, 4_096, 1 << 20].randomElement(using: &random)!
            let interval = [64, 256, 4_096].randomElement(using: &random)!
            let options = [
                (key: "segment.bytes", value: String(segmentBytes)),
                (key: "index.interval.bytes", value: String(interval)),
            ]
            models.append(Model(name: "p-\(index)", options: options))
            logs.append(try await engine.openLog(named: "p-\(index)", create: true, options: options))
        }
        func moment(_ previous: DirectoryImage?) throws -> Moment {
            Moment(
                image: try DirectoryImage.capture(original.path, previous: previous),
                starts: models.map(\.startOffset),
                ends: models.map(\.endOffset)
            )
        }
        // history[0]: the directory when the last sync completed (or at the start).
        var history = [try moment(nil)]
        var clock: Int64 = 1_000
        for _ in 0..<Int.random(in: 20...120, using: &random) {
            let index = Int.random(in: 0..<logs.count, using: &random)
            let log = logs[index]
            let choice = Int.random(in: 0..<100, using: &random)
            if choice < 70 {
                clock += Int64.random(in: 0...20, using: &random)
                let entry = TestEntry.Parsed(
                    firstOffset: models[index].endOffset,
                    lastOffset: models[index].endOffset + Int64.random(in: 0...4, using: &random),
                    maxTimestamp: Int.random(in: 0..<10, using: &random) == 0 ? -1 : clock,
                    byteCount: Int.random(in: 0..<20, using: &random) == 0
                        ? Int.random(in: 1_000...5_000, using: &random) : Int.random(in: 28...700, using: &random)
                )
                try await log.appendEntry(entry)
                models[index].entries.append(entry)
            } else if choice < 88 {
                try await log.sync()
                models[index].syncedEnd = models[index].endOffset
                history = [try moment(history.last?.image)]
                continue
            } else if choice < 95 {
                let model = models[index]
                let newStart: Int64
                if Bool.random(using: &random) {
                    let keep = Int64.random(in: 0...Int64(max(model.byteCount, 1)), using: &random)
                    newStart = try await log.enforceRetention(retainBytes: keep, retainAfterTimestamp: -1)
                } else {
                    let threshold = model.entries.randomElement(using: &random)?.maxTimestamp ?? 0
                    newStart = try await log.enforceRetention(retainBytes: -1, retainAfterTimestamp: threshold)
                }
                #expect(newStart >= model.startOffset && newStart <= model.endOffset)
                models[index].startOffset = max(model.startOffset, newStart)
            } else {
                let model = models[index]
                let offset = Int64.random(in: model.startOffset...model.endOffset, using: &random)
                try await log.deleteBefore(offset)
                models[index].startOffset = max(model.startOffset, offset)
            }
            history.append(try moment(history.last?.image))
        }

        // The power loss: the instance is abandoned, not closed, and what reached the disk is a torn
        // image of the directory at a random moment since the last completed sync.
        let crash = Int.random(in: 0..<history.count, using: &random)
        let limits = history[min(crash + 1, history.count - 1)]
        let image =
            crash + 1 < history.count
            ? history[crash].image.tornInto(history[crash + 1].image, using: &random) : history[crash].image
        try image.write(to: recovered.path)

        let reopened = try openEngine(storage, path: recovered.path, options: instanceOptions)
        for (index, model) in models.enumerated() {
            let context = "log \(model.name), seed \(seed), moment \(crash) of \(history.count - 1)"
            let log = try await reopened.openLog(named: model.name, create: false, options: model.options)
            let state = try log.state()
            #expect(state.startOffset <= limits.starts[index], "\(context)")
            #expect(state.endOffset <= limits.ends[index], "\(context)")
            #expect(state.durableEndOffset == state.endOffset, "\(context)")
            if state.startOffset < model.syncedEnd {
                #expect(state.endOffset >= model.syncedEnd, "synced entries lost: \(context), \(state)")
            }
            let expected = model.entries.filter {
                $0.lastOffset >= state.startOffset && $0.firstOffset < state.endOffset
            }
            let entries = state.startOffset < state.endOffset ? try await log.readAll(from: state.startOffset) : []
            #expect(entries == expected, "\(context)")
            #expect((expected.last.map { $0.lastOffset + 1 } ?? state.startOffset) == state.endOffset, "\(context)")
            #expect(state.entryCount == UInt64(expected.count), "\(context)")
            #expect(state.byteCount == expected.reduce(0) { $0 + UInt64($1.byteCount) }, "\(context)")
            // The recovered log takes appends again.
            let next = TestEntry.Parsed(
                firstOffset: state.endOffset,
                lastOffset: state.endOffset + 1,
                maxTimestamp: clock,
                byteCount: 100
            )
            try await log.appendEntry(next)
            try await log.sync()
            #expect(try await log.readAll(from: state.startOffset) == expected + [next], "\(context)")
            await log.close()
        }
        await reopened.close()
        // The abandoned instance's files were imaged above; closing it now only frees its threads and
        // descriptors.
        await engine.close()
    }

    /// A damaged frame followed by good ones is damage to acknowledged data, not a torn write:
    /// open_log answers CORRUPT and names the file and the position.
    @Test(arguments: durableBuiltinNames)
    func aBadFrameFollowedByGoodFramesIsCorrupt(backend: String) async throws {
        let original = try ScratchDirectory("corrupt-\(backend)")
        let copy = try ScratchDirectory("corrupt-\(backend)-copy")
        defer {
            original.remove()
            copy.remove()
        }
        let storage = try StorageBackend.builtin(named: backend)
        let engine = try openEngine(storage, path: original.path)
        let log = try await engine.openLog(named: "c", create: true)
        var plan = LogPlan()
        for index in 0..<50 { plan.add(offsetCount: 2, maxTimestamp: Int64(index), byteCount: 200) }
        try await log.append(plan)
        // As a crash leaves it: the instance is not closed first.
        try DirectoryImage.capture(original.path).write(to: copy.path)
        await log.close()
        await engine.close()

        // Find entry 10's bytes and change one byte of its payload.
        let target = plan.entries[10]
        let needle = [UInt8](
            buffer: TestEntry.make(
                firstOffset: target.firstOffset,
                lastOffset: target.lastOffset,
                maxTimestamp: target.maxTimestamp,
                byteCount: target.byteCount
            )
        ).prefix(TestEntry.headerBytes)
        var hits: [(file: String, position: Int)] = []
        for file in filesBelow(copy.path) {
            let bytes = try readFileBytes(copy.file(file))
            var position = 0
            while position + needle.count <= bytes.count {
                if bytes[position..<(position + needle.count)].elementsEqual(needle) { hits.append((file, position)) }
                position += 1
            }
        }
        let hit = try #require(hits.count == 1 ? hits.first : nil, "entry 10 stored once: \(hits)")
        try overwrite(copy.file(hit.file), at: hit.position + 40, with: [0xFF])

        let reopened = try openEngine(storage, path: copy.path)
        do {
            let damaged = try await reopened.openLog(named: "c", create: false)
            Issue.record("a damaged frame in the middle of the log was accepted")
            await damaged.close()
        } catch let error as StorageError {
            #expect(error.code == .corrupt && error.isDataLoss)
            let fileName = (hit.file as NSString).lastPathComponent
            #expect(error.message.contains(fileName) && error.message.contains("position"), "\(error.message)")
            if backend == "file" {
                // The frame header (40 bytes) precedes the entry.
                #expect(error.message.contains("position \(hit.position - 40):"), "\(error.message)")
            }
        }
        await reopened.close()
    }
}
