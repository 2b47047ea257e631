/// A message spec prepared for emission: its structs resolved and its generated versions fixed.
struct MessageModel {
    enum Kind {
        case request(responseName: String, apiKeyCase: String)
        case response(apiKeyCase: String)
        case header
    }

    var spec: MessageSpec
    var kind: Kind
    /// The versions to generate; every condition in the output is simplified against this range.
    var range: Versions
    /// Nested struct types, in first-declaration order (inline structs, then unused common ones).
    var structs: [StructSpec]
    var apiKey: Int

    init(spec: MessageSpec, kind: Kind, range: Versions) throws {
        self.spec = spec
        self.kind = kind
        self.range = range
        self.apiKey = spec.apiKey ?? -1
        guard spec.validVersions.contains(range) else {
            throw CodegenError("\(spec.name): versions \(range) are outside its valid versions \(spec.validVersions)")
        }
        let common = Dictionary(spec.commonStructs.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var structs: [StructSpec] = []
        var seen: Set<String> = []
        func collect(_ fields: [FieldSpec], context: String) throws {
            for field in fields {
                guard let structName = field.type.structName else {
                    if field.fields != nil {
                        throw CodegenError("\(context).\(field.name): fields given for non-struct type")
                    }
                    continue
                }
                if case .array(.array) = field.type {
                    throw CodegenError("\(context).\(field.name): arrays of arrays are not supported")
                }
                if ["Response", "Type", "Protocol", "Self", spec.name].contains(structName) {
                    throw CodegenError("\(context).\(field.name): struct name \(structName) would clash in Swift")
                }
                if let inner = field.fields {
                    guard !seen.contains(structName) else {
                        throw CodegenError("\(context): struct \(structName) is declared twice")
                    }
                    seen.insert(structName)
                    structs.append(StructSpec(name: structName, fields: inner))
                    try collect(inner, context: "\(context).\(structName)")
                } else if let shared = common[structName] {
                    if !seen.contains(structName) {
                        seen.insert(structName)
                        structs.append(shared)
                        try collect(shared.fields, context: "\(context).\(structName)")
                    }
                } else if !seen.contains(structName) {
                    throw CodegenError("\(context).\(field.name): unknown struct type \(structName)")
                }
            }
        }
        try collect(spec.fields, context: spec.name)
        for shared in spec.commonStructs where !seen.contains(shared.name) {
            seen.insert(shared.name)
            structs.append(shared)
            try collect(shared.fields, context: "\(spec.name).\(shared.name)")
        }
        self.structs = structs
    }
}

/// A version condition simplified against the generated range.
enum Condition: Equatable {
    case always
    case never
    case when(String)

    /// The condition "version ∈ versions", knowing that version ∈ range.
    init(_ versions: Versions, within range: Versions) {
        let present = versions.intersection(range)
        if present.isEmpty {
            self = .never
        } else if present == range {
            self = .always
        } else {
            var parts: [String] = []
            if present.lowest > range.lowest { parts.append("version >= \(present.lowest)") }
            if present.highest < range.highest { parts.append("version <= \(present.highest)") }
            self = .when(parts.joined(separator: " && "))
        }
    }

    /// The condition as a Bool expression.
    var expression: String {
        switch self {
        case .always: return "true"
        case .never: return "false"
        case .when(let text): return text
        }
    }
}

extension FieldSpec {
    /// Versions in which the field is on the wire outside the tagged-field section.
    func untaggedVersions(within range: Versions) throws -> Versions {
        let present = versions.intersection(range)
        guard tag != nil, !taggedVersions.isEmpty else { return present }
        // Kafka's tagged versions are open ranges ("N+"), so the untagged part is what lies below.
        guard taggedVersions.highest == Versions.highest else {
            throw CodegenError("\(name): tagged versions \(taggedVersions) must be an open range")
        }
        return present.intersection(Versions(lowest: present.lowest, highest: taggedVersions.lowest - 1))
    }

    /// Versions in which the field is in the tagged-field section.
    func taggedPresentVersions(within range: Versions) -> Versions {
        guard tag != nil else { return .none }
        return versions.intersection(taggedVersions).intersection(range)
    }

    var isOptional: Bool { hasNullableVersions }
}
