import CKStore
import Foundation
import KStoreFaulty
import KStoreFile
import Logging
import NIOCore
import StorageBackends
import StorageHost
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Helpers for the file backend, power-loss and faulty-shim tests.

/// A fresh directory under the temporary directory; `remove()` deletes it.
struct ScratchDirectory: Sendable {
    let path: String

    init(_ label: String) throws {
        self.path =
            FileManager.default.temporaryDirectory
            .appendingPathComponent("fjord-\(label)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: self.path, withIntermediateDirectories: true)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: self.path)
    }

    func file(_ relative: String) -> String { self.path + "/" + relative }
}

/// Opens an engine of `backend` on `path`, with more instance `options` (e.g. file.open.files.max).
func openEngine(
    _ backend: StorageBackend,
    path: String,
    threads: Int = 2,
    options: [(key: String, value: String)] = []
) throws -> StorageEngine {
    try StorageEngine.open(
        backend: backend,
        options: [(key: "path", value: path)] + options,
        logger: quietLogger,
        blockingThreadCount: threads
    )
}

/// How many of this process's descriptors are open on `directory` or anything below it
/// (/proc/self/fd). Tests run in parallel in one process, so counting every descriptor would count
/// theirs too; counting by path counts only what the instance on `directory` holds.
func descriptorsBelow(_ directory: String) -> Int {
    let root = URL(fileURLWithPath: directory).resolvingSymlinksInPath().path
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return -1 }
    var count = 0
    var target = [CChar](repeating: 0, count: 4_096)
    for name in names {
        let length = readlink("/proc/self/fd/" + name, &target, target.count - 1)
        guard length > 0 else { continue }
        let path = String(decoding: target[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if path == root || path.hasPrefix(root + "/") { count += 1 }
    }
    return count
}

extension StorageEngine {
    /// The file backend's descriptor cache (kstore_file.h), or nil for other backends.
    func descriptorInfo() -> kstore_file_descriptor_info? {
        var info = kstore_file_descriptor_info()
        info.struct_size = UInt32(MemoryLayout<kstore_file_descriptor_info>.size)
        guard self.control(KSTORE_FILE_CONTROL_DESCRIPTOR_INFO, &info) == KSTORE_OK else { return nil }
        return info
    }
}

func fileBackend() throws -> StorageBackend { try StorageBackend.builtin(named: "file") }

/// The faulty shim over the file backend (one table for the whole test process, see FaultyTables):
/// the way tests inject I/O faults into the file backend's system calls.
func faultyFileBackend() throws -> StorageBackend {
    let inner = try fileBackend().tableAddress.assumingMemoryBound(to: kstore_backend.self)
    return try StorageBackend(validatingTable: try FaultyTables.table(wrapping: inner), origin: "faulty shim (file)")
}

extension StorageEngine {
    /// Through the faulty shim: fails the next `fail` calls of one I/O operation of the inner backend
    /// (`KSTORE_FAULTY_IO_*`) with `error` (an errno), after `skip` of them succeed; `torn` writes
    /// land half their bytes before failing (kstore_faulty.h KSTORE_FAULTY_CONTROL_FAIL_IO).
    func failIO(_ operation: Int32, error: Int32, skip: UInt32 = 0, fail: UInt32 = 1, torn: Bool = false) -> Int32 {
        var argument = kstore_faulty_io_fault(
            struct_size: UInt32(MemoryLayout<kstore_faulty_io_fault>.size),
            operation: UInt32(operation),
            error: error,
            skip_count: skip,
            fail_count: fail,
            torn: torn ? 1 : 0
        )
        return self.control(KSTORE_FAULTY_CONTROL_FAIL_IO, &argument)
    }

    /// The backend's last_error text.
    var lastError: String { self.context.lastErrorText() }
}

extension StorageLog {
    /// What the file backend's open_log found (kstore_file.h), or nil for other backends.
    func recoveryInfo() -> kstore_file_recovery_info? {
        var info = kstore_file_recovery_info()
        info.struct_size = UInt32(MemoryLayout<kstore_file_recovery_info>.size)
        guard self.control(KSTORE_FILE_LOG_CONTROL_RECOVERY_INFO, &info) == KSTORE_OK else { return nil }
        return info
    }

    /// Appends one test entry and waits for it.
    func appendEntry(_ entry: TestEntry.Parsed) async throws {
        try await self.append(
            firstOffset: entry.firstOffset,
            lastOffset: entry.lastOffset,
            maxTimestamp: entry.maxTimestamp,
            parts: StorageLog.split(
                TestEntry.make(
                    firstOffset: entry.firstOffset,
                    lastOffset: entry.lastOffset,
                    maxTimestamp: entry.maxTimestamp,
                    byteCount: entry.byteCount
                )
            )
        )
    }
}

/// Names of the regular files under `directory` (recursively, relative paths), sorted.
func filesBelow(_ directory: String) -> [String] {
    guard let enumerator = FileManager.default.enumerator(atPath: directory) else { return [] }
    var files: [String] = []
    while let relative = enumerator.nextObject() as? String {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory + "/" + relative, isDirectory: &isDirectory),
            !isDirectory.boolValue
        {
            files.append(relative)
        }
    }
    return files.sorted()
}

/// The segment files (`*.log`) of a file-backend log, sorted.
func segmentFiles(_ dataDirectory: String, log: String) -> [String] {
    let directory = dataDirectory + "/logs/" + log
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    return names.filter { $0.hasSuffix(".log") }.sorted()
}

func fileSize(_ path: String) -> Int {
    ((try? FileManager.default.attributesOfItem(atPath: path)[.size]) as? NSNumber)?.intValue ?? -1
}

/// The bytes of the file at `path`, read with POSIX calls. (Under AddressSanitizer,
/// `Data(contentsOf:)` reports its buffers as leaked, which would bury real findings.)
func readFileBytes(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    defer { close(fd) }
    var status = stat()
    guard fstat(fd, &status) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    let size = Int(status.st_size)
    var failure: Int32 = 0
    let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
        count = 0
        while count < size {
            let got = read(fd, buffer.baseAddress! + count, size - count)
            if got < 0 && errno == EINTR { continue }
            if got <= 0 {
                failure = got < 0 ? errno : 0
                break
            }
            count += got
        }
    }
    if failure != 0 { throw POSIXError(POSIXErrorCode(rawValue: failure) ?? .EIO) }
    return bytes
}

/// Appends `bytes` to the file at `path`.
func appendBytes(_ bytes: [UInt8], to path: String) throws {
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    defer { try? handle.close() }
    try handle.seekToEnd()
    try handle.write(contentsOf: Data(bytes))
}

/// Overwrites bytes at `position` of the file at `path`.
func overwrite(_ path: String, at position: Int, with bytes: [UInt8]) throws {
    let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
    defer { try? handle.close() }
    try handle.seek(toOffset: UInt64(position))
    try handle.write(contentsOf: Data(bytes))
}

/// The process's resident set size in bytes (/proc/self/statm).
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return -1 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return -1 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// Mounts a tmpfs at `directory` (`options` like "size=2m" or "ro,size=1m"); false when this
/// process may not mount (then the caller skips with a reason).
func mountTemporaryFilesystem(at directory: String, options: String) -> Bool {
    mount("tmpfs", directory, "tmpfs", 0, options) == 0
}

func unmountFilesystem(at directory: String) {
    _ = umount2(directory, 2)  // MNT_DETACH
}

/// Whether this process may mount a tmpfs (root in a container with CAP_SYS_ADMIN).
let canMountTemporaryFilesystems: Bool = {
    guard let scratch = try? ScratchDirectory("mount-probe") else { return false }
    defer { scratch.remove() }
    guard mountTemporaryFilesystem(at: scratch.path, options: "size=64k") else { return false }
    unmountFilesystem(at: scratch.path)
    return true
}()

/// A small deterministic random number generator (SplitMix64) for seeded, replayable tests.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { self.state = seed }

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
