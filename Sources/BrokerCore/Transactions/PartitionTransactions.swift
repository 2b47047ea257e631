/// One aborted transaction in a partition (Kafka's `AbortedTxn`, what the `.txnindex` holds): the
/// producer, the offset of its first batch in the transaction and the offset of its ABORT marker.
/// A read_committed Fetch returns `(producerId, firstOffset)` for every one that overlaps the
/// fetched range; consumers drop that producer's transactional records from `firstOffset` until
/// they reach the marker.
struct AbortedTransaction: Sendable, Hashable, Comparable {
    var producerId: Int64
    var firstOffset: Int64
    /// The offset of the ABORT marker.
    var lastOffset: Int64

    static func < (lhs: AbortedTransaction, rhs: AbortedTransaction) -> Bool {
        (lhs.lastOffset, lhs.producerId) < (rhs.lastOffset, rhs.producerId)
    }
}

/// The transactions of one partition, after Kafka's `ProducerStateManager`: which producers have a
/// transaction in progress here and where it began (the last stable offset cannot pass it), the
/// transactions whose marker is appended but not yet visible, and the aborted-transactions index.
///
/// Every mutation happens under the partition's state lock, in the order batches are assigned
/// offsets, so the index and the last stable offset always agree with the log.
struct PartitionTransactions: Sendable, Equatable {
    /// A transaction whose marker has been assigned an offset but is not yet visible: it still
    /// holds the last stable offset (Kafka's `unreplicatedTxns`).
    struct Completing: Sendable, Equatable {
        var producerId: Int64
        var firstOffset: Int64
        var markerOffset: Int64
        var isAbort: Bool
    }

    /// Producer id → the first offset of its transaction in progress in this partition.
    private(set) var open: [Int64: Int64] = [:]
    private(set) var completing: [Completing] = []
    /// Ordered by `lastOffset` (markers are appended in offset order).
    private(set) var aborted: [AbortedTransaction] = []

    var isEmpty: Bool { open.isEmpty && completing.isEmpty }

    /// The first offset a read_committed consumer may not read yet: the start of the earliest
    /// transaction that is not decided and visible, or the high watermark.
    func lastStableOffset(highWatermark: Int64) -> Int64 {
        guard !isEmpty else { return highWatermark }
        var stable = highWatermark
        for first in open.values where first < stable { stable = first }
        for entry in completing where entry.firstOffset < stable { stable = entry.firstOffset }
        return stable
    }

    func hasOpenTransaction(_ producerId: Int64) -> Bool { open[producerId] != nil }

    /// A transactional batch of `producerId` at `offset` begins its transaction here unless one is open.
    /// Returns whether it began one (the caller undoes it if the append fails).
    mutating func noteTransactionalBatch(producerId: Int64, at offset: Int64) -> Bool {
        guard open[producerId] == nil else { return false }
        open[producerId] = offset
        return true
    }

    /// Undoes `noteTransactionalBatch` for a batch whose append failed.
    mutating func forgetBegin(producerId: Int64, at offset: Int64) {
        if open[producerId] == offset { open.removeValue(forKey: producerId) }
    }

    /// A marker of `producerId` was assigned `markerOffset`: its open transaction (if it wrote
    /// anything here) is decided. Returns the first offset of that transaction, or nil when the
    /// producer had none open (a partition of the transaction it never wrote to, or a marker
    /// written again after a restart).
    mutating func noteMarker(producerId: Int64, at markerOffset: Int64, isAbort: Bool) -> Int64? {
        guard let first = open.removeValue(forKey: producerId) else { return nil }
        completing.append(
            Completing(producerId: producerId, firstOffset: first, markerOffset: markerOffset, isAbort: isAbort)
        )
        return first
    }

    /// Undoes `noteMarker` for a marker whose append failed: the transaction is open again.
    mutating func forgetMarker(at markerOffset: Int64) {
        guard let index = completing.firstIndex(where: { $0.markerOffset == markerOffset }) else { return }
        let entry = completing.remove(at: index)
        open[entry.producerId] = entry.firstOffset
    }

    /// The high watermark moved to `highWatermark`: transactions whose marker lies below it are
    /// decided for consumers too; aborted ones enter the index.
    mutating func markersVisible(below highWatermark: Int64) {
        guard !completing.isEmpty else { return }
        var kept: [Completing] = []
        for entry in completing {
            if entry.markerOffset < highWatermark {
                if entry.isAbort {
                    insertAborted(
                        AbortedTransaction(
                            producerId: entry.producerId,
                            firstOffset: entry.firstOffset,
                            lastOffset: entry.markerOffset
                        )
                    )
                }
            } else {
                kept.append(entry)
            }
        }
        completing = kept
    }

    /// Adds index entries recovered at startup (persisted, or found by the recovery scan).
    mutating func restore(open recovered: [Int64: Int64], aborted entries: [AbortedTransaction]) {
        open = recovered
        for entry in entries { insertAborted(entry) }
    }

    private mutating func insertAborted(_ entry: AbortedTransaction) {
        if let last = aborted.last, last < entry {
            aborted.append(entry)
            return
        }
        guard !aborted.contains(entry) else { return }
        aborted.append(entry)
        aborted.sort()
    }

    /// The aborted transactions a read of [`fromOffset`, `upToOffset`) must report (Kafka's
    /// `collectAbortedTransactions`): those whose marker is at or after the start and whose first
    /// batch is before the end.
    func abortedTransactions(from fromOffset: Int64, upTo upToOffset: Int64) -> [AbortedTransaction] {
        guard !aborted.isEmpty else { return [] }
        // The first entry whose marker is at or after `fromOffset` (entries are ordered by it).
        var low = 0
        var high = aborted.count
        while low < high {
            let middle = (low + high) / 2
            if aborted[middle].lastOffset < fromOffset { low = middle + 1 } else { high = middle }
        }
        return aborted[low...].filter { $0.firstOffset < upToOffset }
    }

    /// Retention or DeleteRecords moved the log start: entries whose marker is gone are dropped.
    mutating func pruneAborted(below logStartOffset: Int64) {
        guard let first = aborted.first, first.lastOffset < logStartOffset else { return }
        aborted.removeAll { $0.lastOffset < logStartOffset }
    }
}
