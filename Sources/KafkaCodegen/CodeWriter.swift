import Foundation

/// Accumulates indented Swift source lines.
struct CodeWriter {
    private(set) var lines: [String] = []
    private var indentLevel = 0

    mutating func line(_ text: String = "") {
        if text.isEmpty {
            lines.append("")
        } else {
            lines.append(String(repeating: "    ", count: indentLevel) + text)
        }
    }

    /// Writes `header {`, the body one level deeper, then `}` (or `footer`).
    mutating func block(_ header: String, footer: String = "}", _ body: (inout CodeWriter) throws -> Void) rethrows {
        line(header)
        indentLevel += 1
        try body(&self)
        indentLevel -= 1
        line(footer)
    }

    /// Writes a `switch` whose `case` labels stay at the `switch` indentation (Swift style).
    mutating func switchBlock(_ header: String, _ body: (inout CodeWriter) throws -> Void) rethrows {
        line(header)
        try body(&self)
        line("}")
    }

    mutating func indent(_ body: (inout CodeWriter) throws -> Void) rethrows {
        indentLevel += 1
        try body(&self)
        indentLevel -= 1
    }

    var text: String { lines.joined(separator: "\n") + "\n" }
}

/// Swift naming for Kafka's JSON names.
enum SwiftNames {
    /// Swift keywords that need backticks when used as identifiers.
    static let keywords: Set<String> = [
        "associatedtype", "class", "deinit", "enum", "extension", "fileprivate", "func", "import", "init",
        "inout", "internal", "let", "open", "operator", "private", "precedencegroup", "protocol", "public",
        "rethrows", "static", "struct", "subscript", "typealias", "var", "break", "case", "catch", "continue",
        "default", "defer", "do", "else", "fallthrough", "for", "guard", "if", "in", "repeat", "return",
        "throw", "switch", "where", "while", "as", "Any", "await", "false", "is", "nil", "self", "Self",
        "super", "throws", "true", "try",
    ]

    /// `ThrottleTimeMs` → `throttleTimeMs`; keywords are escaped with backticks.
    static func property(_ jsonName: String) -> String {
        guard let first = jsonName.first else { return jsonName }
        let name = first.lowercased() + jsonName.dropFirst()
        return keywords.contains(name) ? "`\(name)`" : name
    }

    /// A string literal with `\`, `"` and control characters escaped.
    static func stringLiteral(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": result += "\\\\"
            case "\"": result += "\\\""
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            case "\r": result += "\\r"
            default:
                if scalar.value < 0x20 {
                    result += "\\u{\(String(scalar.value, radix: 16))}"
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result + "\""
    }

    /// A doc comment line: one line, trimmed.
    static func docText(_ text: String) -> String {
        text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
    }

    /// Splits text into lines of at most `width` characters at spaces (longer words stay whole).
    static func wrap(_ text: String, width: Int) -> [String] {
        var lines: [String] = []
        var current = ""
        for word in text.split(separator: " ") {
            if !current.isEmpty && current.count + 1 + word.count > width {
                lines.append(current)
                current = ""
            }
            current += current.isEmpty ? String(word) : " " + word
        }
        if !current.isEmpty { lines.append(current) }
        return lines
    }
}
