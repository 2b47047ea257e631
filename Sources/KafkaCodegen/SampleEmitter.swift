/// Emits deterministic sample values for the round-trip tests: for every generated message and
/// version, a value in which every field on the wire in that version differs from its default
/// (arrays with two elements, nested structs filled, optionals non-nil, tagged fields set).
struct SampleEmitter {
    var models: [MessageModel]

    func emit() throws -> String {
        var w = CodeWriter()
        w.line("import KafkaMessages")
        w.line("import NIOCore")
        w.line()
        w.line("/// Every generated message type, in file order.")
        w.block("let generatedSampleTypes: [any SampleableMessage.Type] = [", footer: "]") { w in
            for model in models {
                w.line("\(model.spec.name).self,")
            }
        }
        w.line()
        w.line("/// A value of type `T` derived from a seed and a field index that is never `avoiding` (the default).")
        w.block("func sampleInteger<T: FixedWidthInteger>(_ seed: Int, _ field: Int, avoiding defaultValue: T) -> T {")
        { w in
            w.line("let value = T(truncatingIfNeeded: seed &* 31 &+ field)")
            w.line("return value == defaultValue ? value &+ 1 : value")
        }
        w.line()
        w.block("func sampleBytes(_ seed: Int, _ field: Int) -> [UInt8] {") { w in
            w.line("[UInt8(truncatingIfNeeded: seed), UInt8(truncatingIfNeeded: field), 0xFF]")
        }
        w.line()
        w.block("func sampleRecords(_ seed: Int, _ field: Int) -> ByteBuffer {") { w in
            w.line(
                "ByteBuffer(bytes: [0x52, UInt8(truncatingIfNeeded: seed), UInt8(truncatingIfNeeded: field), 0x00, 0x7F])"
            )
        }
        for model in models {
            let name = model.spec.name
            w.line()
            try w.block("extension \(name): SampleableMessage {") { w in
                w.block("static func sample(version: Int16) -> \(name) {") { w in
                    w.line("sample(version: version, seed: 1)")
                }
                w.line()
                try emitSampleFunction(&w, model: model, qualifiedName: name, fields: model.spec.fields)
            }
            for structSpec in model.structs {
                w.line()
                let qualified = "\(name).\(structSpec.name)"
                try w.block("extension \(qualified) {") { w in
                    try emitSampleFunction(&w, model: model, qualifiedName: qualified, fields: structSpec.fields)
                }
            }
        }
        return w.text
    }

    private func emitSampleFunction(
        _ w: inout CodeWriter,
        model: MessageModel,
        qualifiedName: String,
        fields: [FieldSpec]
    ) throws {
        let present = fields.filter { !$0.versions.intersection(model.range).isEmpty }
        let signature = "static func sample(version: Int16, seed: Int) -> \(qualifiedName) {"
        if present.isEmpty {
            w.block(signature) { w in w.line("\(qualifiedName)()") }
            return
        }
        try w.block(signature) { w in
            w.line("var value = \(qualifiedName)()")
            for (index, field) in fields.enumerated() {
                let condition = Condition(field.versions, within: model.range)
                let target = "value.\(SwiftNames.property(field.name))"
                let assign: (inout CodeWriter) throws -> Void = { w in
                    if case .array(let element) = field.type {
                        // Two elements, one per line.
                        try w.block("\(target) = [", footer: "]") { w in
                            for seed in ["seed &* 4 &+ 1", "seed &* 4 &+ 2"] {
                                let value = try sampleExpression(
                                    element,
                                    field: field,
                                    index: index + 1,
                                    seed: seed,
                                    model: model
                                )
                                w.line(value + ",")
                            }
                        }
                    } else {
                        let value = try sampleExpression(
                            field.type,
                            field: field,
                            index: index + 1,
                            seed: "seed",
                            model: model
                        )
                        w.line("\(target) = \(value)")
                    }
                }
                switch condition {
                case .never: continue
                case .always: try assign(&w)
                case .when(let expression): try w.block("if \(expression) {", assign)
                }
            }
            w.line("return value")
        }
    }

    private func sampleExpression(
        _ type: FieldType,
        field: FieldSpec,
        index: Int,
        seed: String,
        model: MessageModel
    ) throws -> String {
        switch type {
        case .bool:
            return (try MessageEmitter.defaultValue(field)) == "true" ? "false" : "true"
        case .int8, .int16, .uint16, .int32, .uint32, .int64:
            let defaultValue = field.type == type ? try MessageEmitter.defaultValue(field) : "0"
            let avoiding = defaultValue == "nil" ? "0" : defaultValue
            return "sampleInteger(\(seed), \(index), avoiding: \(avoiding))"
        case .float64:
            return "Double(\(seed)) + 0.5"
        case .string:
            return "\"\(field.name)-\\(\(seed))\""
        case .bytes:
            return "sampleBytes(\(seed), \(index))"
        case .records:
            return "sampleRecords(\(seed), \(index))"
        case .uuid:
            return "KafkaUUID(mostSignificantBits: UInt64(\(seed)), leastSignificantBits: UInt64(\(index)))"
        case .structure(let name):
            return "\(model.spec.name).\(name).sample(version: version, seed: \(seed))"
        case .array:
            throw CodegenError("\(field.name): arrays of arrays are not supported")
        }
    }
}
