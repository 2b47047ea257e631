import BrokerCore

/// What is wrong with a value, without saying where it came from (the resolver adds that).
struct ValueError: Error {
    var reason: String
}

/// One setting: its Kafka (or `fjord.`) key, the flag that overrides it, how a text value is
/// checked and stored, and how its default is shown.
struct SettingDefinition: Sendable {
    var key: String
    var flag: String?
    var type: ConfigType
    var documentation: String
    /// Parses, checks and stores a value.
    var apply: @Sendable (String, inout BrokerSettings) throws(ValueError) -> Void
    /// The value shown when no source set the setting, from the resolved settings (nil: the
    /// setting is not listed then, as `log.retention.hours` next to `log.retention.ms`).
    var shown: @Sendable (BrokerSettings) -> String?
    /// Turns a flag's text into the key's syntax (`--listen HOST:PORT` → `PLAINTEXT://HOST:PORT`).
    var fromFlag: @Sendable (String) -> String = { $0 }
}

/// Value checks shared by the definitions; each message says what was expected.
enum Values {
    static func long(_ text: String, min: Int64, max: Int64 = .max) throws(ValueError) -> Int64 {
        guard let value = Int64(text.trimmingSpaces) else { throw ValueError(reason: "not an integer") }
        guard value >= min, value <= max else {
            throw ValueError(reason: max == .max ? "must be at least \(min)" : "must be in \(min)...\(max)")
        }
        return value
    }

    static func int(_ text: String, min: Int32, max: Int32 = .max) throws(ValueError) -> Int32 {
        Int32(try long(text, min: Int64(min), max: Int64(max)))
    }

    static func boolean(_ text: String) throws(ValueError) -> Bool {
        switch text.trimmingSpaces.lowercased() {
        case "true": return true
        case "false": return false
        default: throw ValueError(reason: "not true or false")
        }
    }

    static func nonEmpty(_ text: String) throws(ValueError) -> String {
        let trimmed = text.trimmingSpaces
        guard !trimmed.isEmpty else { throw ValueError(reason: "must not be empty") }
        return trimmed
    }

    static func hostPort(_ text: String) throws(ValueError) -> HostPort {
        guard let address = HostPort(parsing: text.trimmingSpaces) else {
            throw ValueError(reason: "not host:port (an IPv6 address in brackets)")
        }
        return address
    }

    static func listeners(_ text: String) throws(ValueError) -> Listener {
        do {
            return try ListenerPlan.served(try Listener.parseList(text))
        } catch {
            throw ValueError(reason: error.message)
        }
    }

    static func oneOf(_ text: String, _ allowed: [String]) throws(ValueError) -> String {
        let value = text.trimmingSpaces
        guard allowed.contains(value) else { throw ValueError(reason: "not one of \(allowed.joined(separator: ", "))") }
        return value
    }

    /// A Kafka setting Fjord accepts only with the value it always has.
    static func fixed(_ text: String, _ only: String, _ why: String) throws(ValueError) {
        guard text.trimmingSpaces.lowercased() == only.lowercased() else {
            throw ValueError(reason: "Fjord supports only \(only) (\(why))")
        }
    }
}

extension String {
    var trimmingSpaces: String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { $0 != " " && $0 != "\t" }),
            let last = scalars.lastIndex(where: { $0 != " " && $0 != "\t" })
        else { return "" }
        return String(scalars[first...last])
    }
}
