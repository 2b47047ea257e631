/// A Kafka wire-format decoding failure.
///
/// Every read in `KafkaWire` and every generated `init(from:version:)` reports malformed or short
/// input with this error and never traps: client bytes are untrusted input (STYLE.md, rule 10).
/// The error is a struct backed by a private enum so new kinds can be added without breaking
/// callers that switch over them; callers ask with the `is…` queries instead.
public struct KafkaWireError: Error, Sendable, Hashable, CustomStringConvertible {
    @usableFromInline
    enum Kind: Sendable, Hashable {
        /// Fewer bytes remain than the value needs.
        case truncated(neededBytes: Int, readableBytes: Int)
        /// A length prefix is negative (other than the -1 that means null) or too large.
        case invalidLength(Int64)
        /// A varint (varlong) ran over 5 (10) bytes.
        case varintTooLong
        /// An array count exceeds the bytes that remain; checked before anything is allocated.
        case countExceedsReadableBytes(count: Int64, readableBytes: Int)
        /// A null (-1 length) arrived for a field that is not nullable in this version.
        case unexpectedNull
        /// The API version is not one this codec generates.
        case unsupportedVersion(apiKey: Int16, version: Int16)
        /// The request/response header version is not 0...2 (requests) or 0...1 (responses).
        case unsupportedHeaderVersion(version: Int16)
    }

    @usableFromInline
    let kind: Kind

    @usableFromInline
    init(_ kind: Kind) {
        self.kind = kind
    }

    // MARK: Factories

    @inlinable
    public static func truncated(neededBytes: Int, readableBytes: Int) -> KafkaWireError {
        KafkaWireError(.truncated(neededBytes: neededBytes, readableBytes: readableBytes))
    }

    @inlinable
    public static func invalidLength(_ length: Int64) -> KafkaWireError {
        KafkaWireError(.invalidLength(length))
    }

    @inlinable
    public static var varintTooLong: KafkaWireError { KafkaWireError(.varintTooLong) }

    @inlinable
    public static func countExceedsReadableBytes(count: Int64, readableBytes: Int) -> KafkaWireError {
        KafkaWireError(.countExceedsReadableBytes(count: count, readableBytes: readableBytes))
    }

    @inlinable
    public static var unexpectedNull: KafkaWireError { KafkaWireError(.unexpectedNull) }

    @inlinable
    public static func unsupportedVersion(apiKey: Int16, version: Int16) -> KafkaWireError {
        KafkaWireError(.unsupportedVersion(apiKey: apiKey, version: version))
    }

    @inlinable
    public static func unsupportedHeaderVersion(_ version: Int16) -> KafkaWireError {
        KafkaWireError(.unsupportedHeaderVersion(version: version))
    }

    // MARK: Queries

    /// The input ended early: a frame decoder may wait for more bytes, a complete frame is corrupt.
    public var isTruncated: Bool {
        if case .truncated = kind { return true }
        return false
    }

    /// A length or count prefix is impossible (negative, or larger than the remaining bytes).
    public var isInvalidLength: Bool {
        switch kind {
        case .invalidLength, .countExceedsReadableBytes: return true
        default: return false
        }
    }

    public var isVarintTooLong: Bool { kind == .varintTooLong }

    public var isUnexpectedNull: Bool { kind == .unexpectedNull }

    /// The API key and version of an unsupported-version error, else nil. The broker answers these
    /// with UNSUPPORTED_VERSION (35) rather than by closing the connection where Kafka does.
    public var unsupportedVersion: (apiKey: Int16, version: Int16)? {
        if case .unsupportedVersion(let apiKey, let version) = kind { return (apiKey, version) }
        return nil
    }

    public var isUnsupportedVersion: Bool {
        switch kind {
        case .unsupportedVersion, .unsupportedHeaderVersion: return true
        default: return false
        }
    }

    public var description: String {
        switch kind {
        case .truncated(let needed, let readable):
            return "truncated Kafka message: needed \(needed) bytes, \(readable) readable"
        case .invalidLength(let length):
            return "invalid Kafka length prefix \(length)"
        case .varintTooLong:
            return "Kafka varint is too long"
        case .countExceedsReadableBytes(let count, let readable):
            return "Kafka array count \(count) exceeds the \(readable) readable bytes"
        case .unexpectedNull:
            return "null value for a non-nullable Kafka field"
        case .unsupportedVersion(let apiKey, let version):
            return "unsupported version \(version) of Kafka API \(apiKey)"
        case .unsupportedHeaderVersion(let version):
            return "unsupported Kafka header version \(version)"
        }
    }
}
