import NIOCore
import Testing

@testable import KafkaRecords

#if canImport(Glibc)
import Glibc
#endif

/// Measures, never asserts (STYLE.md rule 20). Run with
/// `FJORD_RECORDS_THROUGHPUT=1 swift test -c release --filter KafkaRecordsTests.ThroughputTests`
/// and read the printed MB/s; skipped otherwise.
@Suite(
    "Throughput (measured, not asserted)",
    .enabled(
        if: ProcessInfoLite.isSet("FJORD_RECORDS_THROUGHPUT"),
        "a measurement, not a test: set FJORD_RECORDS_THROUGHPUT=1 to print MB/s"
    )
)
struct ThroughputTests {
    /// Prints validation and CRC throughput over a 1 MiB batch of 100-byte records, uncompressed and per codec.
    @Test("validation throughput of a 1 MiB batch of 100-byte records")
    func validationThroughput() throws {
        var policy = RecordBatchValidationPolicy(nowMs: 1_700_000_000_000)
        policy.maxBatchBytes = 2 << 20
        for codec in CompressionCodec.allCases {
            var builder = RecordBatchBuilder(compression: codec, producerId: 1, producerEpoch: 0, baseSequence: 0)
            var generator = SplitMix64(seed: 42)
            var uncompressedBytes = 0
            var index = 0
            while uncompressedBytes < 1 << 20 {
                // Half random, half repeated: compresses about 2:1 like typical JSON-ish payloads.
                var value = ByteBuffer()
                for byte in 0..<100 {
                    value.writeInteger(byte < 50 ? UInt8(truncatingIfNeeded: generator.next()) : 0x61)
                }
                builder.append(
                    key: buffer("key-\(index % 1000)"),
                    value: value,
                    timestamp: 1_700_000_000_000 + Int64(index)
                )
                uncompressedBytes += 100
                index += 1
            }
            let batch = builder.build()
            let iterations = codec == .none ? 400 : 60
            _ = try RecordBatchValidator.validateProduceRecords(batch, policy: policy)
            let start = monotonicNanoseconds()
            for _ in 0..<iterations {
                _ = try RecordBatchValidator.validateProduceRecords(batch, policy: policy)
            }
            let seconds = Double(monotonicNanoseconds() - start) / 1e9
            let megabytes = Double(uncompressedBytes * iterations) / 1e6
            print(
                "validate \(codec): \(index) records, batch \(batch.readableBytes) bytes, "
                    + "\(String(format: "%.0f", megabytes / seconds)) MB/s of record data, "
                    + "\(String(format: "%.2f", 1e6 * seconds / Double(iterations))) µs/batch"
            )
            #expect(seconds > 0)
            if codec == .none {
                // The record walk alone, without the CRC: where validation time goes.
                let header = try RecordBatchHeader(parsing: batch)
                let walkStart = monotonicNanoseconds()
                for _ in 0..<iterations {
                    _ = try batch.withUnsafeReadableBytes { (bytes) throws(RecordBatchError) in
                        try RecordBatchValidator.checkRecords(
                            UnsafeRawBufferPointer(rebasing: bytes[RecordBatchHeader.byteCount...]),
                            header: header,
                            policy: policy
                        )
                    }
                }
                let walkSeconds = Double(monotonicNanoseconds() - walkStart) / 1e9
                print(
                    "record walk only: "
                        + "\(String(format: "%.1f", 1e9 * walkSeconds / Double(iterations * index))) ns/record"
                )
            }
        }

        let data = ByteBuffer(repeating: 0x5a, count: 1 << 20)
        for (name, checksum) in [
            ("hardware", { (b: UnsafeRawBufferPointer) in CRC32C.hardwareChecksum(b) ?? 0 }),
            ("portable", { (b: UnsafeRawBufferPointer) in CRC32C.portableChecksum(b) }),
        ] {
            let iterations = 1000
            var sink: UInt32 = 0
            let start = monotonicNanoseconds()
            data.withUnsafeReadableBytes { bytes in
                for _ in 0..<iterations { sink ^= checksum(bytes) }
            }
            let seconds = Double(monotonicNanoseconds() - start) / 1e9
            print("crc32c \(name): \(String(format: "%.0f", Double(iterations << 20) / 1e6 / seconds)) MB/s (\(sink))")
        }
    }
}

private func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// Environment lookup without Foundation's ProcessInfo (kept tiny; tests only).
enum ProcessInfoLite {
    static func isSet(_ name: String) -> Bool { getenv(name) != nil }
}
