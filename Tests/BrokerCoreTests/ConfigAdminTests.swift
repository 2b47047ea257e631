import NIOCore
import StorageHost
import Testing

@testable import BrokerCore
@testable import KafkaMessages

/// A DescribeConfigs entry of one resource.
func describedConfig(
    _ test: TestBroker,
    type: Int8,
    name: String,
    key: String,
    version: Int16 = 4
) async throws -> DescribeConfigsResponse.DescribeConfigsResourceResult? {
    let response = try await test.send(
        DescribeConfigsRequest(
            resources: [.init(resourceType: type, resourceName: name, configurationKeys: [key])],
            includeSynonyms: true,
            includeDocumentation: true
        ),
        version: version
    )
    #expect(response.results[0].errorCode == 0, "\(response.results[0].errorMessage ?? "")")
    return response.results[0].configs.first
}

func alterConfigs(
    _ test: TestBroker,
    type: Int8,
    name: String,
    _ configs: [String: String?],
    validateOnly: Bool = false,
    version: Int16 = 2
) async throws -> AlterConfigsResponse.AlterConfigsResourceResponse {
    let response = try await test.send(
        AlterConfigsRequest(
            resources: [
                .init(
                    resourceType: type,
                    resourceName: name,
                    configs: configs.sorted { $0.key < $1.key }.map { .init(name: $0.key, value: $0.value) }
                )
            ],
            validateOnly: validateOnly
        ),
        version: version
    )
    return response.responses[0]
}

func incrementalAlter(
    _ test: TestBroker,
    type: Int8,
    name: String,
    _ operations: [(String, Int8, String?)],
    version: Int16 = 1
) async throws -> IncrementalAlterConfigsResponse.AlterConfigsResourceResponse {
    let response = try await test.send(
        IncrementalAlterConfigsRequest(
            resources: [
                .init(
                    resourceType: type,
                    resourceName: name,
                    configs: operations.map { .init(name: $0.0, configOperation: $0.1, value: $0.2) }
                )
            ]
        ),
        version: version
    )
    return response.responses[0]
}

@Suite("AlterConfigs, IncrementalAlterConfigs and DescribeConfigs")
struct ConfigAdminTests {
    static let topic: Int8 = 2
    static let broker: Int8 = 4

    /// AlterConfigs (every version) replaces a topic's configs; DescribeConfigs reports them as
    /// TOPIC_CONFIG, and the settings apply at once (max.message.bytes is enforced).
    @Test(arguments: [Int16(0), 1, 2])
    func alterConfigsReplacesTopicConfigs(version: Int16) async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t", configs: ["retention.ms": "1000"])
        let result = try await alterConfigs(
            test,
            type: Self.topic,
            name: "t",
            ["max.message.bytes": "200"],
            version: version
        )
        #expect(result.errorCode == 0, "\(result.errorMessage ?? "")")
        let maxBytes = try #require(
            try await describedConfig(test, type: Self.topic, name: "t", key: "max.message.bytes")
        )
        #expect(maxBytes.value == "200")
        #expect(maxBytes.configSource == ConfigSource.dynamicTopicConfig.rawValue)
        // The legacy request replaces every config: retention.ms went back to the broker default.
        let retention = try #require(try await describedConfig(test, type: Self.topic, name: "t", key: "retention.ms"))
        #expect(retention.value == "604800000")
        #expect(retention.configSource == ConfigSource.defaultConfig.rawValue)
        #expect(
            try await test.produce("t", batch: makeBatch(count: 20)).errorCode == ErrorCode.messageTooLarge.rawValue
        )
    }

    /// IncrementalAlterConfigs sets and deletes single keys, appends to and subtracts from lists,
    /// and refuses APPEND on a non-list config.
    @Test func incrementalAlterConfigsChangesSingleKeys() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t", configs: ["retention.ms": "1000", "segment.ms": "5000"])
        var result = try await incrementalAlter(
            test,
            type: Self.topic,
            name: "t",
            [("retention.ms", 0, "2000"), ("segment.ms", 1, nil)]
        )
        #expect(result.errorCode == 0, "\(result.errorMessage ?? "")")
        #expect(try await describedConfig(test, type: Self.topic, name: "t", key: "retention.ms")?.value == "2000")
        #expect(try await describedConfig(test, type: Self.topic, name: "t", key: "segment.ms")?.configSource == 5)
        result = try await incrementalAlter(test, type: Self.topic, name: "t", [("retention.ms", 2, "1")])
        #expect(result.errorCode == ErrorCode.invalidConfig.rawValue)
        #expect(result.errorMessage == "Can't APPEND to key retention.ms because its type is not LIST.")
        // cleanup.policy is a list: appending "delete" (already there) keeps one "delete".
        result = try await incrementalAlter(test, type: Self.topic, name: "t", [("cleanup.policy", 2, "delete")])
        #expect(result.errorCode == 0)
        #expect(try await describedConfig(test, type: Self.topic, name: "t", key: "cleanup.policy")?.value == "delete")
        result = try await incrementalAlter(test, type: Self.topic, name: "t", [("cleanup.policy", 2, "compact")])
        #expect(result.errorCode == ErrorCode.invalidConfig.rawValue)
        result = try await incrementalAlter(test, type: Self.topic, name: "t", [("retention.ms", 9, "1")])
        #expect(result.errorCode == ErrorCode.invalidRequest.rawValue)
    }

    /// Bad requests get Kafka's codes: unknown topic, unknown config, invalid value, null value,
    /// duplicate keys, duplicate resources, validate-only changes nothing.
    @Test func alterConfigsErrors() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t")
        let cases: [(String, [String: String?], ErrorCode)] = [
            ("missing", ["retention.ms": "1"], .unknownTopicOrPartition),
            ("t", ["no.such.config": "1"], .invalidConfig),
            ("t", ["retention.ms": "soon"], .invalidConfig),
            ("t", ["retention.ms": nil], .invalidRequest),
            ("bad/name", ["retention.ms": "1"], .invalidTopicException),
        ]
        for (name, configs, code) in cases {
            let result = try await alterConfigs(test, type: Self.topic, name: name, configs)
            #expect(result.errorCode == code.rawValue, "\(name) \(configs): \(result.errorMessage ?? "")")
            #expect(result.errorMessage != nil)
        }
        let dry = try await alterConfigs(test, type: Self.topic, name: "t", ["retention.ms": "5"], validateOnly: true)
        #expect(dry.errorCode == 0)
        #expect(try await describedConfig(test, type: Self.topic, name: "t", key: "retention.ms")?.configSource == 5)
        let twice = try await test.send(
            AlterConfigsRequest(resources: [
                .init(resourceType: Self.topic, resourceName: "t", configs: []),
                .init(resourceType: Self.topic, resourceName: "t", configs: []),
            ]),
            version: 1
        )
        #expect(
            twice.responses.map(\.errorCode) == [ErrorCode.invalidRequest.rawValue, ErrorCode.invalidRequest.rawValue]
        )
        let duplicateKey = try await test.send(
            IncrementalAlterConfigsRequest(resources: [
                .init(
                    resourceType: Self.topic,
                    resourceName: "t",
                    configs: [
                        .init(name: "retention.ms", configOperation: 0, value: "1"),
                        .init(name: "retention.ms", configOperation: 1, value: nil),
                    ]
                )
            ]),
            version: 0
        )
        #expect(duplicateKey.responses[0].errorCode == ErrorCode.invalidRequest.rawValue)
        #expect(duplicateKey.responses[0].errorMessage == "Error due to duplicate config keys")
    }

    /// Broker configs: per broker (name = the node id) over cluster-wide defaults (name "") over
    /// static ones over defaults; each reported with its source and synonyms, and the effective
    /// value becomes the default of topics that do not set the config.
    @Test func dynamicBrokerConfigsLayerAndReachTopics() async throws {
        let test = try await TestBroker.start { try! $0.setStatic(["log.retention.ms": "5000"]) }
        try await test.createTopic("t")
        var retention = try #require(
            try await describedConfig(test, type: Self.broker, name: "1", key: "log.retention.ms")
        )
        #expect(retention.value == "5000")
        #expect(retention.configSource == ConfigSource.staticBrokerConfig.rawValue)
        #expect(retention.synonyms.map(\.source) == [4, 5])
        #expect(retention.readOnly == false)

        #expect(
            try await incrementalAlter(test, type: Self.broker, name: "", [("log.retention.ms", 0, "6000")]).errorCode
                == 0
        )
        #expect(
            try await incrementalAlter(test, type: Self.broker, name: "1", [("log.retention.ms", 0, "7000")]).errorCode
                == 0
        )
        retention = try #require(try await describedConfig(test, type: Self.broker, name: "1", key: "log.retention.ms"))
        #expect(retention.value == "7000")
        #expect(retention.synonyms.map(\.source) == [2, 3, 4, 5])
        #expect(retention.synonyms.map(\.value) == ["7000", "6000", "5000", "604800000"])
        let defaults = try await test.send(
            DescribeConfigsRequest(resources: [
                .init(resourceType: Self.broker, resourceName: "", configurationKeys: nil)
            ]),
            version: 4
        )
        #expect(defaults.results[0].configs.map(\.name) == ["log.retention.ms"])
        #expect(defaults.results[0].configs.first?.configSource == ConfigSource.dynamicDefaultBrokerConfig.rawValue)

        let topic = try #require(try await describedConfig(test, type: Self.topic, name: "t", key: "retention.ms"))
        #expect(topic.value == "7000")
        #expect(topic.configSource == ConfigSource.dynamicBrokerConfig.rawValue)
        #expect(
            topic.synonyms.map(\.name) == [
                "log.retention.ms", "log.retention.ms", "log.retention.ms", "log.retention.ms",
            ]
        )
        #expect(test.broker.registry.topic(named: "t")?.settings.retentionMs == 7000)

        // Deleting the per-broker value uncovers the cluster default.
        #expect(
            try await incrementalAlter(test, type: Self.broker, name: "1", [("log.retention.ms", 1, nil)]).errorCode
                == 0
        )
        #expect(test.broker.registry.topic(named: "t")?.settings.retentionMs == 6000)
    }

    /// A dynamic message.max.bytes is enforced at once for topics without max.message.bytes.
    @Test func dynamicMessageMaxBytesIsEnforced() async throws {
        let test = try await TestBroker.start()
        try await test.createTopic("t")
        #expect(try await test.produce("t", batch: makeBatch(count: 20)).errorCode == 0)
        #expect(try await alterConfigs(test, type: Self.broker, name: "1", ["message.max.bytes": "100"]).errorCode == 0)
        #expect(
            try await test.produce("t", batch: makeBatch(count: 20)).errorCode == ErrorCode.messageTooLarge.rawValue
        )
    }

    /// Broker resources refuse read-only and unknown keys, other broker ids, and non-numeric names.
    @Test func brokerConfigErrors() async throws {
        let test = try await TestBroker.start()
        let cases: [(String, [String: String?], String)] = [
            ("1", ["broker.id": "2"], "Cannot update these configs dynamically: Set(broker.id)"),
            ("1", ["no.such": "2"], "Unknown broker config name: no.such"),
            (
                "1", ["log.retention.ms": "x"],
                "Invalid value x for configuration log.retention.ms: x is not a valid long"
            ),
            ("2", ["log.retention.ms": "1"], "Unexpected broker id, expected 1, but received 2"),
            ("one", ["log.retention.ms": "1"], "Node id must be an integer, but it is: one"),
        ]
        for (name, configs, message) in cases {
            let result = try await alterConfigs(test, type: Self.broker, name: name, configs)
            #expect(result.errorCode == ErrorCode.invalidRequest.rawValue)
            #expect(result.errorMessage == message)
        }
        let logger = try await alterConfigs(test, type: 8, name: "1", ["root": "INFO"])
        #expect(logger.errorCode == ErrorCode.invalidRequest.rawValue)
        let describedOther = try await test.send(
            DescribeConfigsRequest(resources: [
                .init(resourceType: Self.broker, resourceName: "7", configurationKeys: nil)
            ]),
            version: 1
        )
        #expect(describedOther.results[0].errorCode == ErrorCode.invalidRequest.rawValue)
    }

    /// The BROKER resource lists Kafka's common keys with effective values, read-only flags and
    /// documentation (v3+).
    @Test func brokerResourceListsCommonKeys() async throws {
        let test = try await TestBroker.start { $0.nodeId = 3 }
        let response = try await test.send(
            DescribeConfigsRequest(
                resources: [.init(resourceType: Self.broker, resourceName: "3", configurationKeys: nil)],
                includeSynonyms: false,
                includeDocumentation: true
            ),
            version: 4
        )
        let configs = Dictionary(uniqueKeysWithValues: response.results[0].configs.map { ($0.name, $0) })
        for name in [
            "broker.id", "node.id", "log.retention.ms", "message.max.bytes", "num.partitions", "compression.type",
            "log.segment.bytes", "advertised.listeners", "log.dirs", "min.insync.replicas",
        ] {
            #expect(configs[name] != nil, "\(name) missing")
        }
        #expect(configs["broker.id"]?.value == "3")
        #expect(configs["broker.id"]?.readOnly == true)
        #expect(configs["log.retention.ms"]?.readOnly == false)
        #expect(configs["compression.type"]?.value == "producer")
        #expect(configs["message.max.bytes"]?.configType == ConfigType.int.rawValue)
        #expect(configs["message.max.bytes"]?.documentation?.isEmpty == false)
    }

    /// Topic and broker config changes are in the metadata log: a restarted broker has them.
    @Test func configChangesSurviveARestart() async throws {
        let first = try await TestBroker.start()
        try await first.createTopic("t")
        #expect(try await alterConfigs(first, type: Self.topic, name: "t", ["retention.ms": "1234"]).errorCode == 0)
        #expect(
            try await incrementalAlter(first, type: Self.broker, name: "1", [("log.retention.bytes", 0, "999")])
                .errorCode == 0
        )
        #expect(
            try await incrementalAlter(first, type: Self.broker, name: "", [("message.max.bytes", 0, "5000")]).errorCode
                == 0
        )
        await first.broker.shutdown()

        let second = try await TestBroker.start(engine: first.engine)
        #expect(try await describedConfig(second, type: Self.topic, name: "t", key: "retention.ms")?.value == "1234")
        let bytes = try #require(
            try await describedConfig(second, type: Self.broker, name: "1", key: "log.retention.bytes")
        )
        #expect(bytes.value == "999")
        #expect(bytes.configSource == ConfigSource.dynamicBrokerConfig.rawValue)
        let settings = try #require(second.broker.registry.topic(named: "t")?.settings)
        #expect(settings.retentionBytes == 999)
        #expect(settings.maxMessageBytes == 5000)
    }

    /// Static configs are set by Kafka name, validated, and unknown names are refused.
    @Test func staticConfigsAreValidated() throws {
        var configuration = BrokerConfiguration()
        try configuration.setStatic([
            "log.retention.ms": "10", "num.partitions": "4", "auto.create.topics.enable": "FALSE",
        ])
        #expect(configuration.retentionMs == 10)
        #expect(configuration.defaultPartitions == 4)
        #expect(configuration.autoCreateTopics == false)
        #expect(configuration.staticConfigNames == ["log.retention.ms", "num.partitions", "auto.create.topics.enable"])
        #expect(throws: BrokerConfigError.self) { try configuration.setStatic(["no.such": "1"]) }
        #expect(throws: BrokerConfigError.self) { try configuration.setStatic(["num.partitions": "0"]) }
        try configuration.setStatic(["advertised.listeners": "PLAINTEXT://example.com:19092"])
        #expect(configuration.advertisedHost == "example.com")
        #expect(configuration.advertisedPort == 19092)
    }
}
