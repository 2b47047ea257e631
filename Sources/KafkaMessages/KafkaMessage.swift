// Re-exported so `import KafkaMessages` also brings the wire vocabulary the generated types use
// (`KafkaUUID`, `KafkaWireError`, the `ByteBuffer` read/write extensions).
@_exported import KafkaWire
import NIOCore

/// A Kafka protocol message, header or response body that can be decoded and encoded at any of its
/// generated versions. The conforming types are generated from Apache Kafka's JSON message
/// definitions (`Sources/KafkaMessages/Generated`, see `fjord-codegen`).
public protocol KafkaMessage: Sendable, Equatable {
    /// The versions this type was generated for: exactly the versions the broker advertises.
    static var generatedVersions: ClosedRange<Int16> { get }

    /// A value with every field at its default.
    init()

    /// Decodes one value at `version`, consuming its bytes from `buffer`. Throws `KafkaWireError`
    /// for truncated or malformed input, and for versions outside `generatedVersions`. Trailing
    /// bytes after the value are left unread.
    init(from buffer: inout ByteBuffer, version: Int16) throws

    /// Encodes the value at `version`. Never fails: fields that do not exist in `version` are
    /// skipped, and a nil in a version where the field is not nullable is written as empty.
    /// Only versions in `generatedVersions` produce meaningful output.
    func write(to buffer: inout ByteBuffer, version: Int16)
}

/// A request body; `Response` is the body the broker answers it with.
public protocol KafkaRequestMessage: KafkaMessage {
    associatedtype Response: KafkaResponseMessage
    static var apiKey: ApiKey { get }
}

/// A response body.
public protocol KafkaResponseMessage: KafkaMessage {
    static var apiKey: ApiKey { get }
}

extension KafkaMessage {
    /// Decodes a value from the readable bytes of `buffer` without consuming them.
    @inlinable
    public init(decoding buffer: ByteBuffer, version: Int16) throws {
        var copy = buffer
        try self.init(from: &copy, version: version)
    }
}

extension RequestHeader {
    /// The API key and version a request frame starts with (its first four bytes), without
    /// consuming them; nil if fewer than four bytes are readable. Every request header version
    /// starts with these two int16 fields, so they choose how to read the rest.
    @inlinable
    public static func peekApiKeyAndVersion(in buffer: ByteBuffer) -> (apiKey: Int16, apiVersion: Int16)? {
        guard
            let apiKey = buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: Int16.self),
            let apiVersion = buffer.getInteger(at: buffer.readerIndex + 2, endianness: .big, as: Int16.self)
        else { return nil }
        return (apiKey, apiVersion)
    }

    /// Decodes a request header whose version follows from the API key and version it starts
    /// with (`ApiKey.requestHeaderVersion(for:)`). An unknown API key is read as header v1, the
    /// header every non-flexible request uses, so the broker still learns the correlation id.
    public init(decodingFrom buffer: inout ByteBuffer) throws(KafkaWireError) {
        guard let (rawApiKey, apiVersion) = RequestHeader.peekApiKeyAndVersion(in: buffer) else {
            throw .truncated(neededBytes: 4, readableBytes: buffer.readableBytes)
        }
        let headerVersion = ApiKey(rawValue: rawApiKey)?.requestHeaderVersion(for: apiVersion) ?? 1
        try self.init(from: &buffer, version: headerVersion)
    }
}
