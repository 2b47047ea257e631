/// Idempotent-producer bookkeeping for one partition, after Kafka's `ProducerStateManager`: per
/// producer id, the current epoch and the metadata of its last few batches, so a retried batch is
/// answered with its original offset instead of being stored twice, and a gap in sequence numbers
/// is refused with OUT_OF_ORDER_SEQUENCE_NUMBER.
struct ProducerStateTable: Sendable {
    /// Kafka keeps the last five batches per producer: a producer has at most five requests in
    /// flight with idempotence on (`max.in.flight.requests.per.connection` ≤ 5).
    static let cachedBatchCountMax = 5

    struct BatchMetadata: Sendable, Equatable {
        var firstSequence: Int32
        var lastSequence: Int32
        var firstOffset: Int64
        var lastOffset: Int64
    }

    struct Entry: Sendable, Equatable {
        var producerEpoch: Int16
        /// Oldest first; at most `cachedBatchCountMax`.
        var batches: [BatchMetadata]
        var lastUpdateMs: Int64

        var lastSequence: Int32? { batches.last?.lastSequence }
    }

    enum Check: Equatable {
        /// Append the batch; `previous` is what to restore if the append fails.
        case append(previous: Entry?)
        /// A retry of a batch already in the log: answer with its original offsets.
        case duplicate(BatchMetadata)
        case outOfOrderSequence(String)
        case invalidProducerEpoch(String)
    }

    private(set) var entries: [Int64: Entry] = [:]

    /// Decides what to do with a batch from an idempotent producer (Kafka 3.8's
    /// `ProducerAppendInfo.checkProducerEpoch` / `checkSequence` and the duplicate lookup in
    /// `UnifiedLog.analyzeAndValidateProducerState`).
    func check(producerId: Int64, producerEpoch: Int16, firstSequence: Int32, lastSequence: Int32) -> Check {
        guard let entry = entries[producerId] else {
            // No state for this producer (new, or expired): Kafka accepts any sequence.
            return .append(previous: nil)
        }
        if producerEpoch < entry.producerEpoch {
            return .invalidProducerEpoch(
                "producer \(producerId) epoch \(producerEpoch) is older than the current epoch \(entry.producerEpoch)"
            )
        }
        if producerEpoch > entry.producerEpoch {
            // A bumped epoch restarts the sequence at 0.
            guard firstSequence == 0 else {
                return .outOfOrderSequence(
                    "invalid sequence \(firstSequence) for new epoch \(producerEpoch) of producer \(producerId): expected 0"
                )
            }
            return .append(previous: entry)
        }
        if let duplicate = entry.batches.first(where: {
            $0.firstSequence == firstSequence && $0.lastSequence == lastSequence
        }) {
            return .duplicate(duplicate)
        }
        if let last = entry.lastSequence, !Self.isInSequence(last: last, next: firstSequence) {
            return .outOfOrderSequence(
                "out of order sequence \(firstSequence) for producer \(producerId) epoch \(producerEpoch): expected \(Self.nextSequence(after: last))"
            )
        }
        return .append(previous: entry)
    }

    /// Records an accepted batch.
    mutating func record(
        producerId: Int64,
        producerEpoch: Int16,
        batch: BatchMetadata,
        nowMs: Int64
    ) {
        var entry = entries[producerId] ?? Entry(producerEpoch: producerEpoch, batches: [], lastUpdateMs: nowMs)
        if entry.producerEpoch != producerEpoch {
            entry = Entry(producerEpoch: producerEpoch, batches: [], lastUpdateMs: nowMs)
        }
        entry.batches.append(batch)
        if entry.batches.count > Self.cachedBatchCountMax {
            entry.batches.removeFirst(entry.batches.count - Self.cachedBatchCountMax)
        }
        entry.lastUpdateMs = nowMs
        entries[producerId] = entry
    }

    /// Records an end-transaction marker of the producer (Kafka's `appendEndTxnMarker`): a marker
    /// with a newer epoch (a fenced or timed-out transaction) starts the epoch with no batches, so
    /// the old epoch's batches are refused as INVALID_PRODUCER_EPOCH from now on.
    mutating func noteMarker(producerId: Int64, producerEpoch: Int16, nowMs: Int64) {
        var entry = entries[producerId] ?? Entry(producerEpoch: producerEpoch, batches: [], lastUpdateMs: nowMs)
        if producerEpoch > entry.producerEpoch {
            entry = Entry(producerEpoch: producerEpoch, batches: [], lastUpdateMs: nowMs)
        }
        entry.lastUpdateMs = nowMs
        entries[producerId] = entry
    }

    /// Restores a producer's entry to what it was before a batch that then failed to append.
    mutating func restore(producerId: Int64, to previous: Entry?) {
        entries[producerId] = previous
    }

    /// Forgets producers idle for longer than `expirationMs` (Kafka's
    /// `producer.id.expiration.ms`, one day by default).
    mutating func expire(olderThan cutoffMs: Int64) {
        entries = entries.filter { $0.value.lastUpdateMs >= cutoffMs }
    }

    static func isInSequence(last: Int32, next: Int32) -> Bool {
        next == nextSequence(after: last)
    }

    /// Sequence numbers wrap from Int32.max to 0.
    static func nextSequence(after sequence: Int32) -> Int32 {
        sequence == Int32.max ? 0 : sequence + 1
    }

    /// The sequence of the batch's last record, wrapping like the producer does.
    static func lastSequence(first: Int32, lastOffsetDelta: Int32) -> Int32 {
        let sum = Int64(first) + Int64(lastOffsetDelta)
        return Int32(truncatingIfNeeded: sum > Int64(Int32.max) ? sum - Int64(Int32.max) - 1 : sum)
    }
}
