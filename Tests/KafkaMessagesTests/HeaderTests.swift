import KafkaMessages
import NIOCore
import Testing

@Suite("Headers")
struct HeaderTests {
    static let headerCases: [(version: Int16, bytes: [UInt8])] = [
        // v0: api key, api version, correlation id.
        (0, [0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x2A]),
        // v1: + client id as a classic nullable string.
        (1, [0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x2A, 0x00, 0x02, 0x63, 0x31]),
        // v2: the client id keeps its int16 length, then an empty tagged-field section.
        (2, [0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x2A, 0x00, 0x02, 0x63, 0x31, 0x00]),
    ]

    /// Request headers v0/v1/v2 have Kafka's exact layout.
    @Test(arguments: headerCases)
    func requestHeaderLayout(version: Int16, bytes: [UInt8]) throws {
        let header = RequestHeader(requestApiKey: 3, requestApiVersion: 1, correlationId: 42, clientId: "c1")
        var buffer = ByteBuffer()
        header.write(to: &buffer, version: version)
        #expect(Array(buffer.readableBytesView) == bytes)
        let decoded = try RequestHeader(from: &buffer, version: version)
        #expect(decoded.requestApiKey == 3)
        #expect(decoded.requestApiVersion == 1)
        #expect(decoded.correlationId == 42)
        #expect(decoded.clientId == (version == 0 ? "" : "c1"))
        #expect(buffer.readableBytes == 0)
    }

    /// A null client id is int16 -1 in v1 and v2 (never compact).
    @Test(arguments: [Int16(1), 2])
    func nullClientIdIsMinusOne(version: Int16) throws {
        var buffer = ByteBuffer()
        RequestHeader(requestApiKey: 18, requestApiVersion: 3, correlationId: 1, clientId: nil).write(
            to: &buffer,
            version: version
        )
        #expect(Array(buffer.readableBytesView.dropFirst(8).prefix(2)) == [0xFF, 0xFF])
        #expect(try RequestHeader(from: &buffer, version: version).clientId == nil)
    }

    static let responseHeaderCases: [(version: Int16, bytes: [UInt8])] = [(0, [0, 0, 0, 7]), (1, [0, 0, 0, 7, 0])]

    /// Response headers: v0 is the correlation id, v1 adds an empty tagged-field section.
    @Test(arguments: responseHeaderCases)
    func responseHeaderLayout(version: Int16, bytes: [UInt8]) throws {
        var buffer = ByteBuffer()
        ResponseHeader(correlationId: 7).write(to: &buffer, version: version)
        #expect(Array(buffer.readableBytesView) == bytes)
        #expect(try ResponseHeader(from: &buffer, version: version).correlationId == 7)
    }

    /// Header versions outside 0...2 (requests) and 0...1 (responses) are unsupported.
    @Test func unsupportedHeaderVersionsThrow() {
        var buffer = ByteBuffer(bytes: Array(repeating: 0, count: 16))
        #expect(throws: KafkaWireError.unsupportedHeaderVersion(3)) { _ = try RequestHeader(from: &buffer, version: 3) }
        #expect(throws: KafkaWireError.unsupportedHeaderVersion(2)) {
            _ = try ResponseHeader(from: &buffer, version: 2)
        }
    }

    /// The header version follows from the API key and version a frame starts with.
    @Test func headerVersionIsChosenFromApiKeyAndVersion() throws {
        var flexible = ByteBuffer()
        RequestHeader(requestApiKey: 0, requestApiVersion: 9, correlationId: 5, clientId: "p").write(
            to: &flexible,
            version: 2
        )
        #expect(RequestHeader.peekApiKeyAndVersion(in: flexible)! == (0, 9))
        #expect(
            try RequestHeader(decodingFrom: &flexible)
                == RequestHeader(requestApiKey: 0, requestApiVersion: 9, correlationId: 5, clientId: "p")
        )
        #expect(flexible.readableBytes == 0)

        var unknownKey = ByteBuffer()
        RequestHeader(requestApiKey: 999, requestApiVersion: 0, correlationId: 6, clientId: "x").write(
            to: &unknownKey,
            version: 1
        )
        #expect(try RequestHeader(decodingFrom: &unknownKey).correlationId == 6)

        var short = ByteBuffer(bytes: [0, 1, 0])
        #expect(RequestHeader.peekApiKeyAndVersion(in: short) == nil)
        #expect(throws: KafkaWireError.self) { _ = try RequestHeader(decodingFrom: &short) }
    }
}

@Suite("ApiKey")
struct ApiKeyTests {
    /// ApiVersions responses always use response header v0 (KIP-511), even when flexible.
    @Test func apiVersionsResponsesUseHeaderV0() {
        #expect(ApiKey.apiVersions.responseHeaderVersion(for: 3) == 0)
        #expect(ApiKey.apiVersions.requestHeaderVersion(for: 3) == 2)
        #expect(ApiKey.apiVersions.isFlexible(version: 3))
    }

    /// Header versions follow flexibility: request 2/1, response 1/0; ControlledShutdown v0 uses 0.
    @Test func headerVersionsFollowFlexibility() {
        #expect(ApiKey.produce.requestHeaderVersion(for: 8) == 1)
        #expect(ApiKey.produce.requestHeaderVersion(for: 9) == 2)
        #expect(ApiKey.produce.responseHeaderVersion(for: 8) == 0)
        #expect(ApiKey.produce.responseHeaderVersion(for: 9) == 1)
        #expect(ApiKey.fetch.isFlexible(version: 11) == false)
        #expect(ApiKey.fetch.isFlexible(version: 12))
        #expect(ApiKey.saslHandshake.isFlexible(version: 1) == false)
        #expect(ApiKey.controlledShutdown.requestHeaderVersion(for: 0) == 0)
        #expect(ApiKey.controlledShutdown.requestHeaderVersion(for: 1) == 1)
    }

    /// Cases are named after the JSON request names and carry Kafka's API keys.
    @Test func casesMatchKafka() {
        #expect(ApiKey.allCases.count == 76)
        #expect(ApiKey.produce.rawValue == 0 && ApiKey.produce.name == "Produce")
        #expect(ApiKey.fetch.rawValue == 1)
        #expect(ApiKey.listOffsets.rawValue == 2)
        #expect(ApiKey.metadata.rawValue == 3)
        #expect(ApiKey.apiVersions.rawValue == 18)
        #expect(ApiKey.createTopics.rawValue == 19)
        #expect(ApiKey.initProducerId.rawValue == 22)
        #expect(ApiKey.describeConfigs.rawValue == 32)
        #expect(ApiKey.saslAuthenticate.rawValue == 36)
        #expect(ApiKey.deleteGroups.rawValue == 42)
        #expect(ApiKey.produce.validVersions == 0...11)
        #expect(ApiKey.produce.generatedVersions == 0...11)
        #expect(ApiKey.metadata.generatedVersions == 0...12)
        #expect(ApiKey.leaderAndIsr.generatedVersions == nil)
    }

    /// Each generated message type agrees with its ApiKey entry.
    @Test func messageTypesAgreeWithApiKeys() {
        #expect(ProduceRequest.apiKey == .produce)
        #expect(ProduceRequest.Response.self == ProduceResponse.self)
        #expect(FetchResponse.apiKey == .fetch)
        #expect(FetchRequest.generatedVersions == ApiKey.fetch.generatedVersions)
        #expect(ApiVersionsRequest.generatedVersions == 0...3)
        let generated = ApiKey.allCases.filter { $0.generatedVersions != nil }
        #expect(generated.count == 40)
    }
}

@Suite("ErrorCode")
struct ErrorCodeTests {
    /// Names, codes and retriability match Kafka 3.8's `Errors`.
    @Test(arguments: [
        (ErrorCode.none, 0, "NONE", false),
        (.unknownServerError, -1, "UNKNOWN_SERVER_ERROR", false),
        (.offsetOutOfRange, 1, "OFFSET_OUT_OF_RANGE", false),
        (.corruptMessage, 2, "CORRUPT_MESSAGE", true),
        (.unknownTopicOrPartition, 3, "UNKNOWN_TOPIC_OR_PARTITION", true),
        (.notLeaderOrFollower, 6, "NOT_LEADER_OR_FOLLOWER", true),
        (.messageTooLarge, 10, "MESSAGE_TOO_LARGE", false),
        (.unsupportedVersion, 35, "UNSUPPORTED_VERSION", false),
        (.outOfOrderSequenceNumber, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER", false),
        (.concurrentTransactions, 51, "CONCURRENT_TRANSACTIONS", true),
        (.kafkaStorageError, 56, "KAFKA_STORAGE_ERROR", true),
        (.invalidRecord, 87, "INVALID_RECORD", false),
        (.throttlingQuotaExceeded, 89, "THROTTLING_QUOTA_EXCEEDED", true),
        (.invalidRegistration, 119, "INVALID_REGISTRATION", false),
        (.transactionAbortable, 120, "TRANSACTION_ABORTABLE", false),
    ])
    func errorCodesMatchKafka(code: ErrorCode, rawValue: Int16, name: String, retriable: Bool) {
        #expect(code.rawValue == rawValue)
        #expect(code.name == name)
        #expect(code.isRetriable == retriable)
        #expect(code.description == "\(name) (\(rawValue))")
    }

    /// Unknown codes stay representable.
    @Test func unknownCodesAreRepresentable() {
        #expect(ErrorCode(rawValue: 999).name == "UNKNOWN_ERROR_CODE_999")
        #expect(ErrorCode(rawValue: 999).isRetriable == false)
    }
}
