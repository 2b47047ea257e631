import KafkaMessages
import NIOCore
import Testing

@Suite("Generated messages")
struct MessageRoundTripTests {
    /// Every generated request, response and header, at every generated version, survives
    /// encode → decode unchanged and re-encodes to the same bytes.
    @Test(arguments: SampleCase.all)
    func sampleRoundTrips(sample: SampleCase) throws {
        try sample.type.checkRoundTrip(version: sample.version)
    }

    /// Every strict prefix of every sample's encoding is rejected with a `KafkaWireError`.
    @Test(arguments: SampleCase.all)
    func truncatedSampleThrows(sample: SampleCase) {
        sample.type.checkEveryPrefixThrows(version: sample.version)
    }

    /// Decoding a version outside the generated range throws unsupported-version with the API key.
    @Test(arguments: [Int16(12), 13, -1])
    func produceOutsideGeneratedVersionsThrows(version: Int16) {
        var buffer = ProduceRequest.sampleEncoding(version: 3)
        #expect(throws: KafkaWireError.unsupportedVersion(apiKey: 0, version: version)) {
            _ = try ProduceRequest(from: &buffer, version: version)
        }
    }

    /// A string length of -2 is malformed (only -1 means null).
    @Test func negativeStringLengthThrows() {
        // FindCoordinator v0: Key (string).
        var buffer = ByteBuffer(bytes: [0xFF, 0xFE, 0x61, 0x62])
        #expect(throws: KafkaWireError.invalidLength(-2)) {
            _ = try FindCoordinatorRequest(from: &buffer, version: 0)
        }
    }

    /// An array count larger than the rest of the body throws before anything is allocated.
    @Test func arrayCountBeyondBufferThrows() {
        // Produce v3: TransactionalId = null, Acks = 1, TimeoutMs = 1000, TopicData count = 2^31 - 1.
        var buffer = ByteBuffer(bytes: [0xFF, 0xFF, 0x00, 0x01, 0x00, 0x00, 0x03, 0xE8, 0x7F, 0xFF, 0xFF, 0xFF, 0x00])
        #expect(throws: KafkaWireError.countExceedsReadableBytes(count: Int64(Int32.max), readableBytes: 1)) {
            _ = try ProduceRequest(from: &buffer, version: 3)
        }
        // Metadata v9 (flexible): Topics compact count uvarint 0xFFFFFFFF - 1.
        var compact = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x01])
        #expect(throws: KafkaWireError.countExceedsReadableBytes(count: Int64(UInt32.max) - 1, readableBytes: 1)) {
            _ = try MetadataRequest(from: &compact, version: 9)
        }
    }

    /// Null in a version where the field is not nullable is an error on read and written as empty.
    @Test func nullWhereNotNullableIsRejectedAndWrittenEmpty() throws {
        // Metadata v0: Topics is not nullable (nullable from v1).
        var null = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF])
        #expect(throws: KafkaWireError.unexpectedNull) { _ = try MetadataRequest(from: &null, version: 0) }
        var buffer = ByteBuffer()
        MetadataRequest(topics: nil).write(to: &buffer, version: 0)
        #expect(Array(buffer.readableBytesView) == [0, 0, 0, 0])
        buffer.clear()
        MetadataRequest(topics: nil).write(to: &buffer, version: 1)
        #expect(Array(buffer.readableBytesView) == [0xFF, 0xFF, 0xFF, 0xFF])
    }

    /// Tagged fields are written only when they differ from their default, in ascending tag order,
    /// and unknown tags are skipped on read.
    @Test func taggedFieldsAreSparseOrderedAndSkippable() throws {
        var response = ApiVersionsResponse()
        var empty = ByteBuffer()
        response.write(to: &empty, version: 3)
        // ErrorCode, ApiKeys (compact, 0 entries), ThrottleTimeMs, empty tagged section.
        #expect(Array(empty.readableBytesView) == [0, 0, 1, 0, 0, 0, 0, 0])

        response.zkMigrationReady = true  // tag 3
        response.finalizedFeaturesEpoch = 7  // tag 1
        var buffer = ByteBuffer()
        response.write(to: &buffer, version: 3)
        #expect(Array(buffer.readableBytesView.suffix(14)) == [2, 1, 8, 0, 0, 0, 0, 0, 0, 0, 7, 3, 1, 1])

        // An unknown tag 9 before the known ones is skipped.
        var withUnknown = ByteBuffer(bytes: [
            0, 0, 1, 0, 0, 0, 0, 3, 9, 2, 0xAB, 0xCD, 1, 8, 0, 0, 0, 0, 0, 0, 0, 7, 3, 1, 1,
        ])
        let decoded = try ApiVersionsResponse(from: &withUnknown, version: 3)
        #expect(decoded == response)
        #expect(withUnknown.readableBytes == 0)
    }

    /// Records decode as a zero-copy slice of the request buffer.
    @Test func recordsAreZeroCopySlices() throws {
        var request = ProduceRequest()
        request.topicData = [
            .init(
                name: "t",
                partitionData: [.init(index: 0, records: ByteBuffer(bytes: Array(repeating: 0x5A, count: 64)))]
            )
        ]
        var buffer = ByteBuffer()
        request.write(to: &buffer, version: 9)
        let decoded = try ProduceRequest(from: &buffer, version: 9)
        let records = try #require(decoded.topicData.first?.partitionData.first?.records)
        #expect(records.readableBytes == 64)
        let sharesStorage = buffer.withVeryUnsafeBytes { storage in
            records.withUnsafeReadableBytes { slice in
                // The slice lies inside the storage of the buffer it was read from.
                guard let start = storage.baseAddress, let sliceStart = slice.baseAddress else { return false }
                return sliceStart >= start && sliceStart + slice.count <= start + storage.count
            }
        }
        #expect(sharesStorage)
    }
}
