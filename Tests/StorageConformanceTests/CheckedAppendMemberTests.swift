import CKStore
import StorageBackends
import Testing

@testable import StorageHost
@testable import StorageTestSupport

/// kstore.h ABI version 2's `append_checked_batch` is found only in tables that have it.
@Suite("ABI version 2: append_checked_batch")
struct CheckedAppendMemberTests {
    /// A log table of ABI version 1 (without append_checked_batch) is accepted and copied no
    /// further than its struct_size; a version-1 table as large as ours still has no such member.
    @Test func aVersionOneLogTableHasNoCheckedAppend() throws {
        let instance = try CInstance(StorageBackend.builtin(named: "uring"))
        defer { instance.close() }
        let log = try instance.openLog("v1", flags: UInt32(KSTORE_OPEN_CREATE))
        let real = log.pointee.methods!
        defer { real.pointee.close(log) }
        let uring = try LogHandle(validating: log, origin: "uring")
        #expect(uring.member(\.append_checked_batch, since: 2) != nil)
        #expect(uring.hasAppendCheckedBatch)
        for structSize in [ABIVersion1.logMethodsBytes, ABIVersion2.logMethodsBytes] {
            var methods = real.pointee
            methods.abi_version = 1
            methods.struct_size = UInt32(structSize)
            try withUnsafePointer(to: &methods) { methods in
                var fake = kstore_log(methods: methods)
                let handle = try withUnsafeMutablePointer(to: &fake) { try LogHandle(validating: $0, origin: "v1 log") }
                #expect(handle.member(\.append_checked_batch, since: 2) == nil)
                #expect(!handle.hasAppendCheckedBatch)
                #expect((handle.methods.append_checked_batch == nil) == (structSize == ABIVersion1.logMethodsBytes))
            }
        }
    }
}
