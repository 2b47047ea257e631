extension Broker {
    /// ListOffsets timestamp -4 (KIP-405): the first offset still in local storage.
    static let earliestLocalTimestamp: Int64 = -4
    /// ListOffsets timestamp -5 (KIP-1005, v8): the highest offset copied to tiered storage.
    static let latestTieredTimestamp: Int64 = -5

    /// ListOffsets v0's `old_style_offsets` (Kafka's `legacyFetchOffsetsBefore`). Kafka lists each
    /// segment's base offset with its file's modification time, then the log end offset stamped
    /// now, and answers at most `maxCount` of them, newest first, from the latest one at or before
    /// `timestamp` (-1: the last, -2: the first). Fjord's backends show no segments: the log counts
    /// as one segment, last modified when its newest record was written. A consumer (replica id
    /// -1) is not shown offsets past the high watermark: the high watermark replaces them.
    func legacyOffsets(
        before timestamp: Int64,
        maxCount: Int32,
        fromConsumer: Bool,
        _ snapshot: Partition.Snapshot
    ) -> [Int64] {
        let now = nowMs
        var entries: [(offset: Int64, modifiedMs: Int64)] = [
            (snapshot.logStartOffset, snapshot.maxTimestamp >= 0 ? snapshot.maxTimestamp : now)
        ]
        if snapshot.logEndOffset > snapshot.logStartOffset { entries.append((snapshot.logEndOffset, now)) }
        let startIndex: Int
        switch timestamp {
        case -1:
            startIndex = entries.count - 1
        case -2:
            startIndex = 0
        default:
            startIndex = entries.lastIndex { $0.modifiedMs <= timestamp } ?? -1
        }
        let count = max(0, min(Int(maxCount), startIndex + 1))
        var offsets = (0..<count).map { entries[startIndex - $0].offset }
        if fromConsumer, offsets.contains(where: { $0 > snapshot.highWatermark }) {
            offsets = [snapshot.highWatermark] + offsets.drop { $0 > snapshot.highWatermark }
        }
        return offsets
    }
}
