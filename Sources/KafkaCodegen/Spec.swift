import Foundation

/// A contiguous version range from Kafka's JSON dialect: "N+", "N-M", "N" or "none".
struct Versions: Equatable, CustomStringConvertible {
    /// Kafka's open upper bound ("N+"): Java's `Short.MAX_VALUE`.
    static let highest = Int(Int16.max)
    static let none = Versions(lowest: 1, highest: 0)

    var lowest: Int
    var highest: Int

    init(lowest: Int, highest: Int) {
        self.lowest = lowest
        self.highest = highest
    }

    init(_ range: ClosedRange<Int16>) {
        self.init(lowest: Int(range.lowerBound), highest: Int(range.upperBound))
    }

    init(parsing text: String, context: String) throws {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed == "none" {
            self = .none
        } else if trimmed.hasSuffix("+"), let low = Int(trimmed.dropLast()) {
            self.init(lowest: low, highest: Versions.highest)
        } else if let dash = trimmed.firstIndex(of: "-"),
            let low = Int(trimmed[..<dash]), let high = Int(trimmed[trimmed.index(after: dash)...])
        {
            self.init(lowest: low, highest: high)
        } else if let single = Int(trimmed) {
            self.init(lowest: single, highest: single)
        } else {
            throw CodegenError("\(context): cannot parse version spec \"\(text)\"")
        }
    }

    var isEmpty: Bool { lowest > highest }

    func contains(_ version: Int) -> Bool { version >= lowest && version <= highest }

    func intersection(_ other: Versions) -> Versions {
        let result = Versions(lowest: max(lowest, other.lowest), highest: min(highest, other.highest))
        return result.isEmpty ? .none : result
    }

    func contains(_ other: Versions) -> Bool {
        other.isEmpty || (other.lowest >= lowest && other.highest <= highest)
    }

    var description: String {
        if isEmpty { return "none" }
        if highest == Versions.highest { return "\(lowest)+" }
        return lowest == highest ? "\(lowest)" : "\(lowest)-\(highest)"
    }
}

/// A field's type in the JSON specs.
indirect enum FieldType: Equatable {
    case bool, int8, int16, uint16, int32, uint32, int64, float64, string, bytes, records, uuid
    case array(FieldType)
    case structure(String)

    init(parsing text: String) {
        if text.hasPrefix("[]") {
            self = .array(FieldType(parsing: String(text.dropFirst(2))))
            return
        }
        switch text {
        case "bool": self = .bool
        case "int8": self = .int8
        case "int16": self = .int16
        case "uint16": self = .uint16
        case "int32": self = .int32
        case "uint32": self = .uint32
        case "int64": self = .int64
        case "float64": self = .float64
        case "string": self = .string
        case "bytes": self = .bytes
        case "records": self = .records
        case "uuid": self = .uuid
        default: self = .structure(text)
        }
    }

    var isArray: Bool {
        if case .array = self { return true }
        return false
    }

    var structName: String? {
        switch self {
        case .structure(let name): return name
        case .array(let element): return element.structName
        default: return nil
        }
    }

    /// Fixed-width types are never null and have no length prefix.
    var isFixedWidth: Bool {
        switch self {
        case .bool, .int8, .int16, .uint16, .int32, .uint32, .int64, .float64, .uuid: return true
        default: return false
        }
    }
}

struct FieldSpec {
    var name: String
    var type: FieldType
    var versions: Versions
    var nullableVersions: Versions
    /// True when the JSON names `nullableVersions` at all: such a field is a Swift Optional.
    var hasNullableVersions: Bool
    var taggedVersions: Versions
    var tag: Int?
    /// A per-field override of the message's flexible versions (only `RequestHeader.ClientId`).
    var flexibleVersions: Versions?
    /// The JSON `default`, normalised to a string ("null", "-1", "true", "0x7fffffff", …).
    var defaultValue: String?
    var about: String?
    /// Inline struct fields when the type is a struct (or array of structs) declared here.
    var fields: [FieldSpec]?
}

struct StructSpec {
    var name: String
    var fields: [FieldSpec]
}

struct MessageSpec {
    var name: String
    var type: String
    var apiKey: Int?
    var validVersions: Versions
    var flexibleVersions: Versions
    var fields: [FieldSpec]
    var commonStructs: [StructSpec]
}

struct CodegenError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

enum SpecParser {
    /// Parses one JSON spec in Kafka's dialect (whole-line `//` comments).
    static func parse(contents: String, file: String) throws -> MessageSpec {
        let json = contents.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("//") }
            .joined(separator: "\n")
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(json.utf8))
        } catch {
            throw CodegenError("\(file): invalid JSON: \(error)")
        }
        guard let root = object as? [String: Any] else { throw CodegenError("\(file): not a JSON object") }
        guard let name = root["name"] as? String, let type = root["type"] as? String else {
            throw CodegenError("\(file): missing name or type")
        }
        let validVersions = try Versions(parsing: string(root["validVersions"]) ?? "none", context: file)
        let flexibleVersions = try Versions(parsing: string(root["flexibleVersions"]) ?? "none", context: file)
        let fields = try parseFields(root["fields"], context: "\(file) \(name)")
        var common: [StructSpec] = []
        if let structs = root["commonStructs"] as? [[String: Any]] {
            for item in structs {
                guard let structName = item["name"] as? String else {
                    throw CodegenError("\(file): commonStruct without a name")
                }
                common.append(
                    StructSpec(
                        name: structName,
                        fields: try parseFields(item["fields"], context: "\(file) \(structName)")
                    )
                )
            }
        }
        return MessageSpec(
            name: name,
            type: type,
            apiKey: (root["apiKey"] as? NSNumber)?.intValue,
            validVersions: validVersions,
            flexibleVersions: flexibleVersions,
            fields: fields,
            commonStructs: common
        )
    }

    private static func string(_ value: Any?) -> String? {
        if let text = value as? String { return text }
        if let number = value as? NSNumber { return number.stringValue }
        return nil
    }

    private static func parseFields(_ value: Any?, context: String) throws -> [FieldSpec] {
        guard let value else { return [] }
        guard let items = value as? [[String: Any]] else { throw CodegenError("\(context): fields is not an array") }
        return try items.map { item in
            guard let name = item["name"] as? String, let typeText = item["type"] as? String else {
                throw CodegenError("\(context): field without name or type")
            }
            let fieldContext = "\(context).\(name)"
            let type = FieldType(parsing: typeText)
            let versions = try Versions(parsing: string(item["versions"]) ?? "none", context: fieldContext)
            let nullableText = string(item["nullableVersions"])
            let nullable = try nullableText.map { try Versions(parsing: $0, context: fieldContext) } ?? .none
            let tagged = try string(item["taggedVersions"]).map { try Versions(parsing: $0, context: fieldContext) }
            let flexible = try string(item["flexibleVersions"]).map { try Versions(parsing: $0, context: fieldContext) }
            var defaultValue: String?
            if let raw = item["default"] {
                if let text = raw as? String {
                    defaultValue = text
                } else if let number = raw as? NSNumber {
                    // JSON true/false arrive as NSNumber; the field type says which it is.
                    if type == .bool {
                        defaultValue = number.boolValue ? "true" : "false"
                    } else {
                        defaultValue = number.stringValue
                    }
                }
            }
            // Tags are numbers, except in a few files where they are strings ("0").
            let tagText = string(item["tag"])
            let tag = tagText.flatMap { Int($0) }
            if tagText != nil && tag == nil { throw CodegenError("\(fieldContext): bad tag \(tagText ?? "")") }
            if (tag == nil) != (tagged == nil) {
                throw CodegenError("\(fieldContext): tag and taggedVersions must come together")
            }
            return FieldSpec(
                name: name,
                type: type,
                versions: versions,
                nullableVersions: nullable,
                hasNullableVersions: nullableText != nil && !nullable.isEmpty,
                taggedVersions: tagged ?? .none,
                tag: tag,
                flexibleVersions: flexible,
                defaultValue: defaultValue,
                about: item["about"] as? String,
                fields: try item["fields"].map { try parseFields($0, context: fieldContext) }
            )
        }
    }
}
