import BrokerCore
import Testing

@testable import FjordConfiguration

@Suite("server.properties and the settings resolver")
struct SettingsResolverTests {
    private func file(_ text: String) throws -> PropertiesFile {
        try PropertiesFile.parse(text, path: "server.properties")
    }

    @Test func propertiesSyntaxFollowsJavasFormat() throws {
        let parsed = try file(
            "# comment\n! also a comment\nnum.partitions = 3\nlog.dirs: /var/lib/a\\\n  b\nkey\\ with\\ space=x\\ty\n"
        )
        #expect(parsed.entry("num.partitions") == PropertiesEntry(key: "num.partitions", value: "3", line: 3))
        #expect(parsed.entry("log.dirs")?.value == "/var/lib/ab")
        #expect(parsed.entry("log.dirs")?.line == 4)
        #expect(parsed.entry("key with space")?.value == "x\ty")
    }

    @Test func flagsOverrideTheEnvironmentWhichOverridesTheFile() throws {
        let properties = try file("num.partitions=3\nmessage.max.bytes=500000\nlog.retention.ms=1000\n")
        let settings = try SettingsResolver.resolve(
            SettingsInput(
                file: properties,
                environment: ["FJORD_NUM_PARTITIONS": "4", "FJORD_MESSAGE_MAX_BYTES": "600000"],
                flags: [(flag: "--default-partitions", value: "5")]
            )
        )
        #expect(settings.broker.defaultPartitions == 5)
        #expect(settings.broker.messageMaxBytes == 600_000)
        #expect(settings.broker.retentionMs == 1000)
        let origins = Dictionary(uniqueKeysWithValues: settings.effectiveConfigs.map { ($0.name, $0.origin) })
        #expect(origins["num.partitions"] == .commandLine(flag: "--default-partitions"))
        #expect(origins["message.max.bytes"] == .environment(variable: "FJORD_MESSAGE_MAX_BYTES"))
        #expect(origins["log.retention.ms"] == .configFile(path: "server.properties", line: 3))
        #expect(origins["auto.create.topics.enable"] == .defaultValue)
    }

    @Test func unknownKeysAndBadValuesAreReportedByLine() throws {
        let properties = try file("num.partitions=3\nnum.partitons=4\nmessage.max.bytes=lots\n")
        #expect {
            _ = try SettingsResolver.resolve(SettingsInput(file: properties))
        } throws: { error in
            guard let problems = (error as? ConfigurationError)?.problems else { return false }
            return problems.count == 2
                && problems.contains { $0.contains("num.partitons") && $0.contains("line 2") }
                && problems.contains { $0.contains("message.max.bytes") && $0.contains("line 3") }
        }
    }

    @Test func theOperatorsBrokerSettingsBecomeTheStaticLayer() throws {
        let settings = try SettingsResolver.resolve(SettingsInput(file: try file("num.partitions=7\n")))
        let configuration = try settings.brokerConfiguration()
        #expect(configuration.defaultPartitions == 7)
        #expect(configuration.staticConfigNames.contains("num.partitions"))
        #expect(!configuration.staticConfigNames.contains("message.max.bytes"))
    }
}
