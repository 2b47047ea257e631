import NIOCore
import Testing

@testable import KafkaRecords

@Suite("CRC-32C")
struct CRC32CTests {
    /// Known CRC-32C vectors (RFC 3720 appendix B.4 and the classic "123456789" check value) come out right.
    @Test(
        "known vectors",
        arguments: [
            ([UInt8]("123456789".utf8), UInt32(0xE306_9283)),
            ([], 0),
            ([UInt8](repeating: 0, count: 32), 0x8A91_36AA),
            ([UInt8](repeating: 0xff, count: 32), 0x62A8_AB43),
            ((0..<32).map { UInt8($0) }, 0x46DD_794E),
            ((0..<32).map { UInt8(31 - $0) }, 0x113F_DB5C),
        ] as [([UInt8], UInt32)]
    )
    func knownVectors(input: [UInt8], expected: UInt32) {
        input.withUnsafeBytes { bytes in
            #expect(CRC32C.checksum(bytes) == expected)
            #expect(CRC32C.portableChecksum(bytes) == expected)
            if let hardware = CRC32C.hardwareChecksum(bytes) {
                #expect(hardware == expected)
            }
        }
        #expect(CRC32C.checksum(ByteBuffer(bytes: input)) == expected)
    }

    /// This x86-64 machine has SSE4.2, so the dispatcher picks the hardware path.
    @Test("uses the crc32 instruction where the CPU has one")
    func hardwareIsUsedOnX86() {
        #if arch(x86_64)
        #expect(CRC32C.isHardwareAccelerated)
        #endif
    }

    /// Hardware and table paths agree on random buffers of every length 0…300 at every start alignment 0…7.
    @Test("hardware and portable paths agree on all lengths and alignments")
    func hardwareMatchesPortable() {
        var generator = SystemRandomNumberGenerator()
        let storage = (0..<(300 + 8)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        storage.withUnsafeBytes { all in
            for start in 0..<8 {
                for length in 0...300 {
                    let piece = UnsafeRawBufferPointer(rebasing: all[start..<(start + length)])
                    let portable = CRC32C.portableChecksum(piece)
                    #expect(CRC32C.checksum(piece) == portable, "length \(length) start \(start)")
                    if let hardware = CRC32C.hardwareChecksum(piece) {
                        #expect(hardware == portable, "length \(length) start \(start)")
                    }
                }
            }
        }
    }

    /// The hardware path's three-stream blocks (3 × 256 and 3 × 8192 bytes) merge to the table's result.
    @Test(
        "hardware and portable paths agree across the interleaved block sizes",
        arguments: [767, 768, 769, 1000, 1543, 24_575, 24_576, 24_577, 25_344, 50_000, 100_003, 1 << 20]
    )
    func longBuffers(length: Int) {
        var generator = SplitMix64(seed: UInt64(length))
        let storage = (0..<(length + 8)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        storage.withUnsafeBytes { all in
            for start in [0, 1, 5] {
                let piece = UnsafeRawBufferPointer(rebasing: all[start..<(start + length)])
                let portable = CRC32C.portableChecksum(piece, seed: 0xDEAD_BEEF)
                #expect(CRC32C.checksum(piece, seed: 0xDEAD_BEEF) == portable, "length \(length) start \(start)")
                if let hardware = CRC32C.hardwareChecksum(piece, seed: 0xDEAD_BEEF) {
                    #expect(hardware == portable, "length \(length) start \(start)")
                }
            }
        }
    }

    /// Seeding with the checksum of a prefix gives the checksum of the whole, for every split point.
    @Test("seed chaining across pieces equals one pass")
    func seedChaining() {
        let data = (0..<257).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        data.withUnsafeBytes { all in
            let whole = CRC32C.checksum(all)
            for split in 0...all.count {
                let first = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: all[..<split]))
                let chained = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: all[split...]), seed: first)
                #expect(chained == whole, "split at \(split)")
                let portable = CRC32C.portableChecksum(
                    UnsafeRawBufferPointer(rebasing: all[split...]),
                    seed: CRC32C.portableChecksum(UnsafeRawBufferPointer(rebasing: all[..<split]))
                )
                #expect(portable == whole, "portable split at \(split)")
            }
        }
        var buffer = ByteBuffer(bytes: data)
        buffer.moveReaderIndex(forwardBy: 100)
        let tail = data.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[100...])) }
        #expect(CRC32C.checksum(buffer) == tail, "the ByteBuffer overload covers only the readable bytes")
    }
}
