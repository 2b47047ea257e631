/// Kafka's `uuid` type (topic ids, KIP-516): 128 bits, shown as URL-safe base64 without padding.
public struct KafkaUUID: Sendable, Hashable, CustomStringConvertible {
    public var mostSignificantBits: UInt64
    public var leastSignificantBits: UInt64

    @inlinable
    public init(mostSignificantBits: UInt64, leastSignificantBits: UInt64) {
        self.mostSignificantBits = mostSignificantBits
        self.leastSignificantBits = leastSignificantBits
    }

    /// All zero bits: Kafka's `Uuid.ZERO_UUID`, meaning "no topic id".
    public static let zero = KafkaUUID(mostSignificantBits: 0, leastSignificantBits: 0)

    /// Kafka's `Uuid.METADATA_TOPIC_ID` (0, 1), reserved for the KRaft metadata topic.
    public static let metadataTopicId = KafkaUUID(mostSignificantBits: 0, leastSignificantBits: 1)

    /// A random version-4 UUID, never `zero`, never `metadataTopicId` and never one whose text
    /// starts with "-" (which command-line tools would read as an option) — Kafka's
    /// `Uuid.randomUuid()` rules.
    public static func random() -> KafkaUUID {
        var generator = SystemRandomNumberGenerator()
        return random(using: &generator)
    }

    public static func random<G: RandomNumberGenerator>(using generator: inout G) -> KafkaUUID {
        while true {
            var most = generator.next() as UInt64
            var least = generator.next() as UInt64
            most = (most & ~0xF000) | 0x4000  // version 4
            least = (least & ~(0xC000_0000_0000_0000 as UInt64)) | 0x8000_0000_0000_0000  // IETF variant
            let uuid = KafkaUUID(mostSignificantBits: most, leastSignificantBits: least)
            if uuid != .zero && uuid != .metadataTopicId && !uuid.description.hasPrefix("-") {
                return uuid
            }
        }
    }

    /// The 22-character URL-safe base64 text without padding, as Kafka's `Uuid.toString()`.
    public var description: String {
        var bytes = [UInt8]()
        bytes.reserveCapacity(16)
        for shift in stride(from: 56, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: mostSignificantBits >> UInt64(shift)))
        }
        for shift in stride(from: 56, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: leastSignificantBits >> UInt64(shift)))
        }
        var text = [UInt8]()
        text.reserveCapacity(22)
        var index = 0
        while index < 16 {
            let b0 = UInt32(bytes[index])
            let b1 = index + 1 < 16 ? UInt32(bytes[index + 1]) : 0
            let b2 = index + 2 < 16 ? UInt32(bytes[index + 2]) : 0
            let group = (b0 << 16) | (b1 << 8) | b2
            let available = min(3, 16 - index) + 1  // characters this group contributes
            for position in 0..<available {
                let sixBits = Int((group >> UInt32(18 - 6 * position)) & 0x3F)
                text.append(KafkaUUID.alphabet[sixBits])
            }
            index += 3
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// Parses Kafka's text form: 22 URL-safe base64 characters (24 with "==" padding is accepted,
    /// as Java's decoder does). Returns nil for anything else.
    public init?(base64String: String) {
        var characters = Array(base64String.utf8)
        if characters.count == 24 && characters[22] == UInt8(ascii: "=") && characters[23] == UInt8(ascii: "=") {
            characters.removeLast(2)
        }
        guard characters.count == 22 else { return nil }
        var most: UInt64 = 0
        var least: UInt64 = 0
        var bitCount = 0
        for character in characters {
            guard let value = KafkaUUID.decodeTable(character) else { return nil }
            // 22 characters carry 132 bits; the last 4 are padding and are dropped.
            for bit in stride(from: 5, through: 0, by: -1) where bitCount < 128 {
                let set = UInt64((value >> UInt8(bit)) & 1)
                if bitCount < 64 {
                    most = (most << 1) | set
                } else {
                    least = (least << 1) | set
                }
                bitCount += 1
            }
        }
        self.init(mostSignificantBits: most, leastSignificantBits: least)
    }

    private static let alphabet: [UInt8] = Array(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8
    )

    private static func decodeTable(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): return character - UInt8(ascii: "A")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): return character - UInt8(ascii: "a") + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return character - UInt8(ascii: "0") + 52
        case UInt8(ascii: "-"): return 62
        case UInt8(ascii: "_"): return 63
        default: return nil
        }
    }
}
