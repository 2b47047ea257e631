/// Why a record batch was rejected, and the Kafka error code a producer expects for it.
///
/// The codes follow Kafka's `LogValidator` and `UnifiedLog.analyzeAndValidateRecords`, so a client reacts to Fjord
/// as it would to a Kafka broker (e.g. it does not retry CORRUPT_MESSAGE with the same bytes, splits a batch on
/// MESSAGE_TOO_LARGE):
/// - CORRUPT_MESSAGE (2): sizes that do not add up, a wrong CRC, records that do not parse, an unknown codec,
///   a compressed payload that does not inflate (or inflates beyond the limit).
/// - INVALID_RECORD (87): magic other than 2, record count or offset deltas that disagree with the header, more
///   than one batch, no batch, a control batch from a producer, a producer id without a base sequence.
/// - INVALID_TIMESTAMP (32): a record timestamp outside the policy, or LogAppendTime set by a producer.
/// - MESSAGE_TOO_LARGE (10): a batch above `maxBatchBytes`.
/// - UNSUPPORTED_COMPRESSION_TYPE (76): a codec the message format or request version cannot carry (zstd in a
///   magic 0/1 message set, KIP-110).
public struct RecordBatchError: Error, Sendable, Hashable, CustomStringConvertible {
    private enum Kind: Hashable, Sendable {
        case corruptMessage
        case invalidRecord
        case invalidTimestamp
        case messageTooLarge
        case unsupportedCompressionType
    }

    private let kind: Kind

    /// What was wrong, for logs and the ProduceResponse `error_message`.
    public let message: String

    /// The 0-based index of the (first) offending record for per-record errors, `nil` when the error concerns the
    /// whole batch.
    public let recordIndex: Int?

    /// One rejected record, as ProduceResponse v8+ reports it in `record_errors` (KIP-467).
    public struct RecordError: Sendable, Hashable, CustomStringConvertible {
        /// The record's 0-based index in its batch.
        public var batchIndex: Int32
        public var message: String

        public init(batchIndex: Int32, message: String) {
            self.batchIndex = batchIndex
            self.message = message
        }

        /// Kafka's `ProduceResponse.RecordError.toString`, which its messages embed.
        public var description: String { "RecordError(batchIndex=\(batchIndex), message='\(message)')" }
    }

    /// The rejected records, where Kafka names them (INVALID_TIMESTAMP, INVALID_RECORD of one record); empty when
    /// the error concerns the whole batch. At most `recordErrorsMax`.
    public let recordErrors: [RecordError]

    /// Bounds the `record_errors` of one batch (and so the response), however many records fail.
    public static let recordErrorsMax = 1000

    private init(_ kind: Kind, _ message: String, recordIndex: Int? = nil, recordErrors: [RecordError] = []) {
        self.kind = kind
        self.message = message
        self.recordIndex = recordIndex ?? recordErrors.first.map { Int($0.batchIndex) }
        self.recordErrors = recordErrors
    }

    /// Kafka's `CORRUPT_MESSAGE` error code.
    public static let corruptMessageCode: Int16 = 2
    /// Kafka's `MESSAGE_TOO_LARGE` error code.
    public static let messageTooLargeCode: Int16 = 10
    /// Kafka's `INVALID_TIMESTAMP` error code.
    public static let invalidTimestampCode: Int16 = 32
    /// Kafka's `INVALID_RECORD` error code.
    public static let invalidRecordCode: Int16 = 87
    /// Kafka's `UNSUPPORTED_COMPRESSION_TYPE` error code.
    public static let unsupportedCompressionTypeCode: Int16 = 76

    /// The Kafka error code to put in the ProduceResponse partition.
    public var kafkaErrorCode: Int16 {
        switch kind {
        case .corruptMessage: return Self.corruptMessageCode
        case .invalidRecord: return Self.invalidRecordCode
        case .invalidTimestamp: return Self.invalidTimestampCode
        case .messageTooLarge: return Self.messageTooLargeCode
        case .unsupportedCompressionType: return Self.unsupportedCompressionTypeCode
        }
    }

    /// Whether a producer may succeed by sending the same batch again. None of these errors is: the bytes are wrong.
    public var isRetriable: Bool { false }

    public var description: String {
        let name: String
        switch kind {
        case .corruptMessage: name = "CORRUPT_MESSAGE"
        case .invalidRecord: name = "INVALID_RECORD"
        case .invalidTimestamp: name = "INVALID_TIMESTAMP"
        case .messageTooLarge: name = "MESSAGE_TOO_LARGE"
        case .unsupportedCompressionType: name = "UNSUPPORTED_COMPRESSION_TYPE"
        }
        if let recordIndex {
            return "\(name) (\(kafkaErrorCode)): record \(recordIndex): \(message)"
        }
        return "\(name) (\(kafkaErrorCode)): \(message)"
    }

    static func corrupt(_ message: String, recordIndex: Int? = nil) -> RecordBatchError {
        RecordBatchError(.corruptMessage, message, recordIndex: recordIndex)
    }

    static func invalidRecord(_ message: String, recordIndex: Int? = nil) -> RecordBatchError {
        RecordBatchError(.invalidRecord, message, recordIndex: recordIndex)
    }

    static func invalidTimestamp(_ message: String, recordIndex: Int? = nil) -> RecordBatchError {
        RecordBatchError(.invalidTimestamp, message, recordIndex: recordIndex)
    }

    /// Kafka's `processRecordErrors` for timestamps out of range: one message, every record named.
    static func invalidTimestamps(_ errors: [RecordError]) -> RecordBatchError {
        RecordBatchError(
            .invalidTimestamp,
            "One or more records have been rejected due to invalid timestamp",
            recordErrors: errors
        )
    }

    /// Kafka's `processRecordErrors` for other per-record errors.
    static func invalidRecords(_ errors: [RecordError]) -> RecordBatchError {
        let shown = errors.prefix(3).map(\.description).joined(separator: ", ")
        return RecordBatchError(
            .invalidRecord,
            "One or more records have been rejected due to \(errors.count) record errors in total, and only showing "
                + "the first three errors at most: [\(shown)]",
            recordErrors: errors
        )
    }

    static func tooLarge(_ message: String) -> RecordBatchError {
        RecordBatchError(.messageTooLarge, message)
    }

    static func unsupportedCompression(_ message: String) -> RecordBatchError {
        RecordBatchError(.unsupportedCompressionType, message)
    }
}
