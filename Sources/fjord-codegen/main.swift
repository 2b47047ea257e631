import Foundation
import KafkaCodegen

// fjord-codegen [--specs DIR] [--check]
//
// Generates Sources/KafkaMessages/Generated/*.swift and Tests/KafkaMessagesTests/Generated/Samples.swift
// from Kafka's JSON message definitions. With --check it writes nothing and exits 1 when a committed
// file differs from what the generator produces, listing those files.

let usage = "usage: fjord-codegen [--specs DIR] [--check]"

/// The package root: two levels above this file (Sources/fjord-codegen/main.swift).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

var specsDirectory: URL?
var check = false
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--check":
        check = true
    case "--specs":
        guard let path = arguments.popFirst() else {
            FileHandle.standardError.write(Data("--specs needs a directory\n\(usage)\n".utf8))
            exit(2)
        }
        specsDirectory = URL(fileURLWithPath: path, isDirectory: true)
    case "-h", "--help":
        print(usage)
        exit(0)
    default:
        FileHandle.standardError.write(Data("unknown argument \(argument)\n\(usage)\n".utf8))
        exit(2)
    }
}

let specs = specsDirectory ?? KafkaCodegen.defaultSpecsDirectory(packageRoot: packageRoot)
do {
    let files = try KafkaCodegen.generate(specsDirectory: specs)
    if check {
        let differing = KafkaCodegen.differences(files, packageRoot: packageRoot)
        if differing.isEmpty {
            print("fjord-codegen: \(files.count) generated files are up to date")
            exit(0)
        }
        print("fjord-codegen: these files differ from the generator's output (run `swift run fjord-codegen`):")
        for path in differing { print("  \(path)") }
        exit(1)
    }
    let changed = try KafkaCodegen.write(files, packageRoot: packageRoot)
    print("fjord-codegen: wrote \(changed.count) of \(files.count) files from \(specs.path)")
    for path in changed { print("  \(path)") }
} catch {
    FileHandle.standardError.write(Data("fjord-codegen: \(error)\n".utf8))
    exit(1)
}
