internal import CKStore
import NIOCore

/// Reads and lookups: the bodies behind `read`, `state` and `findOffset`, run on the caller's thread
/// or the log's lane.
extension StorageLog {
    func fetchState() throws -> StorageLogState {
        var state = kstore_log_state()
        state.struct_size = UInt32(MemoryLayout<kstore_log_state>.size)
        // REQUIRED member, checked non-NULL in LogHandle.init.
        let status = self.handle.methods.state!(self.handle.pointer, &state)
        guard status == KSTORE_OK else { throw self.context.error(status, "state of log '\(self.name)'") }
        let hostStartOffset = self.hostStartOffset
        return StorageLogState(
            startOffset: max(state.start_offset, min(hostStartOffset, state.end_offset)),
            endOffset: state.end_offset,
            durableEndOffset: state.durable_end_offset,
            maxTimestamp: state.max_timestamp,
            byteCount: state.byte_count,
            entryCount: state.entry_count
        )
    }

    /// One call of the backend's read into `destination` (capacity = its count).
    func readEntries(
        from offset: Int64,
        limit: Int64,
        into destination: UnsafeMutableRawBufferPointer
    ) throws -> kstore_read_result {
        var result = kstore_read_result()
        result.struct_size = UInt32(MemoryLayout<kstore_read_result>.size)
        result.next_offset = offset
        var status: Int32 = KSTORE_OK
        if let base = destination.baseAddress {
            // REQUIRED member, checked non-NULL in LogHandle.init.
            status = self.handle.methods.read!(
                self.handle.pointer,
                offset,
                limit,
                base,
                UInt64(destination.count),
                &result
            )
        } else {
            // An empty buffer may have no address; kstore.h wants a pointer, so lend one byte.
            var spare: UInt8 = 0
            status = withUnsafeMutableBytes(of: &spare) { spare in
                self.handle.methods.read!(self.handle.pointer, offset, limit, spare.baseAddress, 0, &result)
            }
        }
        guard status == KSTORE_OK else { throw self.context.error(status, "read log '\(self.name)' at \(offset)") }
        // A backend that wrote past the buffer has already corrupted memory: stop.
        precondition(
            result.byte_count <= UInt64(destination.count),
            "backend '\(self.context.backend.name)' wrote \(result.byte_count) bytes into a "
                + "\(destination.count)-byte buffer"
        )
        let consistent =
            result.entry_count == 0
            ? result.byte_count == 0
                && (result.first_entry_bytes == 0 || result.first_entry_bytes > UInt64(destination.count))
            : result.byte_count > 0 && result.next_offset > offset
        guard consistent else {
            throw StorageError(
                code: .corrupt,
                message: "read log '\(self.name)' at \(offset): backend '\(self.context.backend.name)' returned an "
                    + "inconsistent result (entries \(result.entry_count), bytes \(result.byte_count), next "
                    + "\(result.next_offset), first entry \(result.first_entry_bytes) bytes, "
                    + "capacity \(destination.count))"
            )
        }
        return result
    }

    func performRead(
        from offset: Int64,
        limit: Int64,
        maxBytes: Int,
        minimumOneEntry: Bool
    ) throws
        -> StorageReadResult
    {
        guard maxBytes >= 0 else {
            throw StorageError(code: .invalidArgument, message: "read log '\(self.name)': maxBytes \(maxBytes) < 0")
        }
        let hostStartOffset = self.hostStartOffset
        guard offset >= hostStartOffset else {
            throw StorageError(
                code: .outOfRange,
                message: "read log '\(self.name)' at \(offset): below the start offset \(hostStartOffset)"
            )
        }
        // Size the buffer from the log's average entry size over the requested range, so a large
        // read does not re-copy what it read each time the buffer doubles; reads that would need
        // more still grow below.
        var initialBytes = Self.readInitialBytes
        if let state = try? self.fetchState(), state.entryCount > 0, state.endOffset > state.startOffset {
            let offsets = max(0, min(limit, state.endOffset) - offset)
            let estimate = Double(state.byteCount) * Double(offsets) / Double(state.endOffset - state.startOffset)
            initialBytes = max(initialBytes, Int(min(estimate * 1.05, Double(Int32.max))))
        }
        var buffer = ByteBufferAllocator().buffer(capacity: min(maxBytes, initialBytes))
        var nextOffset = offset
        var entryCount = 0
        // Set to the first entry's size when it alone exceeds maxBytes and KIP-74 says to return it
        // anyway (and nothing after it).
        var oversizedFirstEntryBytes: Int? = nil
        while true {
            let room = oversizedFirstEntryBytes ?? min(buffer.writableBytes, maxBytes - buffer.readableBytes)
            var result = kstore_read_result()
            try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 0) { writable in
                let destination = UnsafeMutableRawBufferPointer(rebasing: writable.prefix(max(0, room)))
                result = try self.readEntries(from: nextOffset, limit: limit, into: destination)
                return Int(result.byte_count)
            }
            if result.entry_count > 0 {
                entryCount += Int(result.entry_count)
                nextOffset = result.next_offset
                if oversizedFirstEntryBytes != nil || buffer.readableBytes >= maxBytes { break }
                continue
            }
            guard result.first_entry_bytes > 0, result.first_entry_bytes <= UInt64(Int.max) else { break }
            // The next entry did not fit: grow the buffer for it, geometrically but never past maxBytes.
            let neededBytes = Int(result.first_entry_bytes)
            if neededBytes <= maxBytes - buffer.readableBytes {
                let capacity = min(maxBytes, max(buffer.readableBytes + neededBytes, buffer.capacity * 2))
                buffer.reserveCapacity(capacity)
            } else if entryCount == 0 && minimumOneEntry && oversizedFirstEntryBytes == nil {
                oversizedFirstEntryBytes = neededBytes
                buffer.reserveCapacity(minimumWritableBytes: neededBytes)
            } else {
                break
            }
        }
        return StorageReadResult(bytes: buffer, nextOffset: nextOffset, entryCount: entryCount)
    }

    func performFindOffset(atOrAfterTimestamp timestamp: Int64) throws -> Int64? {
        let hostStartOffset = self.hostStartOffset
        if let find = self.handle.member(\.find_offset_by_time) {
            var offset: Int64 = -1
            let status = find(self.handle.pointer, timestamp, &offset)
            guard status == KSTORE_OK else {
                throw self.context.error(status, "find offset by time \(timestamp) in log '\(self.name)'")
            }
            if offset < 0 { return nil }
            if offset >= hostStartOffset { return offset }
            // The answer lies below the start the host keeps itself: scan from that start.
        }
        return try self.scanForTimestamp(timestamp)
    }

    /// kstore.h fallback for find_offset_by_time: reads the entries one at a time from the start.
    private func scanForTimestamp(_ timestamp: Int64) throws -> Int64? {
        guard let entryMaxTimestamp = self.context.entryMaxTimestamp else {
            throw StorageError(
                code: .unsupported,
                message: "find offset by time in log '\(self.name)': backend '\(self.context.backend.name)' has no "
                    + "find_offset_by_time and no entryMaxTimestamp reader is configured"
            )
        }
        let state = try self.fetchState()
        guard state.maxTimestamp >= timestamp else { return nil }
        var offset = state.startOffset
        while offset < state.endOffset {
            // A zero-byte read reports the size of the entry containing `offset`.
            let probe = try self.readEntries(
                from: offset,
                limit: Int64.max,
                into: UnsafeMutableRawBufferPointer(start: nil, count: 0)
            )
            guard probe.first_entry_bytes > 0, probe.first_entry_bytes <= UInt64(Int.max) else { return nil }
            var entry = ByteBufferAllocator().buffer(capacity: Int(probe.first_entry_bytes))
            var result = kstore_read_result()
            try entry.writeWithUnsafeMutableBytes(minimumWritableBytes: 0) { writable in
                let destination = UnsafeMutableRawBufferPointer(rebasing: writable.prefix(Int(probe.first_entry_bytes)))
                result = try self.readEntries(from: offset, limit: Int64.max, into: destination)
                return Int(result.byte_count)
            }
            guard result.entry_count == 1 else { return nil }
            if let entryTimestamp = entryMaxTimestamp(entry), entryTimestamp >= timestamp { return offset }
            offset = result.next_offset
        }
        return nil
    }
}
