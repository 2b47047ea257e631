import NIOCore

/// One record header: a UTF-8 key and a nullable value (KIP-82).
public struct RecordHeader: Sendable, Equatable {
    public var key: String
    public var value: ByteBuffer?

    public init(key: String, value: ByteBuffer?) {
        self.key = key
        self.value = value
    }
}

/// One record of a batch, as a consumer sees it.
public struct Record: Sendable, Equatable {
    /// The record's position in its batch: its offset is the batch's `baseOffset + offsetDelta`.
    public var offsetDelta: Int32
    /// The absolute timestamp in ms (the batch's `baseTimestamp` + the record's delta); -1 for none.
    public var timestamp: Int64
    public var key: ByteBuffer?
    public var value: ByteBuffer?
    public var headers: [RecordHeader]
    /// The record-level attributes byte (unused by Kafka so far, kept as read).
    public var attributes: Int8

    public init(
        offsetDelta: Int32 = 0,
        timestamp: Int64,
        key: ByteBuffer?,
        value: ByteBuffer?,
        headers: [RecordHeader] = [],
        attributes: Int8 = 0
    ) {
        self.offsetDelta = offsetDelta
        self.timestamp = timestamp
        self.key = key
        self.value = value
        self.headers = headers
        self.attributes = attributes
    }
}
