/// Where one broker setting's value came from, as `fjord` resolved it at startup.
public enum BrokerConfigOrigin: Sendable, Hashable, CustomStringConvertible {
    case defaultValue
    case configFile(path: String, line: Int)
    case environment(variable: String)
    case commandLine(flag: String)

    /// DescribeConfigs' `ConfigSource`: Kafka reports every value set at startup — in
    /// server.properties or overridden on its command line — as STATIC_BROKER_CONFIG.
    var configSource: ConfigSource {
        if case .defaultValue = self { return .defaultConfig }
        return .staticBrokerConfig
    }

    public var description: String {
        switch self {
        case .defaultValue: "default"
        case .configFile(let path, let line): "\(path):\(line)"
        case .environment(let variable): "environment \(variable)"
        case .commandLine(let flag): "command line \(flag)"
        }
    }
}

/// One broker setting under its Kafka name, with its effective value and where it came from: the
/// model DescribeConfigs serves for the BROKER resource (`BrokerConfiguration.effectiveConfigs`).
public struct BrokerConfigEntry: Sendable, Hashable {
    public var name: String
    /// nil for a sensitive value (Kafka never returns those) or a setting without one.
    public var value: String?
    public var origin: BrokerConfigOrigin
    public var type: ConfigType
    public var isSensitive: Bool
    public var documentation: String

    public init(
        name: String,
        value: String?,
        origin: BrokerConfigOrigin,
        type: ConfigType,
        isSensitive: Bool = false,
        documentation: String
    ) {
        self.name = name
        self.value = isSensitive ? nil : value
        self.origin = origin
        self.type = type
        self.isSensitive = isSensitive
        self.documentation = documentation
    }
}
