import CKStore
import KStoreFaulty
import StorageHost
import Testing

/// Helpers for tests that run a backend under the faulty shim (Backends/faulty).

/// One shim table per inner backend for the whole test process: the shim has a fixed number of
/// table slots and tests run in parallel, so each instance gets its schedule with
/// KSTORE_FAULTY_CONTROL_SET_CONFIG instead of a table of its own.
enum FaultyTables {
    private static let tables = LockedState<[UInt: UInt]>([:])

    static func table(wrapping inner: UnsafePointer<kstore_backend>) throws -> UnsafePointer<kstore_backend> {
        let address = try tables.withLock { tables -> UInt in
            let key = UInt(bitPattern: inner)
            if let table = tables[key] { return table }
            var config = faultyConfig(seed: 0)
            let table = try #require(kstore_faulty_wrap(inner, &config))
            tables[key] = UInt(bitPattern: table)
            return UInt(bitPattern: table)
        }
        return UnsafePointer(bitPattern: address)!
    }
}

/// A shim configuration with the given seed and chances (parts per million of calls).
func faultyConfig(
    seed: UInt64,
    appendNoSpace: UInt32 = 0,
    appendIO: UInt32 = 0,
    syncIO: UInt32 = 0,
    readIO: UInt32 = 0,
    openLogBusy: UInt32 = 0
) -> kstore_faulty_config {
    kstore_faulty_config(
        struct_size: UInt32(MemoryLayout<kstore_faulty_config>.size),
        reserved: 0,
        seed: seed,
        append_no_space_ppm: appendNoSpace,
        append_io_ppm: appendIO,
        sync_io_ppm: syncIO,
        read_io_ppm: readIO,
        open_log_busy_ppm: openLogBusy,
        reserved2: 0
    )
}
