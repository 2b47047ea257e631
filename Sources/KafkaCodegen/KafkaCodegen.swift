import Foundation

/// Turns Apache Kafka's JSON message definitions into the Swift codec in `KafkaMessages`.
///
/// The output is a pure function of the spec files and the tables below: files are emitted in a
/// fixed order, every path and list is sorted, and nothing depends on the clock or the machine.
/// `fjord-codegen` writes it; `fjord-codegen --check` and the codegen test compare it with the
/// committed files.
public enum KafkaCodegen {
    /// The Kafka release the JSON definitions come from (see ../shared/kafka-protocol/SOURCE.md).
    public static let kafkaVersion = "3.8.0"

    /// The APIs to generate and their versions: exactly the ranges the broker advertises
    /// (DESIGN.md §5), Kafka 3.8's client-facing ones. To support another API or version, change
    /// this list and rerun the generator.
    public static let generatedApis: [(name: String, versions: ClosedRange<Int16>)] = [
        ("ApiVersions", 0...3),
        ("Metadata", 0...12),
        ("Produce", 0...11),
        ("Fetch", 0...16),
        ("ListOffsets", 0...8),
        ("CreateTopics", 0...7),
        ("DeleteTopics", 0...6),
        ("DescribeConfigs", 0...4),
        ("InitProducerId", 0...4),
        ("FindCoordinator", 0...5),
        ("JoinGroup", 0...9),
        ("SyncGroup", 0...5),
        ("Heartbeat", 0...4),
        ("LeaveGroup", 0...5),
        ("OffsetCommit", 0...9),
        ("OffsetFetch", 0...9),
        ("DescribeGroups", 0...5),
        ("ListGroups", 0...5),
        ("DeleteGroups", 0...2),
        ("SaslHandshake", 0...1),
        ("SaslAuthenticate", 0...2),
        ("DeleteRecords", 0...2),
        ("CreatePartitions", 0...3),
        ("AlterConfigs", 0...2),
        ("IncrementalAlterConfigs", 0...1),
        ("DescribeCluster", 0...1),
        ("DescribeLogDirs", 0...4),
        ("ElectLeaders", 0...2),
        ("ListPartitionReassignments", 0...0),
        ("AlterPartitionReassignments", 0...0),
        ("OffsetDelete", 0...0),
        // Transactions (KIP-98). Clients use AddPartitionsToTxn 0-3 (v4+ is broker to broker) and
        // EndTxn/AddOffsetsToTxn/TxnOffsetCommit up to 3 (v4 adds KIP-890's TRANSACTION_ABORTABLE).
        ("AddPartitionsToTxn", 0...3),
        ("AddOffsetsToTxn", 0...3),
        ("EndTxn", 0...3),
        ("TxnOffsetCommit", 0...3),
        ("DescribeTransactions", 0...0),
        ("ListTransactions", 0...1),
        ("DescribeProducers", 0...0),
        // Issue 17: the full client-facing ranges of Kafka 3.8.
        ("OffsetForLeaderEpoch", 0...4),
        ("DescribeTopicPartitions", 0...0),
    ]

    /// Header specs and their versions.
    public static let generatedHeaders: [(name: String, versions: ClosedRange<Int16>)] = [
        ("RequestHeader", 0...2),
        ("ResponseHeader", 0...1),
    ]

    /// Where generated sources go, relative to the package root.
    public static let sourcesDirectory = "Sources/KafkaMessages/Generated"
    /// Where generated test samples go, relative to the package root.
    public static let testsDirectory = "Tests/KafkaMessagesTests/Generated"

    /// The specs directory: `$FJORD_KAFKA_PROTOCOL_DIR`, else `../shared/kafka-protocol/messages`
    /// next to the package root.
    public static func defaultSpecsDirectory(packageRoot: URL) -> URL {
        if let override = ProcessInfo.processInfo.environment["FJORD_KAFKA_PROTOCOL_DIR"], !override.isEmpty {
            return URL(fileURLWithPath: override, isDirectory: true)
        }
        return packageRoot.deletingLastPathComponent()
            .appendingPathComponent("shared/kafka-protocol/messages", isDirectory: true)
    }

    /// Generates every file: repo-relative path → contents.
    public static func generate(specsDirectory: URL) throws -> [String: String] {
        let specs = try loadSpecs(specsDirectory)
        var files: [String: String] = [:]

        // ApiKey: every request spec, by API key.
        let generated = Dictionary(
            generatedApis.map { ($0.name, $0.versions) },
            uniquingKeysWith: { first, _ in first }
        )
        var entries: [ApiKeyEmitter.Entry] = []
        for spec in specs.values where spec.type == "request" {
            guard let apiKey = spec.apiKey else { throw CodegenError("\(spec.name): request without apiKey") }
            guard spec.name.hasSuffix("Request") else {
                throw CodegenError("\(spec.name): request name must end in Request")
            }
            let apiName = String(spec.name.dropLast("Request".count))
            entries.append(
                ApiKeyEmitter.Entry(
                    caseName: ApiKeyEmitter.caseName(forApi: apiName),
                    name: apiName,
                    apiKey: apiKey,
                    validVersions: spec.validVersions,
                    flexibleVersions: spec.flexibleVersions,
                    generatedVersions: generated[apiName].map(Versions.init)
                )
            )
        }
        entries.sort { $0.apiKey < $1.apiKey }
        for (first, second) in zip(entries, entries.dropFirst()) where first.apiKey == second.apiKey {
            throw CodegenError("API key \(first.apiKey) is used by both \(first.name) and \(second.name)")
        }
        guard entries.contains(where: { $0.caseName == "apiVersions" }) else {
            throw CodegenError("ApiVersionsRequest.json is missing")
        }
        files["\(sourcesDirectory)/ApiKey.swift"] =
            banner(sources: ["*Request.json"]) + "\n" + ApiKeyEmitter(entries: entries).emit()

        var sampleModels: [MessageModel] = []

        for header in generatedHeaders {
            let spec = try require(specs, header.name)
            let model = try MessageModel(spec: spec, kind: .header, range: Versions(header.versions))
            files["\(sourcesDirectory)/\(header.name).swift"] = try messageFile(models: [model], sources: [header.name])
            sampleModels.append(model)
        }

        for api in generatedApis.sorted(by: { $0.name < $1.name }) {
            let request = try require(specs, "\(api.name)Request")
            let response = try require(specs, "\(api.name)Response")
            guard let apiKey = request.apiKey, response.apiKey == apiKey else {
                throw CodegenError("\(api.name): request and response API keys differ")
            }
            guard request.flexibleVersions == response.flexibleVersions else {
                throw CodegenError("\(api.name): request and response flexible versions differ")
            }
            let caseName = ApiKeyEmitter.caseName(forApi: api.name)
            let range = Versions(api.versions)
            let models = [
                try MessageModel(
                    spec: request,
                    kind: .request(responseName: response.name, apiKeyCase: caseName),
                    range: range
                ),
                try MessageModel(spec: response, kind: .response(apiKeyCase: caseName), range: range),
            ]
            files["\(sourcesDirectory)/\(api.name).swift"] =
                try messageFile(models: models, sources: [request.name, response.name])
            sampleModels.append(contentsOf: models)
        }

        files["\(testsDirectory)/Samples.swift"] =
            banner(sources: sampleModels.map(\.spec.name)) + "\n" + (try SampleEmitter(models: sampleModels).emit())
        return files
    }

    /// Repo-relative paths whose committed contents differ from `files`, including stale `.swift`
    /// files in the generated directories that the generator no longer produces. Sorted.
    public static func differences(_ files: [String: String], packageRoot: URL) -> [String] {
        var result: [String] = []
        for (path, contents) in files {
            let url = packageRoot.appendingPathComponent(path)
            let committed = try? String(contentsOf: url, encoding: .utf8)
            if committed != contents { result.append(path) }
        }
        for path in existingGeneratedFiles(packageRoot: packageRoot) where files[path] == nil {
            result.append(path)
        }
        return result.sorted()
    }

    /// Writes `files` under `packageRoot` and removes stale generated `.swift` files. Returns the
    /// paths it changed, sorted.
    @discardableResult
    public static func write(_ files: [String: String], packageRoot: URL) throws -> [String] {
        let changed = differences(files, packageRoot: packageRoot)
        let manager = FileManager.default
        for path in changed {
            let url = packageRoot.appendingPathComponent(path)
            if let contents = files[path] {
                try manager.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try contents.write(to: url, atomically: true, encoding: .utf8)
            } else {
                try manager.removeItem(at: url)
            }
        }
        return changed
    }

    // MARK: Internals

    static func banner(sources: [String]) -> String {
        var lines = [
            "// DO NOT EDIT. Generated by fjord-codegen (Sources/KafkaCodegen) from the",
            "// Apache Kafka \(kafkaVersion) message definitions in ../shared/kafka-protocol/messages:",
        ]
        var line = "//"
        for source in sources {
            let piece = " \(source).json" == " *Request.json.json" ? " *Request.json" : " \(source).json"
            if line.count + piece.count > 100 {
                lines.append(line)
                line = "//"
            }
            line += piece
        }
        lines.append(line)
        lines.append("// Change the generator and run `swift run fjord-codegen` instead of editing this file.")
        // The generator owns the layout of what it writes; scripts/format leaves it alone.
        lines.append("// swift-format-ignore-file")
        return lines.joined(separator: "\n") + "\n"
    }

    private static func messageFile(models: [MessageModel], sources: [String]) throws -> String {
        var text = banner(sources: sources) + "\n" + "import KafkaWire\nimport NIOCore\n"
        for model in models {
            text += "\n" + (try MessageEmitter(model: model).emit())
        }
        return text
    }

    private static func require(_ specs: [String: MessageSpec], _ name: String) throws -> MessageSpec {
        guard let spec = specs[name] else { throw CodegenError("\(name).json is missing from the specs directory") }
        return spec
    }

    private static func loadSpecs(_ directory: URL) throws -> [String: MessageSpec] {
        let manager = FileManager.default
        let names: [String]
        do {
            names = try manager.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".json") }.sorted()
        } catch {
            throw CodegenError("cannot list specs directory \(directory.path): \(error)")
        }
        guard !names.isEmpty else { throw CodegenError("no *.json specs in \(directory.path)") }
        var specs: [String: MessageSpec] = [:]
        for name in names {
            let url = directory.appendingPathComponent(name)
            let contents: String
            do {
                contents = try String(contentsOf: url, encoding: .utf8)
            } catch {
                throw CodegenError("cannot read \(url.path): \(error)")
            }
            let spec = try SpecParser.parse(contents: contents, file: name)
            guard specs[spec.name] == nil else { throw CodegenError("\(spec.name) is defined twice") }
            specs[spec.name] = spec
        }
        return specs
    }

    private static func existingGeneratedFiles(packageRoot: URL) -> [String] {
        var paths: [String] = []
        for directory in [sourcesDirectory, testsDirectory] {
            let url = packageRoot.appendingPathComponent(directory)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
            for name in names where name.hasSuffix(".swift") {
                paths.append("\(directory)/\(name)")
            }
        }
        return paths
    }
}
