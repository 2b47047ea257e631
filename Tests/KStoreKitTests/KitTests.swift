import CKStore
import Foundation
import KStoreKit
import Testing

@testable import StorageTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// C strings that live as long as the value (for spec tables and option arrays handed to the kit).
final class CStrings {
    private var pointers: [UnsafeMutablePointer<CChar>] = []

    func callAsFunction(_ text: String) -> UnsafePointer<CChar> {
        let pointer = strdup(text)!
        self.pointers.append(pointer)
        return UnsafePointer(pointer)
    }

    deinit { self.pointers.forEach { free($0) } }
}

/// The message kstore_kit_parse_options or kstore_kit_data_directory_open wrote.
private func text(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// The shared C of the backends (Backends/kit), called directly: the option parser, the data
/// directory's lock and marker, the error slot and the system-call wrappers with their fault hook.
@Suite("Backend kit")
struct KitTests {
    // MARK: Options

    /// What one parse found: its status and message, and the targets.
    struct Parsed {
        var status: Int32 = KSTORE_OK
        var message = ""
        var path: String? = nil
        var count: Int64 = 7
        var size: UInt64 = 4096
        var choice: Int32 = -1
    }

    /// Parses `options` against a table with a required text ("path"), a positive decimal
    /// ("count", default 7), a size in [4096, 1 MiB] that is a multiple of 4096 ("size") and a choice
    /// of "write", "fallocate" or "none" ("zero").
    static func parse(_ options: [(String?, String?)]) -> Parsed {
        let strings = CStrings()
        var parsed = Parsed()
        var path: UnsafePointer<CChar>? = nil
        var count: Int64 = 7
        var size: UInt64 = 4096
        var choice: Int32 = -1
        var choices: [UnsafePointer<CChar>?] = [strings("write"), strings("fallocate"), strings("none"), nil]
        var message = [CChar](repeating: 0, count: 256)
        let array = options.map { kstore_option(key: $0.0.map { strings($0) }, value: $0.1.map { strings($0) }) }
        let status = withUnsafeMutablePointer(to: &path) { pathTarget in
            withUnsafeMutablePointer(to: &count) { countTarget in
                withUnsafeMutablePointer(to: &size) { sizeTarget in
                    withUnsafeMutablePointer(to: &choice) { choiceTarget in
                        choices.withUnsafeMutableBufferPointer { choiceList in
                            var specs = [
                                kstore_kit_option_spec(
                                    key: strings("path"),
                                    kind: KSTORE_KIT_OPTION_TEXT,
                                    required: true,
                                    meaning: strings("the data directory"),
                                    minimum: 0,
                                    maximum: 0,
                                    multiple: 0,
                                    choices: nil,
                                    target: UnsafeMutableRawPointer(pathTarget)
                                ),
                                kstore_kit_option_spec(
                                    key: strings("count"),
                                    kind: KSTORE_KIT_OPTION_POSITIVE,
                                    required: false,
                                    meaning: nil,
                                    minimum: 0,
                                    maximum: 0,
                                    multiple: 0,
                                    choices: nil,
                                    target: UnsafeMutableRawPointer(countTarget)
                                ),
                                kstore_kit_option_spec(
                                    key: strings("size"),
                                    kind: KSTORE_KIT_OPTION_SIZE,
                                    required: false,
                                    meaning: nil,
                                    minimum: 4096,
                                    maximum: 1 << 20,
                                    multiple: 4096,
                                    choices: nil,
                                    target: UnsafeMutableRawPointer(sizeTarget)
                                ),
                                kstore_kit_option_spec(
                                    key: strings("zero"),
                                    kind: KSTORE_KIT_OPTION_CHOICE,
                                    required: false,
                                    meaning: nil,
                                    minimum: 0,
                                    maximum: 0,
                                    multiple: 0,
                                    choices: UnsafePointer(choiceList.baseAddress),
                                    target: UnsafeMutableRawPointer(choiceTarget)
                                ),
                            ]
                            return array.withUnsafeBufferPointer { options in
                                kstore_kit_parse_options(
                                    "test backend",
                                    options.baseAddress,
                                    UInt32(options.count),
                                    &specs,
                                    specs.count,
                                    &message,
                                    message.count
                                )
                            }
                        }
                    }
                }
            }
        }
        parsed.status = status
        parsed.message = text(message)
        parsed.path = path.map { String(cString: $0) }
        parsed.count = count
        parsed.size = size
        parsed.choice = choice
        return parsed
    }

    /// Known options are parsed into their targets (the last of repeated keys counts); unknown keys
    /// are ignored and absent options keep their defaults.
    @Test func knownOptionsAreParsedAndUnknownOnesIgnored() {
        let parsed = Self.parse([
            ("path", "/a"), ("size", "8192"), ("unknown", "x"), ("path", "/b"), ("zero", "none"),
        ])
        #expect(parsed.status == KSTORE_OK, "\(parsed.message)")
        #expect(parsed.path == "/b")
        #expect(parsed.count == 7)
        #expect(parsed.size == 8192)
        #expect(parsed.choice == 2)
    }

    /// Each bad input is INVALID_ARGUMENT with a message naming the backend and the key.
    @Test(
        arguments: [
            ([("count", "1")], "test backend: the option 'path' (the data directory) is required"),
            ([("path", "/a"), ("path", "")], "test backend: the option 'path' (the data directory) is required"),
            ([("path", "/a"), ("count", "0")], "test backend: option count has bad value '0' (a positive decimal)"),
            (
                [("path", "/a"), ("count", "12x")],
                "test backend: option count has bad value '12x' (a positive decimal)"
            ),
            (
                [("path", "/a"), ("size", "1024")],
                "test backend: option size has bad value '1024' (a decimal in [4096, 1048576])"
            ),
            (
                [("path", "/a"), ("size", "2097152")],
                "test backend: option size has bad value '2097152' (a decimal in [4096, 1048576])"
            ),
            ([("path", "/a"), ("size", "5000")], "test backend: option size must be a multiple of 4096"),
            ([("path", "/a"), ("zero", "zeros")], "test backend: option zero is 'write', 'fallocate' or 'none'"),
        ] as [([(String, String)], String)]
    )
    func badOptionsAreInvalidWithAClearMessage(options: [(String, String)], message: String) {
        let parsed = Self.parse(options.map { ($0.0, $0.1) })
        #expect(parsed.status == KSTORE_ERR_INVALID_ARGUMENT)
        #expect(parsed.message == message)
    }

    /// A NULL key or value, or a NULL array with a count, is INVALID_ARGUMENT.
    @Test func nullKeysAndValuesAreInvalid() {
        let parsed = Self.parse([("path", "/a"), (nil, "x")])
        #expect(parsed.status == KSTORE_ERR_INVALID_ARGUMENT)
        #expect(parsed.message == "test backend: an option key or value is NULL")
        var message = [CChar](repeating: 0, count: 128)
        #expect(
            kstore_kit_parse_options("test backend", nil, 2, nil, 0, &message, message.count)
                == KSTORE_ERR_INVALID_ARGUMENT
        )
        #expect(text(message) == "test backend: options is NULL")
    }

    // MARK: The data directory

    static func openDirectory(_ path: String, marker: String = "test 7\n") -> (Int32, String, kstore_kit_data_directory)
    {
        var directory = kstore_kit_data_directory()
        var io = kstore_kit_io()
        kstore_kit_io_init(&io)
        var message = [CChar](repeating: 0, count: 512)
        let status = kstore_kit_data_directory_open(&directory, path, marker, &io, &message, message.count)
        return (status, text(message), directory)
    }

    /// A fresh directory gets the marker and the lock with our pid; a second open is BUSY naming the
    /// pid, and once the first is closed the directory opens again.
    @Test func theLockIsExclusiveAndNamesItsHolder() throws {
        let scratch = try ScratchDirectory("kit-lock")
        defer { scratch.remove() }
        var (status, message, first) = Self.openDirectory(scratch.path)
        #expect(status == KSTORE_OK, "\(message)")
        #expect(String(decoding: try readFileBytes(scratch.file(".fjord-backend")), as: UTF8.self) == "test 7\n")
        #expect(String(decoding: try readFileBytes(scratch.file(".lock")), as: UTF8.self) == "\(getpid())\n")
        var second: kstore_kit_data_directory
        (status, message, second) = Self.openDirectory(scratch.path)
        #expect(status == KSTORE_ERR_BUSY)
        #expect(message == "data directory \(scratch.path) is locked by another process (pid \(getpid()))")
        kstore_kit_data_directory_close(&second)
        kstore_kit_data_directory_close(&first)
        kstore_kit_data_directory_close(&first)  // twice is harmless
        // A process another test spawns at this moment holds a copy of the lock descriptor between
        // its fork and its exec (O_CLOEXEC closes it only then), and with it the flock: retry briefly.
        for _ in 0..<200 {
            (status, message, second) = Self.openDirectory(scratch.path)
            if status != KSTORE_ERR_BUSY { break }
            usleep(10_000)
        }
        #expect(status == KSTORE_OK, "\(message)")
        kstore_kit_data_directory_close(&second)
    }

    /// A marker of another backend, or of another format of this one, is refused and the marker is
    /// left as it was.
    @Test(arguments: [
        ("uring 1\n", "holds data of backend 'uring'"),
        ("test 8\n", "holds data of backend 'test' in format '8', which this build cannot read (it reads format 7)"),
        ("", "holds data of backend '(unreadable marker)'"),
    ])
    func aForeignMarkerIsRefused(marker: String, message: String) throws {
        let scratch = try ScratchDirectory("kit-marker")
        defer { scratch.remove() }
        try marker.write(toFile: scratch.file(".fjord-backend"), atomically: false, encoding: .utf8)
        var (status, text, directory) = Self.openDirectory(scratch.path)
        #expect(status == KSTORE_ERR_INVALID_ARGUMENT)
        #expect(text == "data directory \(scratch.path) \(message)")
        #expect(String(decoding: try readFileBytes(scratch.file(".fjord-backend")), as: UTF8.self) == marker)
        kstore_kit_data_directory_close(&directory)
    }

    /// An upgrading open reads the older format it names and writes the current marker over it;
    /// any other format of the backend is still refused and left as it was.
    @Test(arguments: [("test 6\n", true), ("test 5\n", false)])
    func anUpgradingOpenRewritesOnlyTheOlderFormatsMarker(marker: String, upgrades: Bool) throws {
        let scratch = try ScratchDirectory("kit-upgrade")
        defer { scratch.remove() }
        try marker.write(toFile: scratch.file(".fjord-backend"), atomically: false, encoding: .utf8)
        var directory = kstore_kit_data_directory()
        var io = kstore_kit_io()
        kstore_kit_io_init(&io)
        var message = [CChar](repeating: 0, count: 512)
        let status = kstore_kit_data_directory_open_upgrading(
            &directory,
            scratch.path,
            "test 7\n",
            "test 6\n",
            &io,
            &message,
            message.count
        )
        #expect(status == (upgrades ? KSTORE_OK : KSTORE_ERR_INVALID_ARGUMENT), "\(text(message))")
        let now = String(decoding: try readFileBytes(scratch.file(".fjord-backend")), as: UTF8.self)
        #expect(now == (upgrades ? "test 7\n" : marker))
        kstore_kit_data_directory_close(&directory)
    }

    /// A missing path is NOT_FOUND, a regular file is not a directory.
    @Test func aMissingPathOrAFileIsRefused() throws {
        let scratch = try ScratchDirectory("kit-missing")
        defer { scratch.remove() }
        var (status, message, directory) = Self.openDirectory(scratch.file("nothing"))
        #expect(status == KSTORE_ERR_NOT_FOUND && message == "data directory \(scratch.file("nothing")) does not exist")
        try "x".write(toFile: scratch.file("plain"), atomically: false, encoding: .utf8)
        (status, message, directory) = Self.openDirectory(scratch.file("plain"))
        #expect(status == KSTORE_ERR_INVALID_ARGUMENT)
        #expect(message == "data directory \(scratch.file("plain")) is not a directory")
        kstore_kit_data_directory_close(&directory)
    }

    // MARK: The error slot

    /// The slot keeps the latest message; an errno reads as its text, with "(not writable)" for a
    /// permission error, and maps to the status the kit documents.
    @Test func theErrorSlotKeepsTheLatestMessage() {
        let slot = UnsafeMutablePointer<kstore_kit_error>.allocate(capacity: 1)
        defer { slot.deallocate() }
        kstore_kit_error_init(slot)
        defer { kstore_kit_error_destroy(slot) }
        var buffer = [CChar](repeating: 0, count: 64)
        #expect(kstore_kit_error_copy(slot, &buffer, buffer.count) == 0 && text(buffer).isEmpty)
        withVaList([Int32(7)]) { kstore_kit_error_vset(slot, "creating %d failed", $0) }
        #expect(kstore_kit_error_copy(slot, &buffer, buffer.count) == 17 && text(buffer) == "creating 7 failed")
        var small = [CChar](repeating: 0, count: 5)
        #expect(kstore_kit_error_copy(slot, &small, small.count) == 17 && text(small) == "crea")
        #expect(kstore_kit_error_copy(nil, &buffer, buffer.count) == 0 && text(buffer).isEmpty)
        kstore_kit_error_clear(slot)
        var length = 0
        #expect(!kstore_kit_error_copy_if_set(slot, &buffer, buffer.count, &length))
        #expect(kstore_kit_status_for_errno(ENOSPC) == KSTORE_ERR_NO_SPACE)
        #expect(kstore_kit_status_for_errno(EDQUOT) == KSTORE_ERR_NO_SPACE)
        #expect(kstore_kit_status_for_errno(ENOENT) == KSTORE_ERR_NOT_FOUND)
        #expect(kstore_kit_status_for_errno(ENOMEM) == KSTORE_ERR_NO_MEMORY)
        #expect(kstore_kit_status_for_errno(EACCES) == KSTORE_ERR_IO)
        #expect(kstore_kit_status_for_errno(EIO) == KSTORE_ERR_IO)
    }

    // MARK: System calls and the fault hook

    /// What a test hook does: fail every call of one operation with an errno, landing `landed`
    /// bytes of a write first; it counts the calls it saw.
    final class HookPlan {
        var operation: Int32 = 0
        var error: Int32 = 0
        var landed: UInt64 = 0
        var calls: [Int32] = []
    }

    /// With a hook installed every wrapper asks it first: a write can land torn (the first bytes,
    /// then the errno), reads, syncs, truncations, opens and allocations fail with the errno; with
    /// the hook removed the calls run again.
    @Test func theFaultHookSeesEveryCallAndCanFailIt() throws {
        let scratch = try ScratchDirectory("kit-hook")
        defer { scratch.remove() }
        let plan = HookPlan()
        let decide:
            @convention(c) (
                UnsafeMutableRawPointer?, UnsafePointer<kstore_kit_io_call>?, UnsafeMutablePointer<UInt64>?
            ) -> Int32 = { context, call, landed in
                let plan = Unmanaged<HookPlan>.fromOpaque(context!).takeUnretainedValue()
                plan.calls.append(call!.pointee.operation)
                guard call!.pointee.operation == plan.operation else { return 0 }
                landed!.pointee = plan.landed
                return plan.error
            }
        var hook = kstore_kit_fault_hook(
            struct_size: UInt32(MemoryLayout<kstore_kit_fault_hook>.size),
            reserved: 0,
            decide: decide,
            context: Unmanaged.passUnretained(plan).toOpaque()
        )
        var io = kstore_kit_io()
        kstore_kit_io_init(&io)
        let directory = open(scratch.path, O_RDONLY | O_DIRECTORY)
        defer { close(directory) }
        let fd = kstore_kit_openat(&io, directory, "data", O_RDWR | O_CREAT, 0o644)
        #expect(fd >= 0)
        defer { kstore_kit_close_fd(fd) }
        #expect(kstore_kit_io_set_hook(&io, &hook) == KSTORE_OK)
        let bytes = [UInt8](repeating: 0x5A, count: 100)
        plan.operation = KSTORE_KIT_IO_WRITE
        plan.error = ENOSPC
        plan.landed = 40
        #expect(kstore_kit_pwrite_all(&io, fd, bytes, bytes.count, 0) == ENOSPC)
        #expect(fileSize(scratch.file("data")) == 40)
        plan.error = EIO
        plan.landed = 0
        #expect(kstore_kit_pwrite_all(&io, fd, bytes, bytes.count, 40) == EIO)
        #expect(fileSize(scratch.file("data")) == 40)
        for (operation, call) in [
            (
                KSTORE_KIT_IO_READ,
                { () -> Int32 in
                    var buffer = [UInt8](repeating: 0, count: 8)
                    return Int32(kstore_kit_pread_full(&io, fd, &buffer, buffer.count, 0))
                }
            ),
            (KSTORE_KIT_IO_SYNC, { kstore_kit_fdatasync(&io, fd) }),
            (KSTORE_KIT_IO_SYNC, { kstore_kit_fsync(&io, fd) }),
            (KSTORE_KIT_IO_TRUNCATE, { kstore_kit_ftruncate(&io, fd, 0) }),
            (KSTORE_KIT_IO_ALLOCATE, { kstore_kit_fallocate(&io, fd, 0, 0, 4096) }),
            (KSTORE_KIT_IO_OPEN, { kstore_kit_openat(&io, directory, "other", O_RDWR | O_CREAT, 0o644) }),
        ] {
            plan.operation = operation
            errno = 0
            #expect(call() == -1 && errno == EIO, "operation \(operation)")
        }
        #expect(!FileManager.default.fileExists(atPath: scratch.file("other")))
        #expect(plan.calls == [1, 1, 3, 2, 2, 4, 6, 5])
        #expect(kstore_kit_io_set_hook(&io, nil) == KSTORE_OK)
        #expect(kstore_kit_pwrite_all(&io, fd, bytes, bytes.count, 40) == 0)
        #expect(fileSize(scratch.file("data")) == 140)
        #expect(plan.calls.count == 8)
        var tooSmall = hook
        tooSmall.struct_size = 8
        #expect(kstore_kit_io_set_hook(&io, &tooSmall) == KSTORE_ERR_INVALID_ARGUMENT)
    }
}
