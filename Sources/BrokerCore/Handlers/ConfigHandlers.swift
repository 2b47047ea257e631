import KafkaMessages

/// DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics and for the broker's
/// dynamic configs (KIP-226): per broker (resource name = this broker's id) and cluster-wide
/// defaults (resource name ""). Changes are durable in the metadata log before they are answered
/// and take effect at once; Kafka's error codes and messages (ConfigAdminManager,
/// ControllerConfigurationValidator).
extension Broker {
    // MARK: DescribeConfigs

    struct DescribedConfig {
        var name: String
        var value: String?
        var readOnly: Bool
        var source: ConfigSource
        var configType: ConfigType
        var documentation: String?
        var synonyms: [DescribeConfigsResponse.DescribeConfigsSynonym]
    }

    struct DescribeOptions {
        var keys: [String]?
        var includeSynonyms: Bool
        var includeDocumentation: Bool

        func wants(_ name: String) -> Bool { keys.map { $0.contains(name) } ?? true }
    }

    /// A topic's configs: its own where set, else its broker synonym's effective value, with the
    /// synonyms Kafka lists (the topic's, then the broker's layers).
    func describeTopicConfigs(
        _ configs: [String: String],
        _ view: BrokerConfigView,
        _ options: DescribeOptions
    )
        -> [DescribedConfig]
    {
        TopicConfigs.definitions.compactMap { definition in
            guard options.wants(definition.name) else { return nil }
            let explicit = configs[definition.name]
            let brokerLayers = view.layers(definition.brokerSynonym)
            var synonyms: [DescribeConfigsResponse.DescribeConfigsSynonym] = []
            if options.includeSynonyms {
                if let explicit {
                    synonyms.append(
                        .init(name: definition.name, value: explicit, source: ConfigSource.dynamicTopicConfig.rawValue)
                    )
                }
                synonyms += brokerLayers.map {
                    .init(name: definition.brokerSynonym, value: $0.value, source: $0.source.rawValue)
                }
            }
            return DescribedConfig(
                name: definition.name,
                value: explicit ?? view.value(definition.brokerSynonym),
                readOnly: false,
                source: explicit == nil ? (brokerLayers.first?.source ?? .defaultConfig) : .dynamicTopicConfig,
                configType: definition.type,
                documentation: options.includeDocumentation ? definition.documentation : nil,
                synonyms: synonyms
            )
        }
    }

    /// This broker's configs: every known key with its effective value and where it comes from.
    func describeBrokerConfigs(_ view: BrokerConfigView, _ options: DescribeOptions) -> [DescribedConfig] {
        BrokerConfigs.definitions.compactMap { definition in
            guard options.wants(definition.name) else { return nil }
            let layers = view.layers(definition.name)
            return DescribedConfig(
                name: definition.name,
                value: view.value(definition.name),
                readOnly: !definition.isDynamic,
                source: layers.first?.source ?? .defaultConfig,
                configType: definition.type,
                documentation: options.includeDocumentation ? definition.documentation : nil,
                synonyms: options.includeSynonyms
                    ? layers.map { .init(name: definition.name, value: $0.value, source: $0.source.rawValue) } : []
            )
        }
    }

    /// The cluster-wide defaults (resource name ""): only the dynamic defaults that are set, as Kafka
    /// answers for the default broker resource.
    func describeBrokerDefaults(_ view: BrokerConfigView, _ options: DescribeOptions) -> [DescribedConfig] {
        view.dynamic.clusterDefault.keys.sorted().compactMap { name in
            guard options.wants(name), let definition = BrokerConfigs.byName[name] else { return nil }
            let value = view.dynamic.clusterDefault[name]
            return DescribedConfig(
                name: name,
                value: value,
                readOnly: false,
                source: .dynamicDefaultBrokerConfig,
                configType: definition.type,
                documentation: options.includeDocumentation ? definition.documentation : nil,
                synonyms: options.includeSynonyms
                    ? [.init(name: name, value: value, source: ConfigSource.dynamicDefaultBrokerConfig.rawValue)] : []
            )
        }
    }

    func handleDescribeConfigs(_ request: DescribeConfigsRequest, _ context: Request) -> DescribeConfigsResponse {
        var response = DescribeConfigsResponse(throttleTimeMs: 0, results: [])
        let view = configs.current
        for resource in request.resources {
            var result = DescribeConfigsResponse.DescribeConfigsResult(
                errorCode: ErrorCode.none.rawValue,
                errorMessage: nil,
                resourceType: resource.resourceType,
                resourceName: resource.resourceName,
                configs: []
            )
            defer { response.results.append(result) }
            let options = DescribeOptions(
                keys: resource.configurationKeys,
                includeSynonyms: request.includeSynonyms,
                includeDocumentation: request.includeDocumentation
            )
            let described: [DescribedConfig]
            switch ConfigResourceType(rawValue: resource.resourceType) {
            case .topic:
                guard let topic = registry.topic(named: resource.resourceName) else {
                    result.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
                    result.errorMessage = "Topic \(resource.resourceName) does not exist."
                    continue
                }
                described = describeTopicConfigs(topic.configs, view, options)
            case .broker:
                if resource.resourceName.isEmpty {
                    described = describeBrokerDefaults(view, options)
                } else if resource.resourceName == String(configuration.nodeId) {
                    described = describeBrokerConfigs(view, options)
                } else {
                    result.errorCode = ErrorCode.invalidRequest.rawValue
                    result.errorMessage =
                        "Unexpected broker id, expected \(configuration.nodeId) or empty string, but received \(resource.resourceName)"
                    continue
                }
            case .brokerLogger, nil:
                result.errorCode = ErrorCode.invalidRequest.rawValue
                result.errorMessage = "Fjord does not describe resources of type \(resource.resourceType)"
                continue
            }
            result.configs = described.map {
                .init(
                    name: $0.name,
                    value: $0.value,
                    readOnly: $0.readOnly,
                    isDefault: $0.source == .defaultConfig,
                    configSource: $0.source.rawValue,
                    isSensitive: false,
                    synonyms: $0.synonyms,
                    configType: $0.configType.rawValue,
                    documentation: $0.documentation
                )
            }
        }
        return response
    }

    // MARK: AlterConfigs and IncrementalAlterConfigs

    /// What one resource of an AlterConfigs request changes.
    enum ConfigTarget {
        case topic(Topic)
        /// This broker's dynamic configs (`perBroker`) or the cluster-wide defaults.
        case broker(perBroker: Bool)
    }

    struct AdminFailure: Error {
        var code: ErrorCode
        var message: String
    }

    /// Resolves a resource to what it changes, with its explicit configs now.
    func configTarget(
        type: Int8,
        name: String,
        view: BrokerConfigView,
        legacy: Bool
    ) throws(AdminFailure)
        -> (ConfigTarget, [String: String])
    {
        switch ConfigResourceType(rawValue: type) {
        case .topic:
            if let problem = TopicName.problem(with: name) {
                throw AdminFailure(code: .invalidTopicException, message: problem)
            }
            guard let topic = registry.topic(named: name) else {
                throw AdminFailure(code: .unknownTopicOrPartition, message: "The topic '\(name)' does not exist.")
            }
            return (.topic(topic), topic.configs)
        case .broker:
            if name.isEmpty { return (.broker(perBroker: false), view.dynamic.clusterDefault) }
            guard let id = Int32(name) else {
                throw AdminFailure(code: .invalidRequest, message: "Node id must be an integer, but it is: \(name)")
            }
            guard id == configuration.nodeId else {
                throw AdminFailure(
                    code: .invalidRequest,
                    message: "Unexpected broker id, expected \(configuration.nodeId), but received \(name)"
                )
            }
            return (.broker(perBroker: true), view.dynamic.perBroker)
        case .brokerLogger where !legacy:
            throw AdminFailure(code: .invalidRequest, message: "Fjord does not change broker logger levels")
        case .brokerLogger, nil:
            throw AdminFailure(code: .invalidRequest, message: "Unknown resource type \(type)")
        }
    }

    /// Checks a target's complete new configs: Kafka's INVALID_CONFIG for topics, INVALID_REQUEST
    /// for the broker (ConfigAdminManager's preprocessing). Only changed broker keys are checked, so
    /// deleting a key is always allowed.
    func validate(_ configs: [String: String], for target: ConfigTarget, old: [String: String]) throws(AdminFailure) {
        switch target {
        case .topic:
            if let problem = TopicConfigs.validate(configs) {
                throw AdminFailure(code: .invalidConfig, message: problem)
            }
        case .broker:
            for name in configs.keys.sorted() where configs[name] != old[name] {
                if let problem = BrokerConfigs.problem(setting: name, to: configs[name] ?? "") {
                    throw AdminFailure(code: .invalidRequest, message: problem)
                }
            }
        }
    }

    /// Makes a change durable and effective (unless only validating).
    func apply(_ configs: [String: String], to target: ConfigTarget) async throws(AdminFailure) {
        do {
            switch target {
            case .topic(let topic): try await metadata.setTopicConfigs(topic, to: configs)
            case .broker(let perBroker): try await metadata.setBrokerConfigs(perBroker: perBroker, to: configs)
            }
        } catch MetadataManager.ChangeError.topicDeleted {
            throw AdminFailure(code: .unknownTopicOrPartition, message: "The topic was deleted meanwhile.")
        } catch {
            logger.error("changing configs failed", metadata: ["error": "\(error)"])
            throw AdminFailure(code: .kafkaStorageError, message: "Storing the configs failed: \(error)")
        }
    }

    /// Kafka's preprocessing: each resource at most once, no key twice, no null value to set.
    static func duplicateResources(_ keys: [(Int8, String)]) -> Set<Int> {
        var seen: [String: Int] = [:]
        var duplicates = Set<Int>()
        for (index, key) in keys.enumerated() {
            let id = "\(key.0)/\(key.1)"
            if let first = seen[id] {
                duplicates.insert(first)
                duplicates.insert(index)
            } else {
                seen[id] = index
            }
        }
        return duplicates
    }

    func handleAlterConfigs(_ request: AlterConfigsRequest, _ context: Request) async -> AlterConfigsResponse {
        var response = AlterConfigsResponse(throttleTimeMs: 0, responses: [])
        let duplicates = Self.duplicateResources(request.resources.map { ($0.resourceType, $0.resourceName) })
        for (index, resource) in request.resources.enumerated() {
            var result = AlterConfigsResponse.AlterConfigsResourceResponse(
                errorCode: ErrorCode.none.rawValue,
                errorMessage: nil,
                resourceType: resource.resourceType,
                resourceName: resource.resourceName
            )
            do throws(AdminFailure) {
                if duplicates.contains(index) {
                    throw AdminFailure(code: .invalidRequest, message: "Each resource must appear at most once.")
                }
                if Set(resource.configs.map(\.name)).count != resource.configs.count {
                    throw AdminFailure(code: .invalidRequest, message: "Error due to duplicate config keys")
                }
                let nulls = resource.configs.filter { $0.value == nil }.map(\.name)
                if !nulls.isEmpty {
                    throw AdminFailure(
                        code: .invalidRequest,
                        message: "Null value not supported for : \(nulls.joined(separator: ", "))"
                    )
                }
                let (target, old) = try configTarget(
                    type: resource.resourceType,
                    name: resource.resourceName,
                    view: configs.current,
                    legacy: true
                )
                // The legacy request replaces the resource's configs with exactly the ones given.
                var new: [String: String] = [:]
                for config in resource.configs { new[config.name] = config.value }
                try validate(new, for: target, old: old)
                if !request.validateOnly { try await apply(new, to: target) }
            } catch {
                result.errorCode = error.code.rawValue
                result.errorMessage = error.message
            }
            response.responses.append(result)
        }
        return response
    }

    /// IncrementalAlterConfigs operations (`AlterConfigOp.OpType`).
    enum ConfigOperation: Int8 {
        case set = 0
        case delete = 1
        case append = 2
        case subtract = 3
    }

    func handleIncrementalAlterConfigs(
        _ request: IncrementalAlterConfigsRequest,
        _ context: Request
    ) async
        -> IncrementalAlterConfigsResponse
    {
        var response = IncrementalAlterConfigsResponse(throttleTimeMs: 0, responses: [])
        let duplicates = Self.duplicateResources(request.resources.map { ($0.resourceType, $0.resourceName) })
        for (index, resource) in request.resources.enumerated() {
            var result = IncrementalAlterConfigsResponse.AlterConfigsResourceResponse(
                errorCode: ErrorCode.none.rawValue,
                errorMessage: nil,
                resourceType: resource.resourceType,
                resourceName: resource.resourceName
            )
            do throws(AdminFailure) {
                if duplicates.contains(index) {
                    throw AdminFailure(code: .invalidRequest, message: "Each resource must appear at most once.")
                }
                if Set(resource.configs.map(\.name)).count != resource.configs.count {
                    throw AdminFailure(code: .invalidRequest, message: "Error due to duplicate config keys")
                }
                let nulls = resource.configs.filter {
                    $0.configOperation != ConfigOperation.delete.rawValue && $0.value == nil
                }
                if !nulls.isEmpty {
                    throw AdminFailure(
                        code: .invalidRequest,
                        message: "Null value not supported for : \(nulls.map(\.name).joined(separator: ", "))"
                    )
                }
                let view = configs.current
                let (target, old) = try configTarget(
                    type: resource.resourceType,
                    name: resource.resourceName,
                    view: view,
                    legacy: false
                )
                let new = try Self.applying(resource.configs, to: old, target: target, view: view)
                try validate(new, for: target, old: old)
                if !request.validateOnly { try await apply(new, to: target) }
            } catch {
                result.errorCode = error.code.rawValue
                result.errorMessage = error.message
            }
            response.responses.append(result)
        }
        return response
    }

    /// The configs after SET, DELETE, APPEND and SUBTRACT (the last two only on LIST configs, whose
    /// current value — or default — is a comma-separated list).
    static func applying(
        _ operations: [IncrementalAlterConfigsRequest.AlterableConfig],
        to old: [String: String],
        target: ConfigTarget,
        view: BrokerConfigView
    ) throws(AdminFailure) -> [String: String] {
        var new = old
        for operation in operations {
            guard let kind = ConfigOperation(rawValue: operation.configOperation) else {
                throw AdminFailure(
                    code: .invalidRequest,
                    message: "Unknown operations type \(operation.configOperation)"
                )
            }
            switch kind {
            case .set:
                new[operation.name] = operation.value
            case .delete:
                new.removeValue(forKey: operation.name)
            case .append, .subtract:
                let (type, current) = listConfig(operation.name, in: new, target: target, view: view)
                guard type == .list else {
                    throw AdminFailure(
                        code: .invalidConfig,
                        message:
                            "Can't \(kind == .append ? "APPEND" : "SUBTRACT") to key \(operation.name) because its type is not LIST."
                    )
                }
                var items = current.split(separator: ",").map(trimmed)
                let operands = (operation.value ?? "").split(separator: ",").map(trimmed)
                if kind == .append {
                    for item in operands where !items.contains(item) { items.append(item) }
                } else {
                    items.removeAll { operands.contains($0) }
                }
                new[operation.name] = items.filter { !$0.isEmpty }.joined(separator: ",")
            }
        }
        return new
    }

    private static func trimmed(_ item: Substring) -> String {
        String(item.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }

    /// The type and current value (explicit, else effective) of a config, for APPEND and SUBTRACT.
    private static func listConfig(
        _ name: String,
        in configs: [String: String],
        target: ConfigTarget,
        view: BrokerConfigView
    )
        -> (ConfigType?, String)
    {
        switch target {
        case .topic:
            let definition = TopicConfigs.byName[name]
            let current = configs[name] ?? definition.flatMap { view.value($0.brokerSynonym) } ?? ""
            return (definition?.type, current)
        case .broker:
            return (BrokerConfigs.byName[name]?.type, configs[name] ?? view.value(name) ?? "")
        }
    }
}
