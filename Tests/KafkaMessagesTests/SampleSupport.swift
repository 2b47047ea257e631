import KafkaMessages
import NIOCore
import Testing

/// A generated message with generated sample values (Generated/Samples.swift).
protocol SampleableMessage: KafkaMessage {
    /// A value in which every field on the wire in `version` differs from its default.
    static func sample(version: Int16) -> Self
}

/// One (message type, version) pair to test.
struct SampleCase: Sendable, CustomTestStringConvertible {
    var type: any SampleableMessage.Type
    var version: Int16

    var testDescription: String { "\(type) v\(version)" }

    /// Every generated message at every generated version.
    static let all: [SampleCase] = generatedSampleTypes.flatMap { type in
        type.generatedVersions.map { SampleCase(type: type, version: $0) }
    }
}

extension SampleableMessage {
    /// The sample's encoding at `version`.
    static func sampleEncoding(version: Int16) -> ByteBuffer {
        var buffer = ByteBuffer()
        sample(version: version).write(to: &buffer, version: version)
        return buffer
    }

    /// Encode → decode → equal, nothing left over, and re-encoding gives identical bytes.
    static func checkRoundTrip(version: Int16) throws {
        let original = sample(version: version)
        let encoded = sampleEncoding(version: version)
        var defaultEncoding = ByteBuffer()
        Self().write(to: &defaultEncoding, version: version)
        // Only a version with no fields on the wire (ApiVersionsRequest v0-2) may equal the default.
        #expect(original != Self() || encoded == defaultEncoding, "the sample must not be all defaults")
        var reader = encoded
        let decoded = try Self(from: &reader, version: version)
        #expect(reader.readableBytes == 0, "decoding must consume the whole encoding")
        #expect(decoded == original)
        var reencoded = ByteBuffer()
        decoded.write(to: &reencoded, version: version)
        #expect(reencoded == encoded)
    }

    /// Every strict prefix of the encoding throws a `KafkaWireError` (and never traps).
    static func checkEveryPrefixThrows(version: Int16) {
        let encoded = sampleEncoding(version: version)
        for length in 0..<encoded.readableBytes {
            var prefix = ByteBuffer(bytes: encoded.readableBytesView.prefix(length))
            #expect(throws: KafkaWireError.self, "prefix of \(length) of \(encoded.readableBytes) bytes") {
                _ = try Self(from: &prefix, version: version)
            }
        }
    }
}
