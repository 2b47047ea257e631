import NIOCore

/// Reading stored batches: splitting what the log returns into batches, iterating records, time lookups.
///
/// Every entry point checks the batch it is given (whole, magic 2, known codec, CRC-32C) before trusting it: the
/// read-side half of the pair of checks at the disk boundary (STYLE.md rule 11).
public enum RecordBatchReader {
    /// The records of one batch (decompressing if needed, bounded by `maxDecompressedBytes`). Keys and values of an
    /// uncompressed batch are slices of `batch`, not copies.
    public static func records(of batch: ByteBuffer, maxDecompressedBytes: Int) throws(RecordBatchError) -> [Record] {
        let header = try RecordBatchValidator.validateStoredBatch(batch)
        guard let codec = header.compression,
            var region = batch.getSlice(
                at: batch.readerIndex + RecordBatchLayout.records,
                length: header.totalByteCount - RecordBatchLayout.records
            )
        else {
            // validateStoredBatch checked the codec and that the whole batch is readable.
            preconditionFailure("validated batch lost its codec or bytes")
        }
        if codec != .none {
            region = try Compression.decompress(region, codec: codec, limit: maxDecompressedBytes)
        }
        let records = region
        return try records.withUnsafeReadableBytes { (bytes) throws(RecordBatchError) -> [Record] in
            var scanner = RecordScanner(bytes)
            var result: [Record] = []
            // The smallest record takes 7 bytes; do not let a lying recordCount reserve gigabytes.
            result.reserveCapacity(max(0, min(Int(header.recordCount), bytes.count / 7)))
            while result.count < Int(header.recordCount) {
                guard let raw = try scanner.next() else {
                    throw .invalidRecord("batch declares \(header.recordCount) records but holds only \(result.count)")
                }
                result.append(try makeRecord(raw, index: result.count, header: header, region: records, bytes: bytes))
            }
            guard scanner.remainingByteCount == 0 else {
                throw .invalidRecord(
                    "\(scanner.remainingByteCount) bytes remain after the \(header.recordCount) records "
                        + "the batch declares"
                )
            }
            return result
        }
    }

    /// Splits a buffer of concatenated batches (e.g. what the log returns for a fetch) into slices of one batch
    /// each, in order. Stops at a partial trailing batch or at a length that cannot be a v2 batch. Zero-copy.
    public static func batches(in buffer: ByteBuffer) -> [ByteBuffer] {
        var result: [ByteBuffer] = []
        var position = buffer.readerIndex
        let end = buffer.writerIndex
        while end - position >= RecordBatchHeader.byteCount {
            guard let batchLength = buffer.getInteger(at: position + RecordBatchLayout.batchLength, as: Int32.self),
                batchLength >= RecordBatchLayout.minimumBatchLength
            else { break }
            let total = Int(batchLength) + RecordBatchLayout.batchLengthOverhead
            guard total <= end - position, let slice = buffer.getSlice(at: position, length: total) else { break }
            result.append(slice)
            position += total
        }
        return result
    }

    /// The offset (`baseOffset + offsetDelta`) of the first record, in offset order, whose timestamp is ≥ `ts`;
    /// `nil` when none is. Timestamps within a batch need not be monotonic, so every record is looked at.
    public static func firstOffset(
        atOrAfterTimestamp ts: Int64,
        in batch: ByteBuffer,
        maxDecompressedBytes: Int
    ) throws(RecordBatchError) -> Int64? {
        try scanRecords(of: batch, maxDecompressedBytes: maxDecompressedBytes) {
            (header, scanner) throws(RecordBatchError) -> Int64? in
            while let record = try next(&scanner, header: header) {
                if header.timestamp(of: record.timestampDelta) >= ts {
                    return header.baseOffset &+ Int64(record.offsetDelta)
                }
            }
            return nil
        }
    }

    /// The offset and timestamp of the record holding the batch's largest timestamp — the first such record when
    /// several share it (ListOffsets `MAX_TIMESTAMP`, KIP-734). `nil` for a batch without records.
    public static func offsetOfMaxTimestamp(
        in batch: ByteBuffer,
        maxDecompressedBytes: Int
    ) throws(RecordBatchError) -> (offset: Int64, timestamp: Int64)? {
        try scanRecords(of: batch, maxDecompressedBytes: maxDecompressedBytes) {
            (header, scanner) throws(RecordBatchError) -> (offset: Int64, timestamp: Int64)? in
            var best: (offset: Int64, timestamp: Int64)? = nil
            while let record = try next(&scanner, header: header) {
                let timestamp = header.timestamp(of: record.timestampDelta)
                if let current = best, timestamp <= current.timestamp { continue }
                best = (header.baseOffset &+ Int64(record.offsetDelta), timestamp)
            }
            return best
        }
    }

    // MARK: - Internals

    /// Runs `body` with a scanner over the batch's (decompressed) records, without copying them into a ByteBuffer.
    private static func scanRecords<Result>(
        of batch: ByteBuffer,
        maxDecompressedBytes: Int,
        _ body: (RecordBatchHeader, inout RecordScanner) throws(RecordBatchError) -> Result
    ) throws(RecordBatchError) -> Result {
        try batch.withUnsafeReadableBytes { (bytes) throws(RecordBatchError) -> Result in
            let header = try RecordBatchValidator.checkFraming(bytes, requireExact: false)
            try RecordBatchValidator.checkChecksum(bytes, header: header)
            guard let codec = header.compression else {
                throw .corrupt("unknown compression codec id \(header.compressionId)")
            }
            let region = UnsafeRawBufferPointer(rebasing: bytes[RecordBatchLayout.records..<header.totalByteCount])
            if codec == .none {
                var scanner = RecordScanner(region)
                return try body(header, &scanner)
            }
            return try Compression.withDecompressed(region, codec: codec, limit: maxDecompressedBytes) {
                (records) throws(RecordBatchError) -> Result in
                var scanner = RecordScanner(records)
                return try body(header, &scanner)
            }
        }
    }

    /// The next of the batch's `recordCount` records, or `nil` after the last one.
    private static func next(
        _ scanner: inout RecordScanner,
        header: RecordBatchHeader
    ) throws(RecordBatchError)
        -> RawRecord?
    {
        guard scanner.index < Int(header.recordCount) else { return nil }
        guard let record = try scanner.next() else {
            throw .invalidRecord("batch declares \(header.recordCount) records but holds only \(scanner.index)")
        }
        return record
    }

    private static func makeRecord(
        _ raw: RawRecord,
        index: Int,
        header: RecordBatchHeader,
        region: ByteBuffer,
        bytes: UnsafeRawBufferPointer
    ) throws(RecordBatchError) -> Record {
        var headers: [RecordHeader] = []
        if raw.headerCount > 0 {
            headers.reserveCapacity(Int(raw.headerCount))
            // The scanner already checked these bounds; the guards only keep a broken invariant from trapping.
            // A record with headers is at least 2 bytes long, so `bytes` is not empty and has a base address.
            var cursor = ByteCursor(base: bytes.baseAddress!, position: raw.headersPosition, end: bytes.count)
            for _ in 0..<raw.headerCount {
                guard let keyLength = cursor.readVarint(), keyLength >= 0 else {
                    throw .corrupt("invalid record header key", recordIndex: index)
                }
                let keyPosition = cursor.position
                guard cursor.skip(Int(keyLength)), let valueLength = cursor.readVarint() else {
                    throw .corrupt("invalid record header", recordIndex: index)
                }
                let key = String(
                    decoding: UnsafeRawBufferPointer(rebasing: bytes[keyPosition..<keyPosition + Int(keyLength)]),
                    as: UTF8.self
                )
                let valuePosition = cursor.position
                guard cursor.skip(max(0, Int(valueLength))) else {
                    throw .corrupt("invalid record header value", recordIndex: index)
                }
                headers.append(RecordHeader(key: key, value: slice(region, at: valuePosition, length: valueLength)))
            }
        }
        return Record(
            offsetDelta: raw.offsetDelta,
            timestamp: header.timestamp(of: raw.timestampDelta),
            key: slice(region, at: raw.keyPosition, length: raw.keyLength),
            value: slice(region, at: raw.valuePosition, length: raw.valueLength),
            headers: headers,
            attributes: raw.attributes
        )
    }

    /// A zero-copy slice of the records region; `nil` for length -1 (a null key or value).
    private static func slice(_ region: ByteBuffer, at position: Int, length: Int32) -> ByteBuffer? {
        guard length >= 0 else { return nil }
        guard let slice = region.getSlice(at: region.readerIndex + position, length: Int(length)) else {
            preconditionFailure("record scanner returned a field outside the records region")
        }
        return slice
    }
}

extension RecordBatchHeader {
    /// A record's timestamp: its CreateTime (the base timestamp plus its delta), or for a
    /// LogAppendTime batch the batch's max timestamp, which Kafka gives every record of it.
    @inline(__always)
    func timestamp(of timestampDelta: Int64) -> Int64 {
        timestampTypeIsLogAppendTime ? maxTimestamp : baseTimestamp &+ timestampDelta
    }
}
