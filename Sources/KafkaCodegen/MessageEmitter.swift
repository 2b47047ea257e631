import Foundation

/// Emits the Swift declaration of one message (request, response or header) and its nested structs.
struct MessageEmitter {
    let model: MessageModel

    var range: Versions { model.range }
    var flexibleVersions: Versions { model.spec.flexibleVersions }

    // MARK: Types and defaults

    static func swiftType(_ type: FieldType) -> String {
        switch type {
        case .bool: return "Bool"
        case .int8: return "Int8"
        case .int16: return "Int16"
        case .uint16: return "UInt16"
        case .int32: return "Int32"
        case .uint32: return "UInt32"
        case .int64: return "Int64"
        case .float64: return "Double"
        case .string: return "String"
        case .bytes: return "[UInt8]"
        case .records: return "ByteBuffer"
        case .uuid: return "KafkaUUID"
        case .array(let element): return "[\(swiftType(element))]"
        case .structure(let name): return name
        }
    }

    static func fieldType(_ field: FieldSpec) -> String {
        swiftType(field.type) + (field.isOptional ? "?" : "")
    }

    static func zeroValue(_ type: FieldType) -> String {
        switch type {
        case .bool: return "false"
        case .int8, .int16, .uint16, .int32, .uint32, .int64: return "0"
        case .float64: return "0"
        case .string: return "\"\""
        case .bytes, .array: return "[]"
        // Empty rather than nil even where records are nullable: an unset partition then goes out
        // as zero-length records, which every client accepts (see DESIGN.md §5 on Fetch).
        case .records: return "ByteBuffer()"
        case .uuid: return "KafkaUUID.zero"
        case .structure(let name): return "\(name)()"
        }
    }

    /// The field's default as a Swift expression: the JSON `default`, else the type's zero.
    static func defaultValue(_ field: FieldSpec) throws -> String {
        guard let text = field.defaultValue?.trimmingCharacters(in: .whitespaces) else {
            return zeroValue(field.type)
        }
        if text == "null" {
            guard field.isOptional else {
                throw CodegenError("\(field.name): default null on a field without nullableVersions")
            }
            return "nil"
        }
        switch field.type {
        case .bool:
            switch text.lowercased() {
            case "true": return "true"
            case "false": return "false"
            default: throw CodegenError("\(field.name): bad bool default \(text)")
            }
        case .int8, .int16, .uint16, .int32, .uint32, .int64:
            let negative = text.hasPrefix("-")
            let magnitude = negative ? String(text.dropFirst()) : text
            let parsed: Int64?
            if magnitude.lowercased().hasPrefix("0x") {
                parsed = Int64(magnitude.dropFirst(2), radix: 16)
            } else {
                parsed = Int64(magnitude)
            }
            guard let value = parsed.map({ negative ? -$0 : $0 }) else {
                throw CodegenError("\(field.name): bad integer default \(text)")
            }
            let bounds: ClosedRange<Int64>
            switch field.type {
            case .int8: bounds = Int64(Int8.min)...Int64(Int8.max)
            case .int16: bounds = Int64(Int16.min)...Int64(Int16.max)
            case .uint16: bounds = 0...Int64(UInt16.max)
            case .int32: bounds = Int64(Int32.min)...Int64(Int32.max)
            case .uint32: bounds = 0...Int64(UInt32.max)
            default: bounds = Int64.min...Int64.max
            }
            guard bounds.contains(value) else {
                throw CodegenError("\(field.name): default \(text) out of range")
            }
            return text
        case .float64:
            guard Double(text) != nil else { throw CodegenError("\(field.name): bad float default \(text)") }
            return text.contains(".") || text.contains("e") ? text : text + ".0"
        case .string:
            return SwiftNames.stringLiteral(text)
        default:
            if text.isEmpty { return zeroValue(field.type) }
            throw CodegenError("\(field.name): unsupported default \(text) for its type")
        }
    }

    // MARK: Declarations

    func emit() throws -> String {
        var writer = CodeWriter()
        let spec = model.spec
        let conformance: String
        switch model.kind {
        case .request: conformance = "KafkaRequestMessage"
        case .response: conformance = "KafkaResponseMessage"
        case .header: conformance = "KafkaMessage"
        }
        writer.line(
            "/// \(spec.name), versions \(range.lowest)-\(range.highest) (valid \(spec.validVersions), flexible \(spec.flexibleVersions))."
        )
        try writer.block("public struct \(spec.name): \(conformance) {") { w in
            switch model.kind {
            case .request(let responseName, let apiKeyCase):
                w.line("public typealias Response = \(responseName)")
                w.line("public static var apiKey: ApiKey { .\(apiKeyCase) }")
            case .response(let apiKeyCase):
                w.line("public static var apiKey: ApiKey { .\(apiKeyCase) }")
            case .header:
                break
            }
            w.line("public static var generatedVersions: ClosedRange<Int16> { \(range.lowest)...\(range.highest) }")
            w.line()
            try emitBody(&w, name: spec.name, fields: spec.fields, topLevel: true)
        }
        if !model.structs.isEmpty {
            writer.line()
            try writer.block("extension \(spec.name) {") { w in
                for (index, structSpec) in model.structs.enumerated() {
                    if index > 0 { w.line() }
                    try w.block("public struct \(structSpec.name): Sendable, Equatable {") { w in
                        try emitBody(&w, name: structSpec.name, fields: structSpec.fields, topLevel: false)
                    }
                }
            }
        }
        return writer.text
    }

    private func versionsDoc(_ field: FieldSpec) -> String {
        var parts = ["versions \(field.versions)"]
        if field.hasNullableVersions { parts.append("nullable \(field.nullableVersions)") }
        if let tag = field.tag { parts.append("tagged \(field.taggedVersions) as tag \(tag)") }
        if let flexible = field.flexibleVersions { parts.append("flexible \(flexible)") }
        return "JSON `\(field.name)`: " + parts.joined(separator: ", ") + "."
    }

    private func emitBody(_ w: inout CodeWriter, name: String, fields: [FieldSpec], topLevel: Bool) throws {
        // Stored properties.
        for field in fields {
            if let about = field.about, !about.isEmpty {
                for line in SwiftNames.wrap(SwiftNames.docText(about), width: 96) {
                    w.line("/// \(line)")
                }
            }
            w.line("/// \(versionsDoc(field))")
            let property = SwiftNames.property(field.name)
            w.line("public var \(property): \(Self.fieldType(field)) = \(try Self.defaultValue(field))")
        }
        if !fields.isEmpty { w.line() }

        w.line("public init() {}")
        if !fields.isEmpty {
            w.line()
            w.line("public init(")
            w.indent { w in
                for (index, field) in fields.enumerated() {
                    let separator = index == fields.count - 1 ? "" : ","
                    let property = SwiftNames.property(field.name)
                    w.line(
                        "\(property): \(Self.fieldType(field)) = \((try? Self.defaultValue(field)) ?? "")\(separator)"
                    )
                }
            }
            w.block(") {") { w in
                for field in fields {
                    let property = SwiftNames.property(field.name)
                    w.line("self.\(property) = \(property)")
                }
            }
        }
        w.line()
        try emitReader(&w, fields: fields, topLevel: topLevel)
        w.line()
        try emitWriter(&w, fields: fields)
    }

    // MARK: Flexibility

    /// The message-level flexibility of the struct's encoding within `range`.
    private var structFlexible: Condition { Condition(flexibleVersions, within: range) }

    /// The Bool expression for "this field uses compact encodings", inside a block where the
    /// field is known to be present in `present`.
    private func compactExpression(_ field: FieldSpec, present: Versions) -> String {
        let versions = field.flexibleVersions ?? flexibleVersions
        let condition = Condition(versions, within: present)
        switch condition {
        case .always, .never: return condition.expression
        case .when:
            // The struct-level `flexible` constant covers fields without an override.
            return field.flexibleVersions == nil ? "flexible" : "(\(condition.expression))"
        }
    }

    private func flexibleDeclaration() -> String? {
        if case .when(let expression) = structFlexible {
            return "let flexible = \(expression)"
        }
        return nil
    }

    // MARK: Reading

    private func emitReader(_ w: inout CodeWriter, fields: [FieldSpec], topLevel: Bool) throws {
        try w.block("public init(from buffer: inout ByteBuffer, version: Int16) throws(KafkaWireError) {") { w in
            if topLevel {
                let failure: String
                if case .header = model.kind {
                    failure = ".unsupportedHeaderVersion(version)"
                } else {
                    failure = ".unsupportedVersion(apiKey: \(model.apiKey), version: version)"
                }
                w.block("guard version >= \(range.lowest) && version <= \(range.highest) else {") { w in
                    w.line("throw \(failure)")
                }
            }
            w.line("self.init()")
            if let declaration = flexibleDeclaration() { w.line(declaration) }
            for field in fields {
                let present = try field.untaggedVersions(within: range)
                let condition = Condition(present, within: range)
                if condition == .never { continue }
                try emitConditional(&w, condition) { w in
                    try emitFieldRead(&w, field, present: present, buffer: "buffer", tagged: false)
                }
            }
            try emitTaggedReader(&w, fields: fields)
        }
    }

    private func emitConditional(
        _ w: inout CodeWriter,
        _ condition: Condition,
        _ body: (inout CodeWriter) throws -> Void
    ) throws {
        switch condition {
        case .never: return
        case .always: try body(&w)
        case .when(let expression): try w.block("if \(expression) {", body)
        }
    }

    private func emitTaggedReader(_ w: inout CodeWriter, fields: [FieldSpec]) throws {
        let flexible = structFlexible
        if flexible == .never { return }
        let flexibleRange = flexibleVersions.intersection(range)
        let tagged = fields.filter { !$0.taggedPresentVersions(within: range).isEmpty }
            .sorted { ($0.tag ?? 0) < ($1.tag ?? 0) }
        // The struct-level `flexible` constant is declared whenever flexibility depends on the version.
        try emitConditional(&w, flexible == .always ? .always : .when("flexible")) { w in
            if tagged.isEmpty {
                w.line("try buffer.skipKafkaTaggedFields()")
                return
            }
            w.line("let taggedFieldCount = try buffer.readKafkaTaggedFieldCount()")
            try w.block("for _ in 0..<taggedFieldCount {") { w in
                w.line("let taggedField = try buffer.readKafkaTaggedField()")
                w.line("var field = taggedField.value")
                try w.switchBlock("switch taggedField.tag {") { w in
                    for field in tagged {
                        let present = field.taggedPresentVersions(within: range)
                        let tag = field.tag ?? 0
                        switch Condition(present, within: flexibleRange) {
                        case .never: continue
                        case .always: w.line("case \(tag):")
                        case .when(let expression): w.line("case \(tag) where \(expression):")
                        }
                        try w.indent { w in
                            try emitFieldRead(&w, field, present: present, buffer: "field", tagged: true)
                        }
                    }
                    w.line("default:")
                    w.indent { w in
                        w.line("// Unknown tags are skipped (KIP-482): their bytes were in `field`.")
                        w.line("break")
                    }
                }
            }
        }
    }

    /// Reads one field present in `present` (relative to the generated range).
    private func emitFieldRead(
        _ w: inout CodeWriter,
        _ field: FieldSpec,
        present: Versions,
        buffer: String,
        tagged: Bool
    ) throws {
        let target = "self.\(SwiftNames.property(field.name))"
        let compact = tagged ? "true" : compactExpression(field, present: present)
        let nullable = field.isOptional ? Condition(field.nullableVersions, within: present) : .never
        switch nullable {
        case .always, .never:
            try emitValueRead(
                &w,
                field.type,
                target: target,
                buffer: buffer,
                compact: compact,
                nullable: nullable == .always,
                tagged: tagged,
                context: field.name
            )
        case .when(let expression):
            try w.block("if \(expression) {", footer: "} else {") { w in
                try emitValueRead(
                    &w,
                    field.type,
                    target: target,
                    buffer: buffer,
                    compact: compact,
                    nullable: true,
                    tagged: tagged,
                    context: field.name
                )
            }
            try w.indent { w in
                try emitValueRead(
                    &w,
                    field.type,
                    target: target,
                    buffer: buffer,
                    compact: compact,
                    nullable: false,
                    tagged: tagged,
                    context: field.name
                )
            }
            w.line("}")
        }
    }

    private func emitValueRead(
        _ w: inout CodeWriter,
        _ type: FieldType,
        target: String,
        buffer: String,
        compact: String,
        nullable: Bool,
        tagged: Bool,
        context: String
    ) throws {
        switch type {
        case .structure(let name):
            if nullable {
                // Kafka marks a nullable struct with an int8 (-1 null, 1 present); in the tagged
                // section with a uvarint (0 null, 1 present).
                let marker =
                    tagged ? "try \(buffer).readKafkaUnsignedVarint() == 0" : "try \(buffer).readKafkaInt8() < 0"
                w.block("if \(marker) {", footer: "} else {") { w in w.line("\(target) = nil") }
                w.indent { w in w.line("\(target) = try \(name)(from: &\(buffer), version: version)") }
                w.line("}")
            } else {
                w.line("\(target) = try \(name)(from: &\(buffer), version: version)")
            }
        case .array(let element):
            let elementRead = try elementReadExpression(element, buffer: buffer, compact: compact, context: context)
            let loop: (inout CodeWriter) -> Void = { w in
                w.line("var elements: [\(Self.swiftType(element))] = []")
                w.line("elements.reserveCapacity(count)")
                w.block("for _ in 0..<count {") { w in w.line("elements.append(\(elementRead))") }
                w.line("\(target) = elements")
            }
            if nullable {
                w.block(
                    "if let count = try \(buffer).readKafkaNullableArrayCount(compact: \(compact)) {",
                    footer: "} else {",
                    loop
                )
                w.indent { w in w.line("\(target) = nil") }
                w.line("}")
            } else {
                w.block("do {") { w in
                    w.line("let count = try \(buffer).readKafkaArrayCount(compact: \(compact))")
                    loop(&w)
                }
            }
        default:
            w.line(
                "\(target) = \(try scalarReadExpression(type, buffer: buffer, compact: compact, nullable: nullable, context: context))"
            )
        }
    }

    private func scalarReadExpression(
        _ type: FieldType,
        buffer: String,
        compact: String,
        nullable: Bool,
        context: String
    ) throws -> String {
        let nullability = nullable ? "Nullable" : ""
        switch type {
        case .bool: return "try \(buffer).readKafkaBool()"
        case .int8: return "try \(buffer).readKafkaInt8()"
        case .int16: return "try \(buffer).readKafkaInt16()"
        case .uint16: return "try \(buffer).readKafkaUInt16()"
        case .int32: return "try \(buffer).readKafkaInt32()"
        case .uint32: return "try \(buffer).readKafkaUInt32()"
        case .int64: return "try \(buffer).readKafkaInt64()"
        case .float64: return "try \(buffer).readKafkaFloat64()"
        case .uuid: return "try \(buffer).readKafkaUUID()"
        case .string: return "try \(buffer).readKafka\(nullability)String(compact: \(compact))"
        case .bytes: return "try \(buffer).readKafka\(nullability)Bytes(compact: \(compact))"
        case .records: return "try \(buffer).readKafka\(nullability)BytesSlice(compact: \(compact))"
        case .array, .structure: throw CodegenError("\(context): not a scalar")
        }
    }

    private func elementReadExpression(
        _ type: FieldType,
        buffer: String,
        compact: String,
        context: String
    ) throws -> String {
        switch type {
        case .structure(let name): return "try \(name)(from: &\(buffer), version: version)"
        case .array, .records: throw CodegenError("\(context): unsupported array element type")
        default:
            return try scalarReadExpression(type, buffer: buffer, compact: compact, nullable: false, context: context)
        }
    }

    // MARK: Writing

    private func emitWriter(_ w: inout CodeWriter, fields: [FieldSpec]) throws {
        try w.block("public func write(to buffer: inout ByteBuffer, version: Int16) {") { w in
            if let declaration = flexibleDeclaration() { w.line(declaration) }
            for field in fields {
                let present = try field.untaggedVersions(within: range)
                let condition = Condition(present, within: range)
                try emitConditional(&w, condition) { w in
                    try emitFieldWrite(&w, field, present: present, buffer: "buffer", tagged: false)
                }
            }
            try emitTaggedWriter(&w, fields: fields)
        }
    }

    private func emitTaggedWriter(_ w: inout CodeWriter, fields: [FieldSpec]) throws {
        let flexible = structFlexible
        if flexible == .never { return }
        let flexibleRange = flexibleVersions.intersection(range)
        let tagged = fields.filter { !$0.taggedPresentVersions(within: range).isEmpty }
            .sorted { ($0.tag ?? 0) < ($1.tag ?? 0) }
        // The struct-level `flexible` constant is declared whenever flexibility depends on the version.
        try emitConditional(&w, flexible == .always ? .always : .when("flexible")) { w in
            if tagged.isEmpty {
                w.line("buffer.writeKafkaEmptyTaggedFields()")
                return
            }
            // A tagged field is written only when it differs from its default (KIP-482), in
            // ascending tag order.
            var checks: [(FieldSpec, String)] = []
            for field in tagged {
                let present = field.taggedPresentVersions(within: range)
                var parts: [String] = []
                if case .when(let expression) = Condition(present, within: flexibleRange) { parts.append(expression) }
                parts.append(try nonDefaultCheck(field))
                checks.append((field, parts.joined(separator: " && ")))
            }
            w.line("var taggedFieldCount: UInt32 = 0")
            for (_, check) in checks {
                w.line("if \(check) { taggedFieldCount += 1 }")
            }
            w.line("buffer.writeKafkaUnsignedVarint(taggedFieldCount)")
            for (field, check) in checks {
                let present = field.taggedPresentVersions(within: range)
                try w.block("if \(check) {") { w in
                    try w.block("buffer.writeKafkaTaggedField(tag: \(field.tag ?? 0)) { field in") { w in
                        try emitFieldWrite(&w, field, present: present, buffer: "field", tagged: true)
                    }
                }
            }
        }
    }

    private func nonDefaultCheck(_ field: FieldSpec) throws -> String {
        let property = "self.\(SwiftNames.property(field.name))"
        let defaultValue = try Self.defaultValue(field)
        if field.type.isArray && !field.isOptional && defaultValue == "[]" {
            return "!\(property).isEmpty"
        }
        if field.type == .bool {
            return defaultValue == "true" ? "!\(property)" : property
        }
        return "\(property) != \(defaultValue)"
    }

    private func emitFieldWrite(
        _ w: inout CodeWriter,
        _ field: FieldSpec,
        present: Versions,
        buffer: String,
        tagged: Bool
    ) throws {
        let value = "self.\(SwiftNames.property(field.name))"
        let compact = tagged ? "true" : compactExpression(field, present: present)
        let nullable = field.isOptional ? Condition(field.nullableVersions, within: present) : .never
        let write = { (w: inout CodeWriter, nullable: Bool) throws in
            try emitValueWrite(
                &w,
                field.type,
                value: value,
                isOptional: field.isOptional,
                buffer: buffer,
                compact: compact,
                nullable: nullable,
                tagged: tagged,
                context: field.name
            )
        }
        switch nullable {
        case .always: try write(&w, true)
        case .never: try write(&w, false)
        case .when(let expression):
            try w.block("if \(expression) {", footer: "} else {") { w in try write(&w, true) }
            try w.indent { w in try write(&w, false) }
            w.line("}")
        }
    }

    private func emitValueWrite(
        _ w: inout CodeWriter,
        _ type: FieldType,
        value: String,
        isOptional: Bool,
        buffer: String,
        compact: String,
        nullable: Bool,
        tagged: Bool,
        context: String
    ) throws {
        // `nonNull` is the value with a nil replaced by the type's zero (lenient writes).
        let nonNull = isOptional ? "(\(value) ?? \(Self.zeroValue(type)))" : value
        switch type {
        case .structure:
            if nullable {
                w.block("if let value = \(value) {", footer: "} else {") { w in
                    w.line(tagged ? "\(buffer).writeKafkaUnsignedVarint(1)" : "\(buffer).writeKafkaInt8(1)")
                    w.line("value.write(to: &\(buffer), version: version)")
                }
                w.indent { w in
                    w.line(tagged ? "\(buffer).writeKafkaUnsignedVarint(0)" : "\(buffer).writeKafkaInt8(-1)")
                }
                w.line("}")
            } else {
                w.line("\(nonNull).write(to: &\(buffer), version: version)")
            }
        case .array(let element):
            let elements: String
            if nullable {
                w.line("\(buffer).writeKafkaNullableArrayCount(\(value)?.count, compact: \(compact))")
                elements = "\(value) ?? []"
            } else {
                w.line("\(buffer).writeKafkaArrayCount(\(nonNull).count, compact: \(compact))")
                elements = isOptional ? "\(value) ?? []" : value
            }
            let elementWrite = try elementWriteStatement(element, buffer: buffer, compact: compact, context: context)
            w.block("for element in \(elements) {") { w in w.line(elementWrite) }
        default:
            w.line(
                try scalarWriteStatement(
                    type,
                    value: nullable ? value : nonNull,
                    buffer: buffer,
                    compact: compact,
                    nullable: nullable,
                    context: context
                )
            )
        }
    }

    private func scalarWriteStatement(
        _ type: FieldType,
        value: String,
        buffer: String,
        compact: String,
        nullable: Bool,
        context: String
    ) throws -> String {
        let nullability = nullable ? "Nullable" : ""
        switch type {
        case .bool: return "\(buffer).writeKafkaBool(\(value))"
        case .int8: return "\(buffer).writeKafkaInt8(\(value))"
        case .int16: return "\(buffer).writeKafkaInt16(\(value))"
        case .uint16: return "\(buffer).writeKafkaUInt16(\(value))"
        case .int32: return "\(buffer).writeKafkaInt32(\(value))"
        case .uint32: return "\(buffer).writeKafkaUInt32(\(value))"
        case .int64: return "\(buffer).writeKafkaInt64(\(value))"
        case .float64: return "\(buffer).writeKafkaFloat64(\(value))"
        case .uuid: return "\(buffer).writeKafkaUUID(\(value))"
        case .string: return "\(buffer).writeKafka\(nullability)String(\(value), compact: \(compact))"
        case .bytes, .records: return "\(buffer).writeKafka\(nullability)Bytes(\(value), compact: \(compact))"
        case .array, .structure: throw CodegenError("\(context): not a scalar")
        }
    }

    private func elementWriteStatement(
        _ type: FieldType,
        buffer: String,
        compact: String,
        context: String
    ) throws -> String {
        switch type {
        case .structure: return "element.write(to: &\(buffer), version: version)"
        case .array, .records: throw CodegenError("\(context): unsupported array element type")
        default:
            return try scalarWriteStatement(
                type,
                value: "element",
                buffer: buffer,
                compact: compact,
                nullable: false,
                context: context
            )
        }
    }
}
