import KafkaMessages

/// The states of a transactional id (Kafka's `TransactionState`, with its ids, which are what the
/// transaction log stores and its names, which DescribeTransactions and ListTransactions report).
enum TransactionPhase: UInt8, Sendable, CaseIterable {
    case empty = 0
    case ongoing = 1
    case prepareCommit = 2
    case prepareAbort = 3
    case completeCommit = 4
    case completeAbort = 5
    /// Being expired: a tombstone is being written (never stored).
    case dead = 6

    var name: String {
        switch self {
        case .empty: "Empty"
        case .ongoing: "Ongoing"
        case .prepareCommit: "PrepareCommit"
        case .prepareAbort: "PrepareAbort"
        case .completeCommit: "CompleteCommit"
        case .completeAbort: "CompleteAbort"
        case .dead: "Dead"
        }
    }

    /// Kafka also names PrepareEpochFence, a state Fjord never enters (it writes the fenced
    /// PrepareAbort directly); ListTransactions accepts the name as a filter that matches nothing.
    static let knownNames: Set<String> = Set(allCases.map(\.name)).union(["PrepareEpochFence"])

    /// A transaction is under way: markers are owed to its partitions, now or later.
    var isUndecided: Bool { self == .ongoing || self == .prepareCommit || self == .prepareAbort }

    var isPreparing: Bool { self == .prepareCommit || self == .prepareAbort }

    /// Kafka's `isExpirationAllowed`: only ids without a transaction under way may be forgotten.
    var allowsExpiration: Bool { self == .empty || self == .completeCommit || self == .completeAbort }
}

/// Everything the coordinator knows about one transactional id (Kafka's `TransactionMetadata`):
/// one record of the transaction log holds one of these in full, so replay keeps the last one.
struct TransactionMetadata: Sendable, Equatable {
    var transactionalId: String
    var producerId: Int64
    /// The producer id before the last rotation (epoch exhaustion), for retried InitProducerIds.
    var lastProducerId: Int64
    var producerEpoch: Int16
    /// The epoch before the last bump a client asked for (KIP-360), so a retry of that
    /// InitProducerId gets the same answer instead of being fenced; -1 once another producer
    /// initialized the id.
    var lastProducerEpoch: Int16
    var timeoutMs: Int32
    var phase: TransactionPhase
    /// The partitions in the transaction, each with the partition's log end offset when it
    /// joined: every batch of this transaction in that partition lies at or after it, and the
    /// producer's previous marker there before it (what recovery scans from).
    var partitions: [TopicPartition: Int64]
    /// The consumer groups whose offsets are in the transaction (AddOffsetsToTxn).
    var groups: Set<String>
    /// When the transaction began (its timeout counts from here); -1 without one.
    var startTimestampMs: Int64
    var lastUpdateTimestampMs: Int64

    /// Kafka's `isEpochExhausted`: the epoch the fencing of a zombie would need is not there.
    static func isEpochExhausted(_ epoch: Int16) -> Bool { epoch >= Int16.max - 1 }

    /// A new transactional id: a producer id and no epoch yet (the first InitProducerId makes it 0).
    static func new(transactionalId: String, producerId: Int64, timeoutMs: Int32, nowMs: Int64) -> TransactionMetadata {
        TransactionMetadata(
            transactionalId: transactionalId,
            producerId: producerId,
            lastProducerId: -1,
            producerEpoch: -1,
            lastProducerEpoch: -1,
            timeoutMs: timeoutMs,
            phase: .empty,
            partitions: [:],
            groups: [],
            startTimestampMs: -1,
            lastUpdateTimestampMs: nowMs
        )
    }

    /// The same id in another phase at `nowMs` (Kafka's `prepareTransitionTo`: the current producer
    /// id becomes the last one).
    func moved(to phase: TransactionPhase, nowMs: Int64) -> TransactionMetadata {
        var next = self
        next.phase = phase
        next.lastProducerId = producerId
        next.lastUpdateTimestampMs = nowMs
        return next
    }

    /// When the transaction times out and the coordinator aborts it (Kafka aborts it once
    /// `start + timeout < now`).
    var timeoutDeadlineMs: Int64? {
        phase == .ongoing && startTimestampMs >= 0 ? startTimestampMs + Int64(timeoutMs) + 1 : nil
    }
}

/// A producer id and epoch a client sends with InitProducerId v3+ to resume after an error.
struct ProducerIdAndEpoch: Sendable, Equatable {
    var producerId: Int64
    var producerEpoch: Int16
}
