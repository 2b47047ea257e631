import NIOCore
import StorageHost
import Testing

@testable import BrokerCore
@testable import KafkaMessages

@Suite("ApiVersions, Metadata and request handling")
struct ProtocolTests {
    /// ApiVersions advertises exactly the implemented APIs, at every version 0–3.
    @Test(arguments: [Int16(0), 1, 2, 3])
    func apiVersionsListsImplementedApis(version: Int16) async throws {
        let test = try await TestBroker.start()
        let response = try await test.send(
            ApiVersionsRequest(clientSoftwareName: "t", clientSoftwareVersion: "1"),
            version: version
        )
        #expect(response.errorCode == 0)
        let advertised = Dictionary(
            uniqueKeysWithValues: response.apiKeys.map { ($0.apiKey, $0.minVersion...$0.maxVersion) }
        )
        #expect(advertised[ApiKey.produce.rawValue] == 0...11)
        #expect(advertised[ApiKey.fetch.rawValue] == 0...16)
        #expect(advertised[ApiKey.metadata.rawValue] == 0...12)
        #expect(advertised[ApiKey.apiVersions.rawValue] == 0...3)
        #expect(advertised.count == SupportedApis.implemented.count)
    }

    /// The v3 ApiVersions response ends with an empty tagged-field section (librdkafka 2.0.2).
    @Test func apiVersionsV3HasNoTaggedFields() async throws {
        let test = try await TestBroker.start()
        let outcome = await test.send(
            frame: TestBroker.frame(
                ApiVersionsRequest(clientSoftwareName: "x", clientSoftwareVersion: "1"),
                version: 3,
                correlationId: 9
            )
        )
        guard case .respond(let buffer) = outcome else { throw UnexpectedOutcome(description: "\(outcome)") }
        // …, throttle_time_ms (4 bytes, 0), tagged fields: count 0.
        #expect(buffer.getBytes(at: buffer.writerIndex - 5, length: 5) == [0, 0, 0, 0, 0])
        // Response header v0: size, correlation id, then the error code directly.
        #expect(buffer.getInteger(at: 4, as: Int32.self) == 9)
        #expect(buffer.getInteger(at: 8, as: Int16.self) == 0)
    }

    /// An unsupported ApiVersions version gets a v0 UNSUPPORTED_VERSION answer carrying our range.
    @Test func unsupportedApiVersionsVersionGetsV0Error() async throws {
        let test = try await TestBroker.start()
        var frame = ByteBuffer()
        frame.writeInteger(Int16(18))
        frame.writeInteger(Int16(7))
        frame.writeInteger(Int32(55))
        frame.writeInteger(Int16(-1))
        let response = try TestBroker.decode(
            await test.send(frame: frame),
            for: ApiVersionsRequest.self,
            version: 0,
            correlationId: 55
        )
        #expect(response.errorCode == ErrorCode.unsupportedVersion.rawValue)
        #expect(response.apiKeys.map { [$0.apiKey, $0.minVersion, $0.maxVersion] } == [[18, 0, 3]])
    }

    /// Unknown API keys, unadvertised versions, short frames and truncated bodies close the connection.
    @Test func unparseableRequestsClose() async throws {
        let test = try await TestBroker.start()
        var unknown = ByteBuffer()
        unknown.writeInteger(Int16(999))
        unknown.writeInteger(Int16(0))
        unknown.writeInteger(Int32(1))
        var unsupported = ByteBuffer()
        unsupported.writeInteger(ApiKey.fetch.rawValue)
        unsupported.writeInteger(Int16(3))
        unsupported.writeInteger(Int32(1))
        var truncated = TestBroker.frame(MetadataRequest(topics: [.init(name: "abc")]), version: 1, correlationId: 1)
        truncated.moveWriterIndex(to: truncated.writerIndex - 2)
        for frame in [unknown, unsupported, ByteBuffer(bytes: [0, 3, 0]), truncated] {
            guard case .close = await test.send(frame: frame) else {
                Issue.record("expected close for \(frame)")
                continue
            }
        }
    }

    /// Metadata auto-creates topics when allowed, and refuses invalid names and forbidden creation.
    @Test func metadataAutoCreation() async throws {
        let test = try await TestBroker.start { $0.defaultPartitions = 3 }
        let created = try await test.send(
            MetadataRequest(topics: [.init(name: "auto")], allowAutoTopicCreation: true),
            version: 12
        )
        #expect(created.topics[0].errorCode == 0)
        #expect(created.topics[0].partitions.count == 3)
        #expect(created.topics[0].topicId != .zero)
        #expect(created.brokers.map(\.nodeId) == [1])
        #expect(created.controllerId == 1)
        let forbidden = try await test.send(
            MetadataRequest(topics: [.init(name: "other")], allowAutoTopicCreation: false),
            version: 12
        )
        #expect(forbidden.topics[0].errorCode == ErrorCode.unknownTopicOrPartition.rawValue)
        let invalid = try await test.send(MetadataRequest(topics: [.init(name: "bad name!")]), version: 1)
        #expect(invalid.topics[0].errorCode == ErrorCode.invalidTopicException.rawValue)
        let all = try await test.send(MetadataRequest(topics: nil), version: 1)
        #expect(all.topics.map(\.name) == ["auto"])
        let allV0 = try await test.send(MetadataRequest(topics: []), version: 0)
        #expect(allV0.topics.map(\.name) == ["auto"])
        let byId = try await test.send(
            MetadataRequest(topics: [.init(topicId: created.topics[0].topicId, name: nil)]),
            version: 12
        )
        #expect(byId.topics[0].name == "auto")
    }

    /// With auto-creation off, Produce to an unknown topic answers UNKNOWN_TOPIC_OR_PARTITION.
    @Test func autoCreationCanBeDisabled() async throws {
        let test = try await TestBroker.start { $0.autoCreateTopics = false }
        let meta = try await test.send(
            MetadataRequest(topics: [.init(name: "x")], allowAutoTopicCreation: true),
            version: 9
        )
        #expect(meta.topics[0].errorCode == ErrorCode.unknownTopicOrPartition.rawValue)
        #expect(
            try await test.produce("x", batch: makeBatch(count: 1)).errorCode
                == ErrorCode.unknownTopicOrPartition.rawValue
        )
    }
}

@Suite("CreateTopics, DeleteTopics, DescribeConfigs")
struct AdminTests {
    func create(
        _ test: TestBroker,
        _ topic: CreateTopicsRequest.CreatableTopic,
        validateOnly: Bool = false,
        version: Int16 = 7
    )
        async throws -> CreateTopicsResponse.CreatableTopicResult
    {
        try await test.send(
            CreateTopicsRequest(topics: [topic], timeoutMs: 1000, validateOnly: validateOnly),
            version: version
        ).topics[0]
    }

    /// CreateTopics reports Kafka's error for each kind of bad request.
    @Test func createTopicsErrors() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("exists")
        let cases: [(CreateTopicsRequest.CreatableTopic, ErrorCode)] = [
            (.init(name: "exists", numPartitions: 1, replicationFactor: 1), .topicAlreadyExists),
            (.init(name: "bad/name", numPartitions: 1, replicationFactor: 1), .invalidTopicException),
            (
                .init(name: String(repeating: "x", count: 250), numPartitions: 1, replicationFactor: 1),
                .invalidTopicException
            ),
            (.init(name: "zero", numPartitions: 0, replicationFactor: 1), .invalidPartitions),
            (.init(name: "rf3", numPartitions: 1, replicationFactor: 3), .invalidReplicationFactor),
            (
                .init(
                    name: "cfg",
                    numPartitions: 1,
                    replicationFactor: 1,
                    configs: [.init(name: "no.such", value: "1")]
                ), .invalidConfig
            ),
            (
                .init(
                    name: "cfg2",
                    numPartitions: 1,
                    replicationFactor: 1,
                    configs: [.init(name: "retention.ms", value: "soon")]
                ), .invalidConfig
            ),
            (
                .init(
                    name: "compact",
                    numPartitions: 1,
                    replicationFactor: 1,
                    configs: [.init(name: "cleanup.policy", value: "compact")]
                ), .invalidConfig
            ),
        ]
        for (topic, code) in cases {
            let result = try await create(test, topic)
            #expect(result.errorCode == code.rawValue, "\(topic.name.prefix(20)): \(result.errorMessage ?? "")")
            #expect(result.errorMessage != nil)
        }
        let duplicated = try await test.send(
            CreateTopicsRequest(topics: [
                .init(name: "twice", numPartitions: 1, replicationFactor: 1),
                .init(name: "twice", numPartitions: 1, replicationFactor: 1),
            ]),
            version: 7
        )
        #expect(duplicated.topics.allSatisfy { $0.errorCode == ErrorCode.invalidRequest.rawValue })
    }

    /// validate-only checks without creating; defaults apply for -1; v5+ reports configs and v7 the topic id.
    @Test func createTopicsValidateOnlyAndDefaults() async throws {
        let test = try await TestBroker.start { $0.defaultPartitions = 2 }
        let dry = try await create(
            test,
            .init(name: "dry", numPartitions: -1, replicationFactor: -1),
            validateOnly: true
        )
        #expect(dry.errorCode == 0)
        #expect(dry.numPartitions == 2)
        let meta = try await test.send(
            MetadataRequest(topics: [.init(name: "dry")], allowAutoTopicCreation: false),
            version: 9
        )
        #expect(meta.topics[0].errorCode == ErrorCode.unknownTopicOrPartition.rawValue)
        let real = try await create(
            test,
            .init(
                name: "real",
                numPartitions: 4,
                replicationFactor: 1,
                configs: [.init(name: "retention.ms", value: "1000")]
            )
        )
        #expect(real.errorCode == 0)
        #expect(real.topicId != .zero)
        #expect(real.configs?.first { $0.name == "retention.ms" }?.value == "1000")
        #expect(real.configs?.first { $0.name == "retention.ms" }?.configSource == 1)
        #expect(real.configs?.first { $0.name == "segment.bytes" }?.configSource == 5)
    }

    /// DeleteTopics deletes by name (v0–5) and by id (v6), and reports unknown topics.
    @Test func deleteTopics() async throws {
        let test = try await TestBroker.start { $0.autoCreateTopics = false }
        try await test.createTopic("gone", partitions: 2)
        _ = try await test.produce("gone", batch: makeBatch(count: 3))
        let byName = try await test.send(
            DeleteTopicsRequest(topicNames: ["gone", "never"], timeoutMs: 1000),
            version: 5
        )
        #expect(byName.responses.map(\.errorCode) == [0, ErrorCode.unknownTopicOrPartition.rawValue])
        #expect(
            try await test.produce("gone", batch: makeBatch(count: 1)).errorCode
                == ErrorCode.unknownTopicOrPartition.rawValue
        )
        // Recreated with the same name, the topic starts empty.
        try await test.createTopic("gone")
        #expect(try await test.listOffset("gone", timestamp: -1).offset == 0)
        let id = try await test.send(MetadataRequest(topics: [.init(name: "gone")]), version: 12).topics[0].topicId
        let byId = try await test.send(
            DeleteTopicsRequest(
                topics: [.init(name: nil, topicId: id), .init(name: nil, topicId: .random())],
                timeoutMs: 1000
            ),
            version: 6
        )
        #expect(byId.responses.map(\.errorCode) == [0, ErrorCode.unknownTopicId.rawValue])
        #expect(byId.responses[0].name == "gone")
        #expect(try await test.engine.listLogs().filter { $0.hasPrefix("gone") }.isEmpty)
    }

    /// DescribeConfigs reports topic configs with their sources, broker configs, and errors.
    @Test(arguments: [Int16(0), 1, 2, 3, 4])
    func describeConfigs(version: Int16) async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("described", configs: ["retention.ms": "12345"])
        let response = try await test.send(
            DescribeConfigsRequest(
                resources: [
                    .init(resourceType: 2, resourceName: "described", configurationKeys: nil),
                    .init(resourceType: 2, resourceName: "missing", configurationKeys: nil),
                    .init(resourceType: 4, resourceName: "1", configurationKeys: ["message.max.bytes"]),
                ],
                includeSynonyms: true,
                includeDocumentation: true
            ),
            version: version
        )
        let topic = response.results[0]
        #expect(topic.errorCode == 0)
        let retention = try #require(topic.configs.first { $0.name == "retention.ms" })
        #expect(retention.value == "12345")
        if version == 0 { #expect(retention.isDefault == false) } else { #expect(retention.configSource == 1) }
        if version >= 1 { #expect(retention.synonyms.count == 2) }
        if version >= 3 { #expect(retention.configType == 5) }
        #expect(response.results[1].errorCode == ErrorCode.unknownTopicOrPartition.rawValue)
        #expect(response.results[2].configs.map(\.name) == ["message.max.bytes"])
        #expect(response.results[2].configs.first?.value == "1048588")
    }
}

@Suite("Metadata log replay")
struct ReplayTests {
    /// A broker restarted over the same storage instance finds its topics, ids, configs and data.
    @Test func topicsAndDataSurviveABrokerRestart() async throws {
        let first = try await TestBroker.start()
        try await first.createTopic("kept", partitions: 2, configs: ["retention.ms": "999"])
        try await first.createTopic("dropped")
        _ = try await first.produce("kept", partition: 1, batch: makeBatch(count: 5))
        let id = try await first.send(MetadataRequest(topics: [.init(name: "kept")]), version: 12).topics[0].topicId
        _ = try await first.send(DeleteTopicsRequest(topicNames: ["dropped"], timeoutMs: 1000), version: 5)
        let producerId = try await first.send(
            InitProducerIdRequest(transactionalId: nil, transactionTimeoutMs: 1),
            version: 0
        ).producerId
        await first.broker.shutdown()

        let second = try await TestBroker.start(engine: first.engine)
        let meta = try await second.send(MetadataRequest(topics: nil), version: 12)
        #expect(meta.topics.map(\.name) == ["kept"])
        #expect(meta.topics[0].topicId == id)
        #expect(meta.topics[0].partitions.count == 2)
        #expect(try await second.listOffset("kept", partition: 1, timestamp: -1).offset == 5)
        #expect(try await second.consumeAll("kept", partition: 1).count == 5)
        let configs = try await second.send(
            DescribeConfigsRequest(resources: [
                .init(resourceType: 2, resourceName: "kept", configurationKeys: ["retention.ms"])
            ]),
            version: 4
        )
        #expect(configs.results[0].configs.first?.value == "999")
        let nextProducerId = try await second.send(
            InitProducerIdRequest(transactionalId: nil, transactionTimeoutMs: 1),
            version: 0
        ).producerId
        #expect(nextProducerId > producerId)
    }

    /// Metadata records encode and decode losslessly.
    @Test func metadataRecordsRoundTrip() throws {
        let records: [MetadataRecord] = [
            .clusterId("abc"),
            .topicCreated(name: "t", id: .random(), partitionCount: 3, configs: ["a": "1", "b": ""]),
            .topicDeleted(name: "t", id: .random()),
            .producerIdBlock(end: 5000),
            .topicConfigsChanged(name: "t", id: .random(), configs: ["retention.ms": "5"]),
            .brokerConfigsChanged(brokerId: 3, configs: ["log.retention.ms": "1", "message.max.bytes": "9"]),
            .brokerConfigsChanged(brokerId: nil, configs: [:]),
            .partitionsAdded(name: "t", id: .random(), partitionCount: 7),
        ]
        var all = ByteBuffer()
        for record in records {
            var encoded = record.encode()
            all.writeBuffer(&encoded)
        }
        #expect(try MetadataRecord.decodeAll(all) == records)
        var truncated = all
        truncated.moveWriterIndex(to: truncated.writerIndex - 1)
        #expect(throws: MetadataRecord.DecodeError.self) { try MetadataRecord.decodeAll(truncated) }
    }
}
