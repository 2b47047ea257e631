/// Emits `ApiKey.swift`: one case per request spec in the directory.
struct ApiKeyEmitter {
    struct Entry {
        var caseName: String
        var name: String
        var apiKey: Int
        var validVersions: Versions
        var flexibleVersions: Versions
        var generatedVersions: Versions?
    }

    var entries: [Entry]

    static func caseName(forApi name: String) -> String {
        SwiftNames.property(name)
    }

    func emit() -> String {
        var w = CodeWriter()
        w.line("/// Every API key in the Apache Kafka 3.8.0 message definitions, named after the request")
        w.line("/// (`ProduceRequest` → `.produce`).")
        w.block("public enum ApiKey: Int16, Sendable, CaseIterable {") { w in
            for entry in entries {
                w.line("case \(entry.caseName) = \(entry.apiKey)")
            }
            w.line()
            w.line("/// The API's name in Kafka (\"Produce\").")
            w.block("public var name: String {") { w in
                w.switchBlock("switch self {") { w in
                    for entry in entries {
                        w.line("case .\(entry.caseName): return \"\(entry.name)\"")
                    }
                }
            }
            w.line()
            w.line("/// The versions Kafka 3.8.0 defines for the API (its `validVersions`).")
            w.block("public var validVersions: ClosedRange<Int16> {") { w in
                w.switchBlock("switch self {") { w in
                    for entry in entries {
                        w.line(
                            "case .\(entry.caseName): return \(entry.validVersions.lowest)...\(entry.validVersions.highest)"
                        )
                    }
                }
            }
            w.line()
            w.line("/// The versions this codec generates — the ones the broker advertises — or nil.")
            w.block("public var generatedVersions: ClosedRange<Int16>? {") { w in
                w.switchBlock("switch self {") { w in
                    for entry in entries {
                        if let versions = entry.generatedVersions {
                            w.line("case .\(entry.caseName): return \(versions.lowest)...\(versions.highest)")
                        }
                    }
                    w.line("default: return nil")
                }
            }
            w.line()
            w.line("/// The first flexible version (KIP-482: compact encodings, tagged fields), or nil.")
            w.block("public var firstFlexibleVersion: Int16? {") { w in
                w.switchBlock("switch self {") { w in
                    var groups: [Int: [String]] = [:]
                    var never: [String] = []
                    for entry in entries {
                        if entry.flexibleVersions.isEmpty {
                            never.append(entry.caseName)
                        } else {
                            groups[entry.flexibleVersions.lowest, default: []].append(entry.caseName)
                        }
                    }
                    for first in groups.keys.sorted() {
                        emitCaseList(&w, groups[first] ?? [], result: "\(first)")
                    }
                    if !never.isEmpty { emitCaseList(&w, never, result: "nil") }
                }
            }
            w.line()
            w.line("/// Whether `version` of the API uses the flexible encoding.")
            w.block("public func isFlexible(version: Int16) -> Bool {") { w in
                w.line("guard let first = firstFlexibleVersion else { return false }")
                w.line("return version >= first")
            }
            w.line()
            w.line("/// The request header version for `apiVersion`: 2 when flexible, else 1.")
            w.block("public func requestHeaderVersion(for apiVersion: Int16) -> Int16 {") { w in
                if entries.contains(where: { $0.caseName == "controlledShutdown" }) {
                    w.line("// ControlledShutdown v0 predates the client id: Kafka reads it with header v0.")
                    w.line("if self == .controlledShutdown && apiVersion == 0 { return 0 }")
                }
                w.line("return isFlexible(version: apiVersion) ? 2 : 1")
            }
            w.line()
            w.line("/// The response header version for `apiVersion`: 1 when flexible, else 0.")
            w.block("public func responseHeaderVersion(for apiVersion: Int16) -> Int16 {") { w in
                w.line("// ApiVersions responses always use header v0, so a client can read the answer before it")
                w.line("// knows which versions the broker supports (KIP-511).")
                w.line("if self == .apiVersions { return 0 }")
                w.line("return isFlexible(version: apiVersion) ? 1 : 0")
            }
        }
        return w.text
    }

    private func emitCaseList(_ w: inout CodeWriter, _ cases: [String], result: String) {
        var line = "case "
        var lines: [String] = []
        for (index, name) in cases.enumerated() {
            let piece = ".\(name)" + (index == cases.count - 1 ? ":" : ",")
            if line.count + piece.count + 1 > 100 && line != "case " {
                lines.append(line)
                line = "    "
            }
            line += (line.hasSuffix(" ") ? "" : " ") + piece
        }
        lines.append(line)
        for text in lines { w.line(text) }
        w.indent { w in w.line("return \(result)") }
    }
}
