import KafkaMessages
import KafkaRecords
import NIOCore

extension Broker {
    /// Decompressed batches are validated record by record; this bounds what one batch may
    /// inflate to (a decompression bomb is refused as CORRUPT_MESSAGE, not allocated).
    static let decompressedBatchBytesMax = 256 << 20

    private enum PartitionResult {
        case done(AppendOutcome)
        case pending(PendingAppend)
    }

    /// Produce: validate every batch, assign offsets and submit the appends in arrival order,
    /// pass the connection's turn on, then wait for the appends (acks=1) or their sync (acks=all).
    func handleProduce(_ request: ProduceRequest, _ context: Request, turn: Turn) async -> RequestOutcome {
        let acks = request.acks
        let nowMs = self.nowMs
        var results: [(name: String, partitions: [(index: Int32, result: PartitionResult)])] = []
        results.reserveCapacity(request.topicData.count)

        for topicData in request.topicData {
            var partitionResults: [(index: Int32, result: PartitionResult)] = []
            partitionResults.reserveCapacity(topicData.partitionData.count)
            func failAll(_ code: ErrorCode, _ message: String?) {
                for partitionData in topicData.partitionData {
                    partitionResults.append((partitionData.index, .done(.failure(code, message))))
                }
            }
            guard acks == 0 || acks == 1 || acks == -1 else {
                failAll(.invalidRequiredAcks, "acks must be -1, 0 or 1, not \(acks)")
                results.append((topicData.name, partitionResults))
                continue
            }
            guard let topic = await produceTarget(named: topicData.name) else {
                let code: ErrorCode =
                    TopicName.problem(with: topicData.name) != nil ? .invalidTopicException : .unknownTopicOrPartition
                failAll(code, nil)
                results.append((topicData.name, partitionResults))
                continue
            }
            for partitionData in topicData.partitionData {
                partitionResults.append(
                    (partitionData.index, submit(partitionData, to: topic, acks: acks, nowMs: nowMs))
                )
            }
            results.append((topicData.name, partitionResults))
        }
        // Every append is submitted in order: later requests of this connection may proceed.
        turn.release()

        var response = ProduceResponse(responses: [], throttleTimeMs: 0)
        response.responses.reserveCapacity(results.count)
        var firstError: String?
        for (name, partitions) in results {
            var topicResponse = ProduceResponse.TopicProduceResponse(name: name, partitionResponses: [])
            topicResponse.partitionResponses.reserveCapacity(partitions.count)
            for (index, result) in partitions {
                let outcome: AppendOutcome
                switch result {
                case .done(let done): outcome = done
                case .pending(let pending): outcome = await pending.wait()
                }
                if outcome.errorCode != .none, firstError == nil {
                    firstError = "\(name)-\(index): \(outcome.errorCode) \(outcome.errorMessage ?? "")"
                }
                topicResponse.partitionResponses.append(
                    .init(
                        index: index,
                        errorCode: outcome.errorCode.rawValue,
                        baseOffset: outcome.baseOffset,
                        logAppendTimeMs: -1,
                        logStartOffset: outcome.logStartOffset,
                        recordErrors: outcome.errorCode == .invalidRecord
                            ? [.init(batchIndex: 0, batchIndexErrorMessage: outcome.errorMessage)] : [],
                        errorMessage: outcome.errorMessage
                    )
                )
            }
            response.responses.append(topicResponse)
        }
        if acks == 0 {
            // acks=0 has no response; Kafka reports a failure by closing the connection.
            if let firstError { return .close(reason: "acks=0 produce failed: \(firstError)") }
            return .noResponse
        }
        return respond(response, to: context)
    }

    /// The topic a Produce writes to, auto-creating it when the broker allows that.
    private func produceTarget(named name: String) async -> Topic? {
        if let topic = registry.topic(named: name) { return topic }
        guard configuration.autoCreateTopics, TopicName.problem(with: name) == nil else { return nil }
        do {
            return try await metadata.createTopicIfAbsent(name: name, partitionCount: configuration.defaultPartitions)
        } catch {
            logger.error("auto-creating topic failed", metadata: ["topic": "\(name)", "error": "\(error)"])
            return nil
        }
    }

    private func submit(
        _ partitionData: ProduceRequest.PartitionProduceData,
        to topic: Topic,
        acks: Int16,
        nowMs: Int64
    ) -> PartitionResult {
        guard let partition = topic.partition(partitionData.index) else {
            return .done(.failure(.unknownTopicOrPartition, "partition \(partitionData.index) does not exist"))
        }
        guard let records = partitionData.records, records.readableBytes > 0 else {
            return .done(.failure(.invalidRecord, "produce request without records"))
        }
        if acks == -1, topic.settings.minInsyncReplicas > 1 {
            return .done(
                .failure(
                    .notEnoughReplicas,
                    "min.insync.replicas=\(topic.settings.minInsyncReplicas) but Fjord keeps one replica"
                )
            )
        }
        let policy = RecordBatchValidationPolicy(
            maxBatchBytes: Int(topic.settings.maxMessageBytes),
            maxDecompressedBytes: Self.decompressedBatchBytesMax,
            timestampBeforeMaxMs: topic.settings.timestampBeforeMaxMs,
            timestampAfterMaxMs: topic.settings.timestampAfterMaxMs,
            nowMs: nowMs
        )
        let validated: ValidatedBatch
        do {
            validated = try RecordBatchValidator.validateProduceRecords(records, policy: policy)
        } catch {
            return .done(.failure(ErrorCode(rawValue: error.kafkaErrorCode), error.message))
        }
        if validated.header.isTransactional {
            return .done(.failure(.invalidRecord, "transactional batches are not supported by Fjord"))
        }
        switch partition.submit(batch: records, validated: validated, acks: acks, nowMs: nowMs) {
        case .done(let outcome): return .done(outcome)
        case .pending(let pending): return .pending(pending)
        }
    }
}
