import BrokerCore
import BrokerServer
import Configuration
import Synchronization

/// Where the settings come from, before they are resolved.
public struct SettingsInput: Sendable {
    /// A parsed server.properties (nil: none given).
    public var file: PropertiesFile?
    /// The process environment (FJORD_… variables are read from it).
    public var environment: [String: String]
    /// The flags given on the command line, by flag name ("--default-partitions"), in order.
    public var flags: [(flag: String, value: String)]
    /// `--backend-option key=value`, in order.
    public var backendOptionFlags: [String]

    public init(
        file: PropertiesFile? = nil,
        environment: [String: String] = [:],
        flags: [(flag: String, value: String)] = [],
        backendOptionFlags: [String] = []
    ) {
        self.file = file
        self.environment = environment
        self.flags = flags
        self.backendOptionFlags = backendOptionFlags
    }
}

/// Resolves the settings through swift-configuration: a `ConfigReader` over the command line (an
/// in-memory provider of the flags given), the environment (`FJORD_` + the key in upper case with
/// `_` for `.`: `FJORD_NUM_PARTITIONS`; `fjord.` keys without a second prefix: `FJORD_BACKEND`) and
/// the properties file, in that order of precedence; the reader's access events tell which
/// provider answered, which becomes each value's source.
///
/// Every problem is collected and reported together, each with its source: the file and line,
/// the environment variable, or the flag.
public enum SettingsResolver {
    /// The flags that map onto settings (`fjord` declares exactly these), sorted.
    public static var flags: [String] { SettingDefinitions.all.compactMap(\.flag).sorted() }

    /// The name of the environment variable for a key (`FJORD_LOG_RETENTION_MS`).
    public static func environmentVariable(for key: String) -> String {
        let components = key.split(separator: ".").map { $0.uppercased() }
        return (components.first == "FJORD" ? components : ["FJORD"] + components).joined(separator: "_")
    }

    public static func resolve(_ input: SettingsInput) throws(ConfigurationError) -> BrokerSettings {
        var problems: [String] = []
        let definitions = SettingDefinitions.all
        let keys = Set(definitions.map(\.key))
        let path = input.file?.path ?? "server.properties"

        // The file: known keys feed the reader; fjord.backend.* are backend options; the rest are errors.
        var fileValues: [AbsoluteConfigKey: ConfigValue] = [:]
        var fileOptions: [(BackendOption, Int)] = []
        for entry in input.file?.entries ?? [] {
            if keys.contains(entry.key) {
                fileValues[AbsoluteConfigKey(ConfigKey(entry.key))] = ConfigValue(.string(entry.value), isSecret: false)
            } else if entry.key.hasPrefix("fjord.backend.") {
                let option = String(entry.key.dropFirst("fjord.backend.".count))
                if option == "path" {
                    problems.append("\(path): '\(entry.key)' at line \(entry.line): the data directory is log.dirs")
                } else {
                    fileOptions.append((BackendOption(key: option, value: entry.value), entry.line))
                }
            } else if let reason = UnsupportedKafkaSettings.reason(entry.key) {
                problems.append("\(path): '\(entry.key)' at line \(entry.line) is not supported by Fjord (\(reason))")
            } else {
                problems.append("\(path): unknown key '\(entry.key)' at line \(entry.line)")
            }
        }

        // The command line.
        var flagValues: [AbsoluteConfigKey: ConfigValue] = [:]
        var flagOfKey: [String: String] = [:]
        for (flag, value) in input.flags {
            guard let definition = definitions.first(where: { $0.flag == flag }) else {
                problems.append("\(flag): not a setting")
                continue
            }
            flagValues[AbsoluteConfigKey(ConfigKey(definition.key))] =
                ConfigValue(.string(definition.fromFlag(value)), isSecret: false)
            flagOfKey[definition.key] = flag
        }

        let recorder = OriginRecorder()
        let reader = ConfigReader(
            providers: [
                InMemoryProvider(name: "command line", values: flagValues),
                KeyMappingProvider(upstream: EnvironmentVariablesProvider(environmentVariables: input.environment)) {
                    key in key.components.first == "fjord" ? key : key.prepending(ConfigKey(["fjord"]))
                },
                InMemoryProvider(name: path, values: fileValues),
            ],
            accessReporter: recorder
        )

        var settings = BrokerSettings()
        var explicit: [String: (value: String, origin: BrokerConfigOrigin)] = [:]
        for definition in definitions {
            guard let value = reader.string(forKey: ConfigKey(definition.key)) else { continue }
            let origin: BrokerConfigOrigin =
                switch recorder.lastAnswer() {
                case (0, _): .commandLine(flag: flagOfKey[definition.key] ?? definition.flag ?? definition.key)
                case (1, let variable): .environment(variable: variable ?? environmentVariable(for: definition.key))
                default: .configFile(path: path, line: input.file?.entry(definition.key)?.line ?? 0)
                }
            do {
                try definition.apply(value, &settings)
                explicit[definition.key] = (value.trimmingSpaces, origin)
            } catch {
                problems.append(describe(origin, key: definition.key, value: value, reason: error.reason))
            }
        }

        let options = resolveBackendOptions(fileOptions, input.backendOptionFlags, path: path, &problems)
        settings.backendOptions = options.map(\.option)
        problems += crossChecks(settings, explicit)
        guard problems.isEmpty else { throw ConfigurationError(problems: problems) }
        settings.effectiveConfigs = effectiveConfigs(definitions, settings, explicit, options)
        return settings
    }

    /// "server.properties: invalid value 'abc' for num.partitions at line 7: not an integer".
    private static func describe(_ origin: BrokerConfigOrigin, key: String, value: String, reason: String) -> String {
        switch origin {
        case .configFile(let path, let line): "\(path): invalid value '\(value)' for \(key) at line \(line): \(reason)"
        case .environment(let variable):
            "environment variable \(variable): invalid value '\(value)' for \(key): \(reason)"
        case .commandLine(let flag): "\(flag): invalid value '\(value)': \(reason)"
        case .defaultValue: "\(key): invalid default '\(value)': \(reason)"
        }
    }

    /// fjord.backend.* from the file, then --backend-option, a later value of a key replacing an earlier.
    private static func resolveBackendOptions(
        _ file: [(BackendOption, Int)],
        _ flags: [String],
        path: String,
        _ problems: inout [String]
    ) -> [(option: BackendOption, origin: BrokerConfigOrigin)] {
        var options: [(option: BackendOption, origin: BrokerConfigOrigin)] = file.map {
            ($0.0, .configFile(path: path, line: $0.1))
        }
        for text in flags {
            let parts = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty else {
                problems.append("--backend-option must look like key=value, got '\(text)'")
                continue
            }
            let option = BackendOption(key: String(parts[0]), value: String(parts[1]))
            options.removeAll { $0.option.key == option.key }
            options.append((option, .commandLine(flag: "--backend-option")))
        }
        return options
    }

    /// Checks between settings, once every value is in.
    private static func crossChecks(
        _ settings: BrokerSettings,
        _ explicit: [String: (value: String, origin: BrokerConfigOrigin)]
    ) -> [String] {
        var problems: [String] = []
        if let nodeId = explicit["node.id"], let brokerId = explicit["broker.id"], nodeId.value != brokerId.value {
            problems.append(
                "node.id (\(nodeId.value), \(nodeId.origin)) and broker.id (\(brokerId.value), \(brokerId.origin)) differ"
            )
        }
        if settings.backendName != nil && settings.backendLibrary != nil {
            problems.append("use either fjord.backend (--backend) or fjord.backend.library (--backend-path), not both")
        }
        if settings.advertisedListener == nil && settings.listener.address.port == 0 {
            problems.append(
                "a listener on port 0 needs advertised.listeners (--advertised-listener): clients must be told the port before it is bound"
            )
        }
        if settings.broker.groupMinSessionTimeoutMs > settings.broker.groupMaxSessionTimeoutMs {
            problems.append(
                "group.min.session.timeout.ms (\(settings.broker.groupMinSessionTimeoutMs)) is above group.max.session.timeout.ms (\(settings.broker.groupMaxSessionTimeoutMs))"
            )
        }
        do {
            try settings.serverConfiguration.validate()
        } catch {
            problems.append("\(error)")
        }
        return problems
    }

    private static func effectiveConfigs(
        _ definitions: [SettingDefinition],
        _ settings: BrokerSettings,
        _ explicit: [String: (value: String, origin: BrokerConfigOrigin)],
        _ options: [(option: BackendOption, origin: BrokerConfigOrigin)]
    ) -> [BrokerConfigEntry] {
        var entries: [BrokerConfigEntry] = definitions.compactMap { definition in
            let value: String?
            let origin: BrokerConfigOrigin
            if let set = explicit[definition.key] {
                (value, origin) = (set.value, set.origin)
            } else {
                guard let shown = definition.shown(settings) else { return nil }
                (value, origin) = (shown, .defaultValue)
            }
            return BrokerConfigEntry(
                name: definition.key,
                value: value,
                origin: origin,
                type: definition.type,
                documentation: definition.documentation
            )
        }
        for (option, origin) in options {
            entries.append(
                BrokerConfigEntry(
                    name: "fjord.backend.\(option.key)",
                    value: option.value,
                    origin: origin,
                    type: .string,
                    documentation: "Passed to the storage backend."
                )
            )
        }
        return entries.sorted { $0.name < $1.name }
    }
}

/// Remembers which provider answered the reader's last lookup (index into the provider list) and
/// the key it answered under (the environment variable's name, for the environment provider).
private final class OriginRecorder: AccessReporter, Sendable {
    private let last = Mutex<(index: Int, encodedKey: String?)>((-1, nil))

    func report(_ event: AccessEvent) {
        // MultiProvider asks the providers in order and stops at the first with a value.
        guard case .success(let lookup)? = event.providerResults.last?.result, lookup.value != nil else { return }
        last.withLock { $0 = (event.providerResults.count - 1, lookup.encodedKey) }
    }

    func lastAnswer() -> (Int, String?) { last.withLock { ($0.index, $0.encodedKey) } }
}
