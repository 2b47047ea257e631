import ArgumentParser

/// A `host:port` pair from the command line: `127.0.0.1:9092`, `0.0.0.0:9092`, `[::1]:9092`,
/// `broker.example:9092`.
struct HostPort: Sendable, Hashable, CustomStringConvertible, ExpressibleByArgument {
    var host: String
    var port: Int

    init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    init?(argument: String) {
        let host: Substring
        let portText: Substring
        if argument.hasPrefix("[") {
            // IPv6 literal: [address]:port
            guard let close = argument.firstIndex(of: "]"),
                argument[argument.index(after: close)...].hasPrefix(":")
            else { return nil }
            host = argument[argument.index(after: argument.startIndex)..<close]
            portText = argument[argument.index(close, offsetBy: 2)...]
        } else {
            guard let colon = argument.lastIndex(of: ":") else { return nil }
            host = argument[..<colon]
            portText = argument[argument.index(after: colon)...]
            // An unbracketed IPv6 address is ambiguous ("::1:9092").
            guard !host.contains(":") else { return nil }
        }
        guard !host.isEmpty, let port = Int(portText), (0...65_535).contains(port) else { return nil }
        self.host = String(host)
        self.port = port
    }

    /// Listening on every interface: clients cannot be told to connect to this host.
    var isWildcard: Bool { self.host == "0.0.0.0" || self.host == "::" }

    var description: String { self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)" }
}
