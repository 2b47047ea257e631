import Foundation
import Logging
import Synchronization
import Testing

@testable import FjordOperations

@Suite("JSONLogHandler (--log-format json)")
struct JSONLogHandlerTests {
    /// Lines a handler wrote.
    final class Lines: Sendable {
        private let lines = Mutex<[String]>([])
        func append(_ line: String) { lines.withLock { $0.append(line) } }
        func withLock<T: Sendable>(_ body: (inout [String]) -> T) -> T { lines.withLock { body(&$0) } }
    }

    /// A logger whose lines are collected instead of written to standard error.
    private func capturingLogger(_ label: String = "fjord.test") -> (Logger, Lines) {
        let lines = Lines()
        var logger = Logger(label: label) { label in
            JSONLogHandler(label: label) { line in lines.append(line) }
        }
        logger.logLevel = .debug
        return (logger, lines)
    }

    private func object(_ line: String) throws -> [String: Any] {
        let parsed = try JSONSerialization.jsonObject(with: Data(line.utf8))
        return try #require(parsed as? [String: Any])
    }

    @Test func eachEventIsOneJSONObjectOnOneLineWithItsFields() throws {
        let (logger, lines) = capturingLogger()
        logger.info("broker started", metadata: ["port": "9092", "partitions": .array(["a", "b"])])
        logger.warning("second")
        let captured = lines.withLock { $0 }
        #expect(captured.count == 2)
        for line in captured {
            #expect(line.hasSuffix("}\n"))
            #expect(line.dropLast().contains("\n") == false)
        }
        let first = try object(captured[0])
        #expect(first["level"] as? String == "info")
        #expect(first["label"] as? String == "fjord.test")
        #expect(first["message"] as? String == "broker started")
        #expect((first["source"] as? String)?.isEmpty == false)
        let metadata = try #require(first["metadata"] as? [String: Any])
        #expect(metadata["port"] as? String == "9092")
        #expect(metadata["partitions"] as? [String] == ["a", "b"])
        let timestamp = try #require(first["timestamp"] as? String)
        // UTC, ISO 8601 with milliseconds: 2026-11-20T18:41:17.123Z
        #expect(timestamp.count == 24 && timestamp.hasSuffix("Z"), "\(timestamp)")
        #expect(ISO8601DateFormatter.withMilliseconds.date(from: timestamp) != nil, "\(timestamp)")
        #expect(try object(captured[1])["metadata"] == nil, "no metadata, no field")
    }

    /// Quotes, backslashes, newlines and control characters are escaped, so a message never
    /// breaks the line or the object.
    @Test func specialCharactersAreEscaped() throws {
        let (logger, lines) = capturingLogger()
        let message = "a \"quoted\" \\ back\nslash\ttab \u{01} é"
        logger.error("\(message)", metadata: ["key\n": "va\"lue"])
        let line = try #require(lines.withLock { $0.first })
        #expect(line.dropLast().contains("\n") == false)
        let parsed = try object(line)
        #expect(parsed["message"] as? String == message)
        #expect((parsed["metadata"] as? [String: Any])?["key\n"] as? String == "va\"lue")
    }

    @Test func handlerMetadataAndTheProviderAreMergedWithTheEventsWinning() throws {
        let lines = Lines()
        var logger = Logger(label: "merge") { label in
            JSONLogHandler(label: label, metadataProvider: .init { ["request": "7", "shared": "provider"] }) { line in
                lines.append(line)
            }
        }
        logger[metadataKey: "node"] = "1"
        logger[metadataKey: "shared"] = "handler"
        logger.info("x", metadata: ["shared": "event"])
        let line = try #require(lines.withLock { $0.first })
        let metadata = try #require(try object(line)["metadata"] as? [String: Any])
        #expect(metadata["node"] as? String == "1")
        #expect(metadata["request"] as? String == "7")
        #expect(metadata["shared"] as? String == "event")
    }

    @Test func levelsBelowTheLoggersAreDropped() {
        let (logger, lines) = capturingLogger()
        var quiet = logger
        quiet.logLevel = .warning
        quiet.info("dropped")
        quiet.error("kept")
        #expect(lines.withLock { $0.count } == 1)
    }
}

extension ISO8601DateFormatter {
    static var withMilliseconds: ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }
}
