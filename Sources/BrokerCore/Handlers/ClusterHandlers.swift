import KafkaMessages
import StorageHost

/// DescribeCluster and DescribeLogDirs: what the cluster (this one broker) and its log directory
/// hold, as `kafka-log-dirs` and AdminClient.describeCluster ask for it.
extension Broker {
    /// Kafka's `DescribeClusterRequest` endpoint types.
    static let brokerEndpointType: Int8 = 1

    /// DescribeCluster: this broker, which is also the controller. Asked for controller endpoints
    /// (v1, type 2), a broker listener answers UNSUPPORTED_ENDPOINT_TYPE, as Kafka's brokers do.
    func handleDescribeCluster(_ request: DescribeClusterRequest, _ context: Request) -> DescribeClusterResponse {
        var response = DescribeClusterResponse(
            throttleTimeMs: 0,
            errorCode: ErrorCode.none.rawValue,
            errorMessage: nil,
            endpointType: Self.brokerEndpointType,
            clusterId: clusterId,
            controllerId: configuration.nodeId,
            brokers: [
                .init(
                    brokerId: configuration.nodeId,
                    host: configuration.advertisedHost,
                    port: configuration.advertisedPort,
                    rack: nil
                )
            ],
            clusterAuthorizedOperations: request.includeClusterAuthorizedOperations
                ? Self.clusterAuthorizedOperations : Int32.min
        )
        if context.version >= 1, request.endpointType != Self.brokerEndpointType {
            response.errorCode = ErrorCode.unsupportedEndpointType.rawValue
            response.errorMessage =
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER"
            response.brokers = []
            response.controllerId = -1
        }
        return response
    }

    /// DescribeLogDirs: the one log directory (the data directory) with every requested partition
    /// (all when `topics` is null) and its size in bytes as the backend reports it; v4 adds the
    /// volume's size and free space. Requested topics that do not exist are left out, as in Kafka.
    func handleDescribeLogDirs(_ request: DescribeLogDirsRequest, _ context: Request) -> DescribeLogDirsResponse {
        var wanted: [(Topic, [Partition])] = []
        if let topics = request.topics {
            for entry in topics {
                guard let topic = registry.topic(named: entry.topic) else { continue }
                let partitions = entry.partitions.compactMap { topic.partition($0) }
                if !partitions.isEmpty { wanted.append((topic, partitions)) }
            }
        } else {
            wanted = registry.all.map { ($0, $0.partitions) }
        }
        var result = DescribeLogDirsResponse.DescribeLogDirsResult(
            errorCode: ErrorCode.none.rawValue,
            logDir: configuration.logDirectory ?? "./data",
            topics: wanted.map { topic, partitions in
                .init(
                    name: topic.name,
                    partitions: partitions.map { partition in
                        // state() never blocks (kstore.h); a failed log reports 0 bytes.
                        let byteCount = (try? partition.log.state().byteCount) ?? 0
                        return .init(
                            partitionIndex: partition.index,
                            partitionSize: Int64(clamping: byteCount),
                            offsetLag: 0,
                            isFutureKey: false
                        )
                    }
                )
            }
        )
        if let usage = configuration.logDirectoryUsage() {
            result.totalBytes = usage.totalBytes
            result.usableBytes = usage.usableBytes
        }
        return DescribeLogDirsResponse(throttleTimeMs: 0, errorCode: ErrorCode.none.rawValue, results: [result])
    }
}
