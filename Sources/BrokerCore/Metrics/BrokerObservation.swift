/// One partition as the metrics exporter sees it at scrape time: read from the partition object
/// (the single source of truth for its offsets, DESIGN §4), never updated per append.
public struct PartitionObservation: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var logStartOffset: Int64
    /// The next offset to be assigned (appends in flight included).
    public var logEndOffset: Int64
    public var highWatermark: Int64
    /// Bytes of the log's entries (the backend's state), nil when the log cannot say (closed).
    public var sizeBytes: UInt64?
    public var isOnline: Bool
}

/// One consumer group at scrape time: its state, members and, per committed partition, the lag
/// (the partition's high watermark minus the committed offset).
public struct GroupObservation: Sendable, Hashable {
    public struct CommittedPartition: Sendable, Hashable {
        public var topic: String
        public var partition: Int32
        public var committedOffset: Int64
        /// nil when the partition no longer exists.
        public var lag: Int64?
    }

    public var groupId: String
    /// Kafka's state name: Empty, PreparingRebalance, CompletingRebalance, Stable, Dead.
    public var state: String
    public var memberCount: Int
    public var committed: [CommittedPartition]
}

extension Broker {
    /// Every partition's offsets and size, sorted by topic and partition. Cheap: it reads the
    /// partitions' in-memory state and the backends' state (which never blocks, kstore.h).
    public func observePartitions() -> [PartitionObservation] {
        registry.all.flatMap { topic in
            topic.partitions.map { partition in
                let snapshot = partition.snapshot
                return PartitionObservation(
                    topic: topic.name,
                    partition: partition.index,
                    logStartOffset: snapshot.logStartOffset,
                    logEndOffset: snapshot.logEndOffset,
                    highWatermark: snapshot.highWatermark,
                    sizeBytes: try? partition.log.state().byteCount,
                    isOnline: snapshot.isOnline
                )
            }
        }
    }

    /// Every consumer group (sorted by id) with its committed offsets and their lag.
    public func observeGroups() -> [GroupObservation] {
        groupCoordinator.list(statesFilter: []).sorted { $0.groupId < $1.groupId }.map { overview in
            let summary = groupCoordinator.describe(groupId: overview.groupId)
            let offsets = groupCoordinator.fetchOffsets(groupId: overview.groupId, partitions: nil)
            let committed = offsets.keys.sorted().map { key in
                // Cannot be nil: `key` comes from the dictionary.
                let offset = offsets[key]!.offset
                let highWatermark = registry.topic(named: key.topic)?.partition(key.partition)?.snapshot.highWatermark
                return GroupObservation.CommittedPartition(
                    topic: key.topic,
                    partition: key.partition,
                    committedOffset: offset,
                    lag: highWatermark.map { max(0, $0 - offset) }
                )
            }
            return GroupObservation(
                groupId: overview.groupId,
                state: overview.state,
                memberCount: summary.members.count,
                committed: committed
            )
        }
    }
}
