import Foundation
import KafkaMessages
import NIOCore
import Testing

/// A request frame captured from a real client by `capture_first_frame.py` (Golden/*.hex).
struct GoldenFrame: Sendable, CustomTestStringConvertible {
    var name: String
    var clientId: String?
    var softwareName: String
    var softwareVersion: String
    var apiVersion: Int16

    var testDescription: String { name }

    /// The frame without its size prefix: the hex lines of the file, '#' comments skipped.
    func bytes() throws -> ByteBuffer {
        let url = try #require(Bundle.module.url(forResource: "Golden/\(name)", withExtension: "hex"))
        let text = try String(contentsOf: url, encoding: .utf8)
        let hex = text.split(separator: "\n").filter { !$0.hasPrefix("#") }.joined()
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            bytes.append(try #require(UInt8(hex[index..<next], radix: 16)))
            index = next
        }
        return ByteBuffer(bytes: bytes)
    }
}

@Suite("Golden frames from real clients")
struct GoldenFrameTests {
    /// ApiVersions v3 frames: the versions we generate.
    static let supported: [GoldenFrame] = [
        GoldenFrame(
            name: "kcat-librdkafka-2.0.2-ApiVersions-v3",
            clientId: "rdkafka",
            softwareName: "librdkafka",
            softwareVersion: "2.0.2",
            apiVersion: 3
        ),
        GoldenFrame(
            name: "confluent-kafka-2.16.1-librdkafka-2.16.0-ApiVersions-v3",
            clientId: "rdkafka",
            softwareName: "confluent-kafka-python",
            softwareVersion: "2.16.1-rdkafka-2.16.0",
            apiVersion: 3
        ),
    ]

    /// kafka-python 3.0 opens with ApiVersions v4, which Kafka 3.8 does not define and we do not
    /// advertise; the broker must still read the header and answer with UNSUPPORTED_VERSION.
    static let unsupported = GoldenFrame(
        name: "kafka-python-3.0.12-ApiVersions-v4",
        clientId: "kafka-python-3.0.12",
        softwareName: "kafka-python",
        softwareVersion: "3.0.12",
        apiVersion: 4
    )

    /// The header (v2, client id with an int16 length) and the ApiVersions v3 body decode to the
    /// client's values, consume the frame exactly, and re-encode to the captured bytes.
    @Test(arguments: supported)
    func apiVersionsFrameDecodesAndReencodes(golden: GoldenFrame) throws {
        let frame = try golden.bytes()
        var buffer = frame
        let header = try RequestHeader(decodingFrom: &buffer)
        #expect(header.requestApiKey == ApiKey.apiVersions.rawValue)
        #expect(header.requestApiVersion == golden.apiVersion)
        #expect(header.correlationId == 1)
        #expect(header.clientId == golden.clientId)
        let request = try ApiVersionsRequest(from: &buffer, version: header.requestApiVersion)
        #expect(request.clientSoftwareName == golden.softwareName)
        #expect(request.clientSoftwareVersion == golden.softwareVersion)
        #expect(buffer.readableBytes == 0)

        var reencoded = ByteBuffer()
        header.write(to: &reencoded, version: ApiKey.apiVersions.requestHeaderVersion(for: golden.apiVersion))
        request.write(to: &reencoded, version: golden.apiVersion)
        #expect(reencoded == frame)
    }

    /// Metadata requests sent right after a (fake) ApiVersions answer that advertised our versions.
    static let metadata: [GoldenFrame] = [
        GoldenFrame(
            name: "kcat-librdkafka-2.0.2-Metadata-v4",
            clientId: "rdkafka",
            softwareName: "",
            softwareVersion: "",
            apiVersion: 4
        ),
        GoldenFrame(
            name: "confluent-kafka-2.16.1-librdkafka-2.16.0-Metadata-v12",
            clientId: "rdkafka",
            softwareName: "",
            softwareVersion: "",
            apiVersion: 12
        ),
    ]

    /// librdkafka's first Metadata request (brokers only: an empty, non-null topic list) decodes,
    /// consumes the frame exactly and re-encodes to the captured bytes, classic (v4) and flexible (v12).
    @Test(arguments: metadata)
    func metadataFrameDecodesAndReencodes(golden: GoldenFrame) throws {
        let frame = try golden.bytes()
        var buffer = frame
        let header = try RequestHeader(decodingFrom: &buffer)
        #expect(header.requestApiKey == ApiKey.metadata.rawValue)
        #expect(header.requestApiVersion == golden.apiVersion)
        #expect(header.correlationId == 2)
        #expect(header.clientId == golden.clientId)
        let request = try MetadataRequest(from: &buffer, version: header.requestApiVersion)
        #expect(request.topics == [])
        #expect(request.allowAutoTopicCreation == false)
        #expect(request.includeTopicAuthorizedOperations == false)
        #expect(buffer.readableBytes == 0)

        var reencoded = ByteBuffer()
        header.write(to: &reencoded, version: ApiKey.metadata.requestHeaderVersion(for: golden.apiVersion))
        request.write(to: &reencoded, version: golden.apiVersion)
        #expect(reencoded == frame)
    }

    /// An ApiVersions version we do not generate throws unsupported-version for the body, while
    /// the header (API key, version, correlation id) still parses.
    @Test func unsupportedApiVersionsFrameStillYieldsItsHeader() throws {
        let golden = Self.unsupported
        var buffer = try golden.bytes()
        let header = try RequestHeader(decodingFrom: &buffer)
        #expect(header.requestApiKey == 18)
        #expect(header.requestApiVersion == 4)
        #expect(header.correlationId == 1)
        #expect(header.clientId == golden.clientId)
        #expect(ApiKey.apiVersions.generatedVersions?.contains(header.requestApiVersion) == false)

        var body = buffer
        #expect(throws: KafkaWireError.unsupportedVersion(apiKey: 18, version: 4)) {
            _ = try ApiVersionsRequest(from: &body, version: header.requestApiVersion)
        }
        // v4 changed no fields (KAFKA-17011), so the body reads with the v3 layout.
        let request = try ApiVersionsRequest(from: &buffer, version: 3)
        #expect(request.clientSoftwareName == golden.softwareName)
        #expect(request.clientSoftwareVersion == golden.softwareVersion)
        #expect(buffer.readableBytes == 0)
    }

    /// Produce and Fetch requests captured through `capture_proxy.py` while each client produced to
    /// and consumed from partition 0 of the topic "golden" on a running fjord.
    static let produce: [GoldenFrame] = [
        GoldenFrame(
            name: "kcat-librdkafka-2.0.2-Produce-v7",
            clientId: "rdkafka",
            softwareName: "",
            softwareVersion: "",
            apiVersion: 7
        ),
        GoldenFrame(
            name: "confluent-kafka-2.16.1-librdkafka-2.16.0-Produce-v9",
            clientId: "rdkafka",
            softwareName: "",
            softwareVersion: "",
            apiVersion: 9
        ),
        GoldenFrame(
            name: "kafka-python-3.0.12-Produce-v9",
            clientId: "kafka-python-producer-1",
            softwareName: "",
            softwareVersion: "",
            apiVersion: 9
        ),
    ]

    static let fetch: [GoldenFrame] = [
        GoldenFrame(
            name: "kcat-librdkafka-2.0.2-Fetch-v11",
            clientId: "rdkafka",
            softwareName: "",
            softwareVersion: "",
            apiVersion: 11
        ),
        GoldenFrame(
            name: "confluent-kafka-2.16.1-librdkafka-2.16.0-Fetch-v12",
            clientId: "rdkafka",
            softwareName: "",
            softwareVersion: "",
            apiVersion: 12
        ),
        GoldenFrame(
            name: "kafka-python-3.0.12-Fetch-v12",
            clientId: "kafka-python-3.0.12",
            softwareName: "",
            softwareVersion: "",
            apiVersion: 12
        ),
    ]

    /// A real client's Produce decodes to one RecordBatch v2 for golden/0 (records kept as a
    /// zero-copy slice of exactly the batch), consumes the frame and re-encodes byte for byte.
    @Test(arguments: produce)
    func produceFrameDecodesAndReencodes(golden: GoldenFrame) throws {
        let frame = try golden.bytes()
        var buffer = frame
        let header = try RequestHeader(decodingFrom: &buffer)
        #expect(header.requestApiKey == ApiKey.produce.rawValue)
        #expect(header.requestApiVersion == golden.apiVersion)
        #expect(header.clientId == golden.clientId)
        let request = try ProduceRequest(from: &buffer, version: header.requestApiVersion)
        #expect(buffer.readableBytes == 0)
        #expect(request.transactionalId == nil)
        #expect([-1, 1].contains(request.acks))
        #expect(request.topicData.map(\.name) == ["golden"])
        let partition = try #require(request.topicData.first?.partitionData.first)
        #expect(partition.index == 0)
        let records = try #require(partition.records)
        // RecordBatch v2: batchLength covers everything after its own field; magic 2 at byte 16.
        #expect(
            records.getInteger(at: records.readerIndex + 8, as: Int32.self).map { Int($0) + 12 }
                == records.readableBytes
        )
        #expect(records.getInteger(at: records.readerIndex + 16, as: Int8.self) == 2)

        var reencoded = ByteBuffer()
        header.write(to: &reencoded, version: ApiKey.produce.requestHeaderVersion(for: golden.apiVersion))
        request.write(to: &reencoded, version: golden.apiVersion)
        #expect(reencoded == frame)
    }

    /// A real client's Fetch for golden/0 decodes (sessionless or new-session fields, limits),
    /// consumes the frame and re-encodes byte for byte.
    @Test(arguments: fetch)
    func fetchFrameDecodesAndReencodes(golden: GoldenFrame) throws {
        let frame = try golden.bytes()
        var buffer = frame
        let header = try RequestHeader(decodingFrom: &buffer)
        #expect(header.requestApiKey == ApiKey.fetch.rawValue)
        #expect(header.requestApiVersion == golden.apiVersion)
        #expect(header.clientId == golden.clientId)
        let request = try FetchRequest(from: &buffer, version: header.requestApiVersion)
        #expect(buffer.readableBytes == 0)
        #expect(request.replicaId == -1)
        #expect(request.maxWaitMs > 0)
        #expect(request.sessionId == 0)
        #expect([-1, 0].contains(request.sessionEpoch))
        #expect(request.topics.map(\.topic) == ["golden"])
        let partition = try #require(request.topics.first?.partitions.first)
        #expect(partition.partition == 0)
        #expect(partition.fetchOffset >= 0)
        #expect(partition.partitionMaxBytes > 0)

        var reencoded = ByteBuffer()
        header.write(to: &reencoded, version: ApiKey.fetch.requestHeaderVersion(for: golden.apiVersion))
        request.write(to: &reencoded, version: golden.apiVersion)
        #expect(reencoded == frame)
    }

    /// Every captured file is covered by a test above.
    @Test func everyGoldenFileIsChecked() throws {
        let directory = try #require(Bundle.module.url(forResource: "Golden", withExtension: nil))
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { $0.hasSuffix(".hex") }
            .map { String($0.dropLast(4)) }
        let known = Set((Self.supported + Self.metadata + Self.produce + Self.fetch + [Self.unsupported]).map(\.name))
        #expect(Set(names) == known)
    }
}
