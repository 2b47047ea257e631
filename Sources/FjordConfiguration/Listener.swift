/// One entry of Kafka's `listeners` / `advertised.listeners`: `NAME://host:port`.
///
/// Kafka maps a listener name to a security protocol through `listener.security.protocol.map`,
/// whose default maps the four protocol names to themselves; Fjord has no map yet, so a name must
/// be one of those. The list is parsed whole so that more listeners (SSL, SASL, named ones) fit in
/// later; `ListenerPlan` decides which of them this build serves.
public struct Listener: Sendable, Hashable, CustomStringConvertible {
    public enum SecurityProtocol: String, Sendable, CaseIterable {
        case plaintext = "PLAINTEXT"
        case ssl = "SSL"
        case saslPlaintext = "SASL_PLAINTEXT"
        case saslSsl = "SASL_SSL"
    }

    public var name: String
    public var securityProtocol: SecurityProtocol
    /// Empty in the text means every interface (Kafka binds the default interface): "0.0.0.0".
    public var address: HostPort

    public init(name: String, securityProtocol: SecurityProtocol, address: HostPort) {
        self.name = name
        self.securityProtocol = securityProtocol
        self.address = address
    }

    /// The PLAINTEXT listener a `--listen HOST:PORT` flag means.
    public static func plaintext(_ address: HostPort) -> Listener {
        Listener(name: "PLAINTEXT", securityProtocol: .plaintext, address: address)
    }

    public var description: String { "\(name)://\(address)" }

    /// Parses a comma-separated listener list; the message says what is wrong.
    public static func parseList(_ text: String) throws(ListenerSyntaxError) -> [Listener] {
        let items = text.split(separator: ",").map { $0.trimmingPrefix(while: \.isWhitespace) }.map {
            String($0.reversed().drop(while: \.isWhitespace).reversed())
        }
        guard !items.isEmpty, !items.contains(where: \.isEmpty) else {
            throw ListenerSyntaxError(message: "expected NAME://host:port[,NAME://host:port...]")
        }
        var listeners: [Listener] = []
        for item in items {
            guard let separator = item.range(of: "://") else {
                throw ListenerSyntaxError(message: "'\(item)' is not NAME://host:port")
            }
            let name = String(item[..<separator.lowerBound]).uppercased()
            var rest = String(item[separator.upperBound...])
            if rest.hasPrefix(":") { rest = "0.0.0.0" + rest }
            guard let address = HostPort(parsing: rest) else {
                throw ListenerSyntaxError(message: "'\(item)' has no valid host:port")
            }
            guard let securityProtocol = SecurityProtocol(rawValue: name) else {
                throw ListenerSyntaxError(
                    message:
                        "listener name '\(name)' is not a security protocol (\(SecurityProtocol.allCases.map(\.rawValue).joined(separator: ", "))); "
                        + "named listeners need listener.security.protocol.map, which Fjord does not support yet"
                )
            }
            guard !listeners.contains(where: { $0.name == name }) else {
                throw ListenerSyntaxError(message: "listener '\(name)' is given twice")
            }
            listeners.append(Listener(name: name, securityProtocol: securityProtocol, address: address))
        }
        return listeners
    }
}

/// A `listeners` value that does not parse.
public struct ListenerSyntaxError: Error, Sendable, Hashable {
    public var message: String
}

/// The listeners this build of Fjord serves: exactly one, PLAINTEXT. The check is its own step so
/// that adding SSL or SASL listeners changes this, not the parsing.
public enum ListenerPlan {
    public static func served(_ listeners: [Listener]) throws(ListenerSyntaxError) -> Listener {
        let unsupported = listeners.filter { $0.securityProtocol != .plaintext }
        guard unsupported.isEmpty else {
            throw ListenerSyntaxError(
                message:
                    "\(unsupported.map(\.description).joined(separator: ", ")): only PLAINTEXT listeners are supported by Fjord yet"
            )
        }
        guard listeners.count == 1, let listener = listeners.first else {
            throw ListenerSyntaxError(message: "Fjord serves one listener; got \(listeners.count)")
        }
        return listener
    }
}
