internal import CKStore
import NIOCore

/// A log handle and a copy of its validated methods table. kstore.h: the host never runs two
/// mutating calls on one log at once and the others may run concurrently with them; StorageLog
/// keeps to that (appends are serialized by the caller, everything goes through one lane on the
/// blocking path) and calls close exactly once after everything else, so sharing the pointer is
/// sound. REQUIRED members are checked non-NULL in init, so `methods.append!` and its siblings
/// cannot fail.
struct LogHandle: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<kstore_log>
    let methods: kstore_log_methods
    /// Whether `methods.append_checked_batch` exists (`member(_:since:)`, resolved once: every
    /// produced batch is appended through it, and a key path lookup per append costs more than
    /// the checksum pass it saves).
    let hasAppendCheckedBatch: Bool

    init(validating pointer: UnsafeMutablePointer<kstore_log>, origin: String) throws {
        func reject(_ reason: String) -> StorageError {
            StorageError(code: .unsupported, message: "\(origin) has an unusable kstore_log_methods table: \(reason)")
        }
        guard let table = pointer.pointee.methods else { throw reject("the methods pointer is NULL") }
        let raw = UnsafeRawPointer(table)
        let version = raw.load(fromByteOffset: 0, as: UInt32.self)
        let structSize = raw.load(fromByteOffset: 4, as: UInt32.self)
        guard version >= ABIVersion1.version else { throw reject("abi_version \(version) is older than 1") }
        guard structSize >= ABIVersion1.logMethodsBytes else {
            throw reject("struct_size \(structSize) is smaller than the version 1 size \(ABIVersion1.logMethodsBytes)")
        }
        // A table of an older version is smaller than ours: copy only the bytes it has (members
        // past its struct_size stay NULL, and `member` never reads them anyway).
        var methods = kstore_log_methods()
        withUnsafeMutableBytes(of: &methods) { copy in
            copy.copyMemory(from: UnsafeRawBufferPointer(start: raw, count: min(Int(structSize), copy.count)))
        }
        var missing: [String] = []
        if methods.close == nil { missing.append("close") }
        if methods.append == nil { missing.append("append") }
        if methods.read == nil { missing.append("read") }
        if methods.sync == nil { missing.append("sync") }
        if methods.state == nil { missing.append("state") }
        guard missing.isEmpty else { throw reject("REQUIRED member(s) \(missing.joined(separator: ", ")) are NULL") }
        self.pointer = pointer
        self.methods = methods
        self.hasAppendCheckedBatch =
            tableHasMember(
                version: methods.abi_version,
                structSize: methods.struct_size,
                since: ABIVersion2.version,
                offset: MemoryLayout<kstore_log_methods>.offset(of: \.append_checked_batch)
            ) && methods.append_checked_batch != nil
    }

    /// An OPTIONAL member, if the table's version and size say it exists and it is non-NULL.
    func member<Function>(_ keyPath: KeyPath<kstore_log_methods, Function?>, since version: UInt32 = 1) -> Function? {
        guard
            tableHasMember(
                version: self.methods.abi_version,
                structSize: self.methods.struct_size,
                since: version,
                offset: MemoryLayout<kstore_log_methods>.offset(of: keyPath)
            )
        else { return nil }
        return self.methods[keyPath: keyPath]
    }
}

/// Runs `body` with `parts` as a kstore_iovec array pointing into the buffers' storage, without
/// copying. The pointers are valid only inside `body`.
func withIovecs<R>(_ parts: [ByteBuffer], _ body: (UnsafePointer<kstore_iovec>?, UInt32) -> R) -> R {
    withUnsafeTemporaryAllocation(of: kstore_iovec.self, capacity: max(parts.count, 1)) { iovecs in
        func gather(_ index: Int) -> R {
            if index == parts.count {
                return body(UnsafePointer(iovecs.baseAddress), UInt32(parts.count))
            }
            return parts[index].withUnsafeReadableBytes { bytes in
                iovecs[index] = kstore_iovec(base: bytes.baseAddress, len: bytes.count)
                return gather(index + 1)
            }
        }
        return gather(0)
    }
}
