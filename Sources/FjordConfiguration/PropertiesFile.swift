#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One `key=value` of a properties file, with the line it starts on.
public struct PropertiesEntry: Sendable, Hashable {
    public var key: String
    public var value: String
    /// 1-based line of the entry's first physical line.
    public var line: Int

    public init(key: String, value: String, line: Int) {
        self.key = key
        self.value = value
        self.line = line
    }
}

/// A file in Java's properties format, the format of Kafka's `server.properties`
/// (`java.util.Properties.load`): `key=value`, `key: value` or `key value`; `#` and `!` comment
/// lines; a backslash at the end of a line continues it on the next (leading blanks dropped);
/// escapes `\t \n \r \f \uXXXX` and `\` before any other character for that character. Unlike
/// Java, a key given twice is an error rather than the last one silently winning.
public struct PropertiesFile: Sendable, Hashable {
    /// The name errors mention (the path, or "server.properties" in tests).
    public var path: String
    public var entries: [PropertiesEntry]

    public init(path: String, entries: [PropertiesEntry]) {
        self.path = path
        self.entries = entries
    }

    /// The entry for `key`, if the file has one.
    public func entry(_ key: String) -> PropertiesEntry? { entries.first { $0.key == key } }

    /// Reads and parses the file at `path`.
    public static func load(path: String) throws(ConfigurationError) -> PropertiesFile {
        guard let text = readWholeFile(path) else {
            throw ConfigurationError("cannot read the configuration file \(path): \(String(cString: strerror(errno)))")
        }
        return try parse(text, path: path)
    }

    /// Parses properties text; every problem is reported, each with its line.
    public static func parse(_ text: String, path: String) throws(ConfigurationError) -> PropertiesFile {
        var entries: [PropertiesEntry] = []
        var problems: [String] = []
        var firstLine: [String: Int] = [:]
        for logical in logicalLines(of: text) {
            do {
                guard let (key, value) = try splitEntry(logical.text) else { continue }
                if let earlier = firstLine[key] {
                    problems.append(
                        "\(path): duplicate key '\(key)' at line \(logical.line) (first set at line \(earlier))"
                    )
                    continue
                }
                firstLine[key] = logical.line
                entries.append(PropertiesEntry(key: key, value: value, line: logical.line))
            } catch {
                problems.append("\(path): \(error.reason) at line \(logical.line)")
            }
        }
        guard problems.isEmpty else { throw ConfigurationError(problems: problems) }
        return PropertiesFile(path: path, entries: entries)
    }

    private struct LogicalLine {
        var text: String
        var line: Int
    }

    /// Joins continued lines, drops comment and blank lines.
    private static func logicalLines(of text: String) -> [LogicalLine] {
        // \r\n, \r and \n all end a line.
        let physical = text.replacing("\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false)
            .flatMap { $0.split(separator: "\r", omittingEmptySubsequences: false) }
        var result: [LogicalLine] = []
        var pending: (text: String, line: Int)?
        for (index, raw) in physical.enumerated() {
            let trimmed = raw.drop(while: { $0 == " " || $0 == "\t" || $0 == "\u{0C}" })
            if pending == nil && (trimmed.isEmpty || trimmed.first == "#" || trimmed.first == "!") { continue }
            // An odd number of trailing backslashes continues the line.
            let trailing = trimmed.reversed().prefix(while: { $0 == "\\" }).count
            let continues = trailing % 2 == 1
            let content = continues ? String(trimmed.dropLast()) : String(trimmed)
            if var open = pending {
                open.text += content
                pending = open
            } else {
                pending = (content, index + 1)
            }
            if !continues, let done = pending {
                result.append(LogicalLine(text: done.text, line: done.line))
                pending = nil
            }
        }
        if let done = pending { result.append(LogicalLine(text: done.text, line: done.line)) }
        return result
    }

    struct SyntaxError: Error {
        var reason: String
    }

    /// Splits a logical line into its unescaped key and value; nil when it holds nothing.
    private static func splitEntry(_ line: String) throws(SyntaxError) -> (String, String)? {
        let characters = Array(line)
        var index = 0
        var keyEnd = characters.count
        // The key ends at the first unescaped '=', ':' or blank.
        while index < characters.count {
            let character = characters[index]
            if character == "\\" {
                index += 2
                continue
            }
            if character == "=" || character == ":" || character == " " || character == "\t" || character == "\u{0C}" {
                keyEnd = index
                break
            }
            index += 1
        }
        keyEnd = min(keyEnd, characters.count)
        var valueStart = keyEnd
        while valueStart < characters.count, [" ", "\t", "\u{0C}"].contains(characters[valueStart]) { valueStart += 1 }
        if valueStart < characters.count, characters[valueStart] == "=" || characters[valueStart] == ":" {
            valueStart += 1
            while valueStart < characters.count, [" ", "\t", "\u{0C}"].contains(characters[valueStart]) {
                valueStart += 1
            }
        }
        let key = try unescape(characters[0..<keyEnd])
        guard !key.isEmpty else {
            if valueStart >= characters.count { return nil }
            throw SyntaxError(reason: "an entry without a key")
        }
        return (key, try unescape(characters[valueStart...]))
    }

    private static func unescape(_ characters: ArraySlice<Character>) throws(SyntaxError) -> String {
        var result = ""
        var index = characters.startIndex
        while index < characters.endIndex {
            let character = characters[index]
            index += 1
            guard character == "\\" else {
                result.append(character)
                continue
            }
            guard index < characters.endIndex else { break }
            let escaped = characters[index]
            index += 1
            switch escaped {
            case "t": result.append("\t")
            case "n": result.append("\n")
            case "r": result.append("\r")
            case "f": result.append("\u{0C}")
            case "u":
                let digits = characters[index..<min(index + 4, characters.endIndex)]
                guard digits.count == 4, let code = UInt32(String(digits), radix: 16), let scalar = Unicode.Scalar(code)
                else { throw SyntaxError(reason: "a malformed \\uXXXX escape") }
                result.unicodeScalars.append(scalar)
                index += 4
            default: result.append(escaped)
            }
        }
        return result
    }

    private static func readWholeFile(_ path: String) -> String? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count < 0 { return nil }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Settings that cannot be used, each problem on its own line with its source and line.
public struct ConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    public var problems: [String]

    public init(problems: [String]) {
        self.problems = problems
    }

    public init(_ problem: String) {
        self.problems = [problem]
    }

    public var description: String { problems.joined(separator: "\n") }
}
