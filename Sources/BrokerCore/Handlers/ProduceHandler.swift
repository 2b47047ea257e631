import KafkaMessages
import KafkaRecords
import NIOCore
import StorageHost
import Synchronization

extension Broker {
    /// Decompressed batches are validated record by record; this bounds what one batch may
    /// inflate to (a decompression bomb is refused as CORRUPT_MESSAGE, not allocated).
    static let decompressedBatchBytesMax = 256 << 20

    /// Produce. The fast path runs to completion on the transport's thread: validate every batch,
    /// assign offsets and call the backend's append for each partition, then (acks=all on a
    /// shared-sync backend) one sync for all of them. The response is built when the last batch is
    /// visible — at once on the memory backend, from the backend's completion thread otherwise.
    ///
    /// Two cases leave the transport's thread, holding the connection's order until the appends
    /// are submitted: a blocking backend (file), whose calls run on one storage thread per request,
    /// and a request naming a topic that must be created first.
    func handleProduce(_ request: ProduceRequest, _ context: Request) -> RequestReply {
        let toCreate = topicsToAutoCreate(for: request)
        if toCreate.isEmpty && !storage.usesBlockingPool {
            let collector = ProduceCollector(request, context, broker: self, pending: PendingOutcome())
            submitProduce(request, version: context.version, collector)
            if let ready = collector.pending.completedBuilder { return .now(ready()) }
            return .later(collector.pending)
        }
        let collector = ProduceCollector(request, context, broker: self, pending: PendingOutcome(holdsOrder: true))
        if toCreate.isEmpty {
            storage.runOnStorageThread { self.submitProduce(request, version: context.version, collector) }
        } else {
            Task {
                for name in toCreate { await self.autoCreate(name) }
                if self.storage.usesBlockingPool {
                    self.storage.runOnStorageThread { self.submitProduce(request, version: context.version, collector) }
                } else {
                    self.submitProduce(request, version: context.version, collector)
                }
            }
        }
        return .later(collector.pending)
    }

    /// Topics the request names that do not exist and may be auto-created.
    private func topicsToAutoCreate(for request: ProduceRequest) -> [String] {
        guard configuration.autoCreateTopics else { return [] }
        var names: [String] = []
        for topicData in request.topicData
        where registry.topic(named: topicData.name) == nil && TopicName.problem(with: topicData.name) == nil
            && !names.contains(topicData.name)
        {
            names.append(topicData.name)
        }
        return names
    }

    private func autoCreate(_ name: String) async {
        do {
            _ = try await metadata.createTopicIfAbsent(name: name, partitionCount: configuration.defaultPartitions)
        } catch {
            logger.error("auto-creating topic failed", metadata: ["topic": "\(name)", "error": "\(error)"])
        }
    }

    /// Submits every partition's batch in request order, then the shared sync, then releases the
    /// connection's order. Every slot of `collector` gets exactly one outcome.
    private func submitProduce(_ request: ProduceRequest, version: Int16, _ collector: ProduceCollector) {
        let acks = request.acks
        let nowMs = self.nowMs
        let submission = ProduceSubmission(
            acks: acks,
            nowMs: nowMs,
            transactionalId: request.transactionalId,
            version: version
        )
        var rewriteBudget = Self.recompressedBytesPerRequestMax
        var slot = 0
        var sharedSync: [(Partition, Int64)] = []
        var tally = ProduceTally()
        for topicData in request.topicData {
            let topic = registry.topic(named: topicData.name)
            for partitionData in topicData.partitionData {
                let sink = AppendSink(collector: collector, slot: slot)
                slot += 1
                guard acks == 0 || acks == 1 || acks == -1 else {
                    sink.deliver(.failure(.invalidRequiredAcks, "acks must be -1, 0 or 1, not \(acks)"))
                    continue
                }
                guard let topic else {
                    let code: ErrorCode =
                        TopicName.problem(with: topicData.name) != nil
                        ? .invalidTopicException : .unknownTopicOrPartition
                    sink.deliver(.failure(code, nil))
                    continue
                }
                guard
                    let partition = submit(
                        partitionData,
                        to: topic,
                        submission,
                        sink: sink,
                        rewriteBudget: &rewriteBudget,
                        &tally
                    )
                else {
                    continue
                }
                if !sharedSync.contains(where: { $0.0 === partition }) {
                    sharedSync.append((partition, 0))
                }
            }
        }
        // Read each partition's end after all appends: the one sync covers them all.
        for index in sharedSync.indices { sharedSync[index].1 = sharedSync[index].0.submittedEnd }
        Partition.submitSharedSync(covering: sharedSync)
        collector.pending.releaseOrder()
        if metrics.isEnabled { metrics.produced(tally) }
        collector.submissionFinished()
    }

    /// Validates and submits one partition's batch; returns the partition when the batch waits
    /// for the request's shared sync.
    private func submit(
        _ partitionData: ProduceRequest.PartitionProduceData,
        to topic: Topic,
        _ submission: ProduceSubmission,
        sink: AppendSink,
        rewriteBudget: inout Int,
        _ tally: inout ProduceTally
    ) -> Partition? {
        let acks = submission.acks
        let nowMs = submission.nowMs
        guard let partition = topic.partition(partitionData.index) else {
            sink.deliver(.failure(.unknownTopicOrPartition, "partition \(partitionData.index) does not exist"))
            return nil
        }
        if topic.isInternal {
            // Kafka's ReplicaManager: clients never append to internal topics.
            sink.deliver(.failure(.invalidTopicException, "Cannot append to internal topic \(topic.name)"))
            return nil
        }
        guard let records = partitionData.records, records.readableBytes > 0 else {
            sink.deliver(.failure(.invalidRecord, "produce request without records"))
            return nil
        }
        if acks == -1, topic.settings.minInsyncReplicas > 1 {
            sink.deliver(
                .failure(
                    .notEnoughReplicas,
                    "min.insync.replicas=\(topic.settings.minInsyncReplicas) but Fjord keeps one replica"
                )
            )
            return nil
        }
        let policy = RecordBatchValidationPolicy(
            maxBatchBytes: Int(topic.settings.maxMessageBytes),
            maxDecompressedBytes: Self.decompressedBatchBytesMax,
            timestampBeforeMaxMs: topic.settings.timestampBeforeMaxMs,
            timestampAfterMaxMs: topic.settings.timestampAfterMaxMs,
            nowMs: nowMs
        )
        var stored = records
        let validated: ValidatedBatch
        do {
            if submission.version <= 2 && LegacyMessageSet.magic(of: records) != 2 {
                // Produce v0-2 carries a magic 0/1 message set: stored as one v2 batch (Kafka's up-conversion).
                (validated, stored) = try upConvert(
                    records,
                    for: topic.settings,
                    policy,
                    budget: &rewriteBudget,
                    sink: sink
                )
            } else if topic.settings.rewritesBatches {
                // Recompression or LogAppendTime: CPU work on this path only for topics that ask for it.
                (validated, stored) = try rewrite(
                    records,
                    for: topic.settings,
                    policy,
                    budget: &rewriteBudget,
                    sink: sink
                )
            } else {
                validated = try RecordBatchValidator.validateProduceRecords(records, policy: policy)
            }
        } catch {
            if !error.recordErrors.isEmpty { sink.noteRecordErrors(error.recordErrors) }
            sink.deliver(.failure(ErrorCode(rawValue: error.kafkaErrorCode), error.message))
            return nil
        }
        tally.batches += 1
        tally.records += Int(validated.header.recordCount)
        tally.bytes += validated.byteCount
        // Only a transactional batch is checked with the transaction coordinator (by the partition,
        // under its append order); nothing is built for the others.
        let verifier: (any TransactionVerifier)? =
            validated.header.isTransactional
            ? submission.transactionalId.map {
                ProduceTransactionVerifier(
                    coordinator: transactionCoordinator,
                    transactionalId: $0,
                    answersTransactionAbortable: submission.version >= 11
                )
            }
            : nil
        switch partition.submit(
            batch: stored,
            validated: validated,
            acks: acks,
            nowMs: nowMs,
            sink: sink,
            verifier: verifier
        ) {
        case .submitted: return nil
        case .awaitsSharedSync: return partition
        }
    }
}

/// What every partition of one Produce request is submitted with.
struct ProduceSubmission {
    var acks: Int16
    var nowMs: Int64
    var transactionalId: String?
    /// The request's version: v0-2 carry magic 0/1 message sets, v11+ may be answered TRANSACTION_ABORTABLE.
    var version: Int16
}

/// The outcomes of one Produce request's batches, one slot per partition in request order. When
/// the last slot is filled (on whatever thread completes it) the request's pending outcome is
/// completed with a builder that encodes the response on the transport's thread.
final class ProduceCollector: AppendOutcomeCollector {
    private struct State {
        var outcomes: [AppendOutcome?]
        /// Unfilled slots, plus one until the submission is finished (slots can fill while it runs).
        var remaining: Int
        /// What some slots' responses carry besides their outcome (LogAppendTime, record errors).
        var notes: [Int: SlotNote] = [:]
    }

    /// The append time of a LogAppendTime topic's batch (answered as `log_append_time_ms`) and the
    /// records a rejected batch was rejected for (`record_errors`, KIP-467).
    struct SlotNote {
        var logAppendTimeMs: Int64 = -1
        var recordErrors: [RecordBatchError.RecordError] = []
    }

    let pending: PendingOutcome
    private let request: ProduceRequest
    private let context: Broker.Request
    private let broker: Broker
    private let state: Mutex<State>

    init(_ request: ProduceRequest, _ context: Broker.Request, broker: Broker, pending: PendingOutcome) {
        let count = request.topicData.reduce(0) { $0 + $1.partitionData.count }
        self.request = request
        self.context = context
        self.broker = broker
        self.pending = pending
        self.state = Mutex(State(outcomes: Array(repeating: nil, count: count), remaining: count + 1))
    }

    func deliver(_ outcome: AppendOutcome, slot: Int) {
        let done = state.withLock { state -> Bool in
            precondition(state.outcomes[slot] == nil, "two outcomes for produce slot \(slot)")
            state.outcomes[slot] = outcome
            state.remaining -= 1
            return state.remaining == 0
        }
        if done { finish() }
    }

    /// Records what the slot's response carries besides its outcome; called before the outcome.
    func note(slot: Int, _ change: (inout SlotNote) -> Void) {
        state.withLock { change(&$0.notes[slot, default: SlotNote()]) }
    }

    func submissionFinished() {
        let done = state.withLock { state -> Bool in
            state.remaining -= 1
            return state.remaining == 0
        }
        if done { finish() }
    }

    private func finish() {
        // Every slot is filled and nothing writes them any more.
        let (outcomes, notes) = state.withLock { ($0.outcomes.map { $0! }, $0.notes) }
        pending.complete(building: { [request, context, broker] in
            Self.outcome(request, context, outcomes, notes, broker)
        })
    }

    private static func outcome(
        _ request: ProduceRequest,
        _ context: Broker.Request,
        _ outcomes: [AppendOutcome],
        _ notes: [Int: SlotNote],
        _ broker: Broker
    ) -> RequestOutcome {
        var response = ProduceResponse(responses: [], throttleTimeMs: 0)
        response.responses.reserveCapacity(request.topicData.count)
        var firstError: String?
        var slot = 0
        for topicData in request.topicData {
            var topicResponse = ProduceResponse.TopicProduceResponse(name: topicData.name, partitionResponses: [])
            topicResponse.partitionResponses.reserveCapacity(topicData.partitionData.count)
            for partitionData in topicData.partitionData {
                let outcome = outcomes[slot]
                let note = notes[slot]
                slot += 1
                if outcome.errorCode != .none, firstError == nil {
                    firstError =
                        "\(topicData.name)-\(partitionData.index): \(outcome.errorCode) \(outcome.errorMessage ?? "")"
                }
                topicResponse.partitionResponses.append(
                    .init(
                        index: partitionData.index,
                        errorCode: outcome.errorCode.rawValue,
                        baseOffset: outcome.baseOffset,
                        logAppendTimeMs: outcome.errorCode == .none ? note?.logAppendTimeMs ?? -1 : -1,
                        logStartOffset: outcome.logStartOffset,
                        recordErrors: (note?.recordErrors ?? []).map {
                            .init(batchIndex: $0.batchIndex, batchIndexErrorMessage: $0.message)
                        },
                        errorMessage: outcome.errorMessage
                    )
                )
            }
            response.responses.append(topicResponse)
        }
        if request.acks == 0 {
            if broker.metrics.isEnabled { broker.answered(context, response, responseBytes: 0) }
            // acks=0 has no response; Kafka reports a failure by closing the connection.
            if let firstError { return .close(reason: "acks=0 produce failed: \(firstError)") }
            return .noResponse
        }
        return broker.respond(response, to: context)
    }
}
