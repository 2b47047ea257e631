internal import CKStore

/// A failed storage operation: a kstore.h status code, the backend's message and what the host was
/// doing. Errors are values the broker maps to Kafka error codes; they never trap.
public struct StorageError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The closed list of kstore.h status codes (ABI version 1), plus codes a newer backend might
    /// return that this host does not know.
    public enum Code: Sendable, Hashable {
        case notFound, outOfRange, corrupt, noSpace, io, unsupported, busy, invalidArgument, exists, noMemory
        case unknown(Int32)

        /// The code for a kstore.h status (`KSTORE_ERR_*`); `KSTORE_OK` has no code and maps to
        /// `.unknown(0)`.
        public init(status: Int32) {
            switch status {
            case KSTORE_ERR_NOT_FOUND: self = .notFound
            case KSTORE_ERR_OUT_OF_RANGE: self = .outOfRange
            case KSTORE_ERR_CORRUPT: self = .corrupt
            case KSTORE_ERR_NO_SPACE: self = .noSpace
            case KSTORE_ERR_IO: self = .io
            case KSTORE_ERR_UNSUPPORTED: self = .unsupported
            case KSTORE_ERR_BUSY: self = .busy
            case KSTORE_ERR_INVALID_ARGUMENT: self = .invalidArgument
            case KSTORE_ERR_EXISTS: self = .exists
            case KSTORE_ERR_NO_MEMORY: self = .noMemory
            default: self = .unknown(status)
            }
        }

        /// The kstore.h status this code stands for.
        public var status: Int32 {
            switch self {
            case .notFound: KSTORE_ERR_NOT_FOUND
            case .outOfRange: KSTORE_ERR_OUT_OF_RANGE
            case .corrupt: KSTORE_ERR_CORRUPT
            case .noSpace: KSTORE_ERR_NO_SPACE
            case .io: KSTORE_ERR_IO
            case .unsupported: KSTORE_ERR_UNSUPPORTED
            case .busy: KSTORE_ERR_BUSY
            case .invalidArgument: KSTORE_ERR_INVALID_ARGUMENT
            case .exists: KSTORE_ERR_EXISTS
            case .noMemory: KSTORE_ERR_NO_MEMORY
            case .unknown(let status): status
            }
        }

        /// The status's name from kstore.h ("KSTORE_ERR_IO"), "KSTORE_UNKNOWN" for unknown codes.
        public var statusName: String { String(cString: kstore_status_name(self.status)) }
    }

    public var code: Code
    /// What failed, in words: the operation and log, the status name and the backend's last_error
    /// text.
    public var message: String
    /// Whether the same call may succeed later without the host changing anything but time or free
    /// space (`kstore_status_is_retryable`).
    public var isRetriable: Bool
    /// Acknowledged data is damaged (`KSTORE_ERR_CORRUPT`).
    public var isDataLoss: Bool

    public init(code: Code, message: String) {
        self.code = code
        self.message = message
        self.isRetriable = kstore_status_is_retryable(code.status) != 0
        self.isDataLoss = code == .corrupt
    }

    public var description: String { "\(self.code.statusName): \(self.message)" }
}
