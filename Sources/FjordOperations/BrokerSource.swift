import BrokerCore
import BrokerServer

/// Partitions and consumer groups, read from the broker at scrape time (Partition snapshots and
/// the group coordinator's state), so appends and commits pay nothing for them.
struct BrokerSource: ScrapeSource {
    let broker: Broker

    func collect(into series: ScrapeSeries) {
        for partition in broker.observePartitions() {
            let labels = [("topic", partition.topic), ("partition", String(partition.partition))]
            series.gauge(
                "fjord_partition_log_start_offset",
                help: "First offset that can be read (ListOffsets earliest).",
                labels: labels,
                Double(partition.logStartOffset)
            )
            series.gauge(
                "fjord_partition_log_end_offset",
                help: "Next offset to be assigned, appends in flight included.",
                labels: labels,
                Double(partition.logEndOffset)
            )
            series.gauge(
                "fjord_partition_high_watermark",
                help: "Offset up to which consumers can read (ListOffsets latest).",
                labels: labels,
                Double(partition.highWatermark)
            )
            if let size = partition.sizeBytes {
                series.gauge(
                    "fjord_partition_size_bytes",
                    help: "Bytes of the partition's record batches in storage.",
                    labels: labels,
                    Double(size)
                )
            }
            series.gauge(
                "fjord_partition_online",
                help: "1 while the partition serves reads and writes, 0 after a storage failure.",
                labels: labels,
                partition.isOnline ? 1 : 0
            )
        }
        for group in broker.observeGroups() {
            series.gauge(
                "fjord_group_state",
                help: "1 for the consumer group's current state (the state label).",
                labels: [("group", group.groupId), ("state", group.state)],
                1
            )
            series.gauge(
                "fjord_group_members",
                help: "Members of the consumer group.",
                labels: [("group", group.groupId)],
                Double(group.memberCount)
            )
            var total: Int64 = 0
            for committed in group.committed {
                let labels = [
                    ("group", group.groupId), ("topic", committed.topic), ("partition", String(committed.partition)),
                ]
                series.gauge(
                    "fjord_group_committed_offset",
                    help: "Offset the consumer group committed for the partition.",
                    labels: labels,
                    Double(committed.committedOffset)
                )
                if let lag = committed.lag {
                    total += lag
                    series.gauge(
                        "fjord_group_lag",
                        help: "High watermark minus the committed offset: records the group has yet to consume.",
                        labels: labels,
                        Double(lag)
                    )
                }
            }
            series.gauge(
                "fjord_group_lag_sum",
                help: "The consumer group's lag over all its committed partitions.",
                labels: [("group", group.groupId)],
                Double(total)
            )
        }
    }
}

/// The Kafka listener's connection counters.
struct ServerSource: ScrapeSource {
    let server: KafkaServer

    func collect(into series: ScrapeSeries) {
        let statistics = server.statistics
        series.gauge("fjord_connections_open", help: "Client connections open now.", Double(statistics.openConnections))
        series.counter(
            "fjord_connections_accepted_total",
            help: "Client connections accepted.",
            total: Double(statistics.acceptedConnections)
        )
        series.counter(
            "fjord_connections_refused_total",
            help: "Client connections closed at once: at max.connections(.per.ip), or while shutting down.",
            total: Double(statistics.refusedConnections)
        )
        series.counter(
            "fjord_connections_evicted_total",
            help: "Connections that had sent no request, closed to admit a new one at max.connections.",
            total: Double(statistics.evictedConnections)
        )
        series.gauge(
            "fjord_request_memory_bytes",
            help: "Bytes of requests read and not yet answered (queued.max.request.bytes bounds it).",
            Double(statistics.requestMemoryBytes)
        )
        series.gauge(
            "fjord_response_memory_bytes",
            help: "Bytes of responses built and not yet written.",
            Double(statistics.responseMemoryBytes)
        )
    }
}
