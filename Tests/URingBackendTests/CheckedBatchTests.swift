import CKStore
import Foundation
import NIOCore
import StorageBackends
import Testing

@testable import StorageHost
@testable import StorageTestSupport

/// Entries shaped like a Kafka RecordBatch v2 as far as kstore.h `append_checked_batch` looks:
/// magic 2 at byte 16 and, at bytes 17..<21, the big-endian CRC-32C of bytes 21..<end. Byte i of
/// the rest is (seed + i) mod 256.
enum CheckedBatch {
    static func make(seed: Int64, byteCount: Int) -> ByteBuffer {
        var bytes = (0..<byteCount).map { UInt8(truncatingIfNeeded: Int(seed) &+ $0) }
        if byteCount > 16 { bytes[16] = 2 }
        if byteCount >= 21 {
            let crc = crc32c(bytes[21...])
            for index in 0..<4 { bytes[17 + index] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * index)) }
        }
        var buffer = ByteBufferAllocator().buffer(capacity: byteCount)
        buffer.writeBytes(bytes)
        return buffer
    }

    /// CRC-32C (Castagnoli), bit by bit: the reference the backends' fast one must agree with.
    static func crc32c(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }

    /// Split as the broker passes a produced batch: a rewritten 16-byte prefix and the rest.
    static func parts(_ entry: ByteBuffer) -> [ByteBuffer] {
        guard entry.readableBytes > 16 else { return [entry] }
        var rest = entry
        let prefix = rest.readSlice(length: 16)!
        return [prefix, rest]
    }
}

/// Sizes around the shape append_checked_batch needs (at least 61 bytes): smaller entries are
/// appended as by append.
private let checkedSizes = [1, 20, 21, 60, 61, 62, 200, 1_024, 20_000]

/// Appends one entry of each size (seeded by its offset), then reads everything back.
private func appendCheckedEntries(_ log: StorageLog) async throws -> ByteBuffer {
    var expected = ByteBufferAllocator().buffer(capacity: 0)
    for (index, size) in checkedSizes.enumerated() {
        let entry = CheckedBatch.make(seed: Int64(index), byteCount: size)
        try await log.append(
            firstOffset: Int64(index),
            lastOffset: Int64(index),
            maxTimestamp: Int64(index),
            parts: CheckedBatch.parts(entry),
            checkedBatch: true
        )
        expected.writeImmutableBuffer(entry)
    }
    try await log.sync()
    return expected
}

private func readEverything(_ log: StorageLog) async throws -> ByteBuffer {
    try await log.read(from: 0, limit: .max, maxBytes: 1 << 24, minimumOneEntry: true).bytes
}

@Suite("Checked batch appends")
struct CheckedBatchTests {
    /// kstore.h append_checked_batch: entries appended as checked batches (or as plain appends
    /// where the backend lacks the member) read back verbatim, and survive reopening on durable
    /// backends.
    @Test(arguments: StorageBackend.builtinNames, ExecutionPath.allCases)
    func checkedBatchesReadBackVerbatim(backend: String, path: ExecutionPath) async throws {
        try await withHarness(backend, path) { harness in
            let log = try await harness.engine.openLog(named: "checked", create: true)
            let expected = try await appendCheckedEntries(log)
            #expect(try await readEverything(log) == expected)
            await log.close()
            guard harness.isDurable else { return }
            try await harness.reopenInstance()
            let reopened = try await harness.engine.openLog(named: "checked", create: false)
            #expect(try await readEverything(reopened) == expected)
            await reopened.close()
        }
    }

    /// The uring backend (directly and through the faulty shim, which forwards the member) writes a
    /// checked batch's frame with the BATCH_CRC flag, and only for entries of the batch shape.
    @Test(arguments: [false, true])
    func uringFlagsTheFramesOfCheckedBatches(faulty: Bool) async throws {
        try await withURing(faulty: faulty) { fixture in
            let log = try await fixture.engine.openLog(named: "checked", create: true)
            _ = try await appendCheckedEntries(log)
            let wal = (fixture.directory as NSString).appendingPathComponent(fixture.walFiles[0])
            let bytes = try readFileBytes(wal)
            let flags = try walFrames(wal).filter { $0.kind == WALFrame.data }.map { frame in
                (frame.payloadBytes, UInt16(bytes[frame.position + 14]) | UInt16(bytes[frame.position + 15]) << 8)
            }
            #expect(flags.map(\.0) == checkedSizes)
            #expect(flags.map(\.1) == checkedSizes.map { $0 >= 61 ? UInt16(1) : 0 })
            await log.close()
        }
    }

    /// Damage anywhere in a checked batch's frame — in the bytes the frame's CRC covers or in those
    /// only the batch's CRC covers — is found by recovery, as in any other frame.
    @Test(arguments: [72 + 3, 72 + 18, 72 + 21, 72 + 500])
    func damageInACheckedBatchIsFoundByRecovery(damageAt: Int) async throws {
        try await withURing { fixture in
            let log = try await fixture.engine.openLog(named: "x", create: true)
            for offset in Int64(0)..<3 {
                try await log.append(
                    firstOffset: offset,
                    lastOffset: offset,
                    maxTimestamp: offset,
                    parts: CheckedBatch.parts(CheckedBatch.make(seed: offset, byteCount: 1_000)),
                    checkedBatch: true
                )
                try await log.sync()
            }
            let copy = try fixture.copyDirectory()
            defer { try? FileManager.default.removeItem(atPath: copy) }
            let wal = (copy as NSString).appendingPathComponent(fixture.walFiles[0])
            let entry = try #require(try walFrames(wal).first { $0.kind == WALFrame.data })
            let original = try readFileBytes(wal)[entry.position + damageAt]
            try patchFile(wal, at: entry.position + damageAt, with: [~original])
            let error = try #require(await URingFixture.openLogFailure(directory: copy, name: "x"))
            #expect(error.code == .corrupt)
            #expect(error.message.contains("position \(entry.position)"), "\(error.message)")
            await log.close()
        }
    }

    /// A data directory of uring format 1 (frames without flags, marker "uring 1") opens, reads
    /// back, and is marked format 2 from then on: a format-1 build refuses it instead of taking
    /// a BATCH_CRC frame for damage.
    @Test func aFormatOneDirectoryIsReadAndMarkedFormatTwo() async throws {
        try await withURing { fixture in
            let log = try await fixture.engine.openLog(named: "old", create: true)
            for offset in Int64(0)..<5 {
                try await log.append(
                    firstOffset: offset,
                    lastOffset: offset,
                    maxTimestamp: offset,
                    parts: [TestEntry.make(firstOffset: offset, lastOffset: offset, byteCount: 300)]
                )
            }
            try await log.sync()
            await log.close()
            let marker = (fixture.directory as NSString).appendingPathComponent(".fjord-backend")
            #expect(String(decoding: try readFileBytes(marker), as: UTF8.self) == "uring 2\n")
            // The marker is read at open only: what a format-1 build would have left.
            try "uring 1\n".write(toFile: marker, atomically: false, encoding: .utf8)
            try await fixture.reopen()
            let reopened = try await fixture.engine.openLog(named: "old", create: false)
            let entries = try TestEntry.parse(try await readEverything(reopened))
            #expect(entries.map(\.firstOffset) == Array(0..<5))
            await reopened.close()
            #expect(String(decoding: try readFileBytes(marker), as: UTF8.self) == "uring 2\n")
        }
    }
}
