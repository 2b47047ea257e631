/// Kafka's config types as DescribeConfigs v3+ reports them (`ConfigType` in
/// DescribeConfigsResponse.json).
public enum ConfigType: Int8, Sendable {
    case unknown = 0
    case boolean = 1
    case string = 2
    case int = 3
    case short = 4
    case long = 5
    case double = 6
    case list = 7
}

/// Where a config value comes from (`ConfigSource` in DescribeConfigsResponse.json). A value is
/// looked up from the top of this list down: a topic's own config, the broker's dynamic config,
/// the cluster-wide dynamic default, the broker's static config (command line), Kafka's default.
enum ConfigSource: Int8, Sendable {
    case unknown = 0
    case dynamicTopicConfig = 1
    case dynamicBrokerConfig = 2
    case dynamicDefaultBrokerConfig = 3
    case staticBrokerConfig = 4
    case defaultConfig = 5
}

/// Kafka's `ConfigResource.Type` codes.
enum ConfigResourceType: Int8, Sendable {
    case topic = 2
    case broker = 4
    case brokerLogger = 8
}

/// Value checks shared by topic and broker configs: each returns an error message for an
/// unacceptable value, or nil (Kafka's `ConfigDef` validators).
enum ConfigValidation {
    static func long(min: Int64, max: Int64 = .max) -> @Sendable (String) -> String? {
        { value in
            guard let number = Int64(value) else { return "\(value) is not a valid long" }
            if number < min { return "value \(value) must be at least \(min)" }
            return number > max ? "value \(value) must be at most \(max)" : nil
        }
    }

    static func int(min: Int32, max: Int32 = .max) -> @Sendable (String) -> String? {
        { value in
            guard let number = Int32(value) else { return "\(value) is not a valid int" }
            if number < min { return "value \(value) must be at least \(min)" }
            return number > max ? "value \(value) must be at most \(max)" : nil
        }
    }

    static let boolean: @Sendable (String) -> String? = { value in
        ["true", "false"].contains(value.lowercased()) ? nil : "\(value) is not a valid boolean"
    }

    static func oneOf(_ allowed: [String], unsupported: [String: String] = [:]) -> @Sendable (String) -> String? {
        { value in
            if let reason = unsupported[value] { return reason }
            return allowed.contains(value) ? nil : "\(value) is not one of \(allowed.joined(separator: ", "))"
        }
    }

    static let ratio: @Sendable (String) -> String? = { value in
        guard let ratio = Double(value), (0...1).contains(ratio) else { return "\(value) is not in [0, 1]" }
        return nil
    }

    /// `compression.gzip.level`: zlib's levels, or -1 for its default (KIP-390).
    static let gzipLevel: @Sendable (String) -> String? = { value in
        guard let level = Int32(value), level == -1 || (1...9).contains(level) else {
            return "\(value) is not -1 or in [1, 9]"
        }
        return nil
    }

    static let any: @Sendable (String) -> String? = { _ in nil }
}

/// `compression.type` of a topic or of the broker (Kafka's `BrokerCompressionType`).
enum TopicCompression: String, Sendable, CaseIterable {
    case producer, uncompressed, gzip, snappy, lz4, zstd

    static var names: [String] { allCases.map(\.rawValue) }
}
