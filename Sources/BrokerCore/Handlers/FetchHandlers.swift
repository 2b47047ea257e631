import KafkaMessages
import KafkaRecords
import NIOCore
import StorageHost

extension Broker {
    /// Fetch, sessionless (KIP-227 fetch sessions are not implemented: session id 0 tells the
    /// client so). Answers at once when there are at least MinBytes or an error; otherwise waits
    /// up to MaxWaitMs for a high watermark to move (long poll) and reads again.
    func handleFetch(_ request: FetchRequest, _ context: Request) async -> (response: FetchResponse, reservedBytes: Int)
    {
        if request.sessionId != 0 {
            return (
                FetchResponse(throttleTimeMs: 0, errorCode: ErrorCode.fetchSessionIdNotFound.rawValue, sessionId: 0), 0
            )
        }
        if request.sessionEpoch > 0 {
            return (
                FetchResponse(throttleTimeMs: 0, errorCode: ErrorCode.invalidFetchSessionEpoch.rawValue, sessionId: 0),
                0
            )
        }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .milliseconds(max(0, Int64(request.maxWaitMs))))
        let budget = context.context.responseBudget
        let wanted = Int(min(request.maxBytes, configuration.fetchMaxBytes))
        while true {
            // The response may hold only what the connection's share of response memory grants
            // (a client that does not read its responses cannot make the broker hold more); with
            // nothing granted, wait for its earlier responses to drain, then answer without records.
            let granted = budget.map { $0.reserve(upTo: wanted) } ?? wanted
            if granted == 0 && wanted > 0 && clock.now < deadline && !isShuttingDown {
                try? await Task.sleep(for: .milliseconds(Self.fetchBudgetPollMs))
                continue
            }
            let round = await fetchRound(request, version: context.version, maxBytes: granted)
            if round.bytes >= Int(request.minBytes) || round.hasError || request.maxWaitMs <= 0 || isShuttingDown
                || clock.now >= deadline || granted == 0
            {
                return (round.response, granted)
            }
            // Nothing to send yet: give the reservation back while waiting.
            budget?.release(granted)
            // With nothing to watch (an empty request) only the timer wakes the wait.
            let waiter = FetchWaiter()
            for (partition, highWatermark) in round.watched {
                partition.addWaiter(waiter, knownHighWatermark: highWatermark)
            }
            let timer = Task {
                try? await Task.sleep(until: deadline, clock: clock)
                waiter.fire()
            }
            let waitStarted = metrics.startTime()
            await waiter.wait()
            if metrics.isEnabled { metrics.fetchWaited(nanoseconds: MonotonicClock.nanoseconds() &- waitStarted) }
            timer.cancel()
            for (partition, _) in round.watched { partition.removeWaiter(waiter) }
            if clock.now >= deadline || isShuttingDown {
                // Read once more so data that arrived with the deadline is not left behind.
                let last = budget.map { $0.reserve(upTo: wanted) } ?? wanted
                return (await fetchRound(request, version: context.version, maxBytes: last).response, last)
            }
        }
    }

    /// How often a Fetch whose connection has no response memory left checks again.
    static let fetchBudgetPollMs = 5

    private struct FetchRound {
        var response: FetchResponse
        var bytes: Int
        var hasError: Bool
        var watched: [(Partition, Int64)]
    }

    private func fetchRound(_ request: FetchRequest, version: Int16, maxBytes: Int) async -> FetchRound {
        let readCommitted = request.isolationLevel == 1
        var remaining = maxBytes
        var round = FetchRound(
            response: FetchResponse(throttleTimeMs: 0, errorCode: 0, sessionId: 0, responses: []),
            bytes: 0,
            hasError: false,
            watched: []
        )
        round.response.responses.reserveCapacity(request.topics.count)
        for fetchTopic in request.topics {
            var topicResponse = FetchResponse.FetchableTopicResponse(
                topic: fetchTopic.topic,
                topicId: fetchTopic.topicId,
                partitions: []
            )
            topicResponse.partitions.reserveCapacity(fetchTopic.partitions.count)
            // v13+ names topics by id (KIP-516) and answers an unknown one UNKNOWN_TOPIC_ID.
            let byId = version >= 13
            let topic = byId ? registry.topic(id: fetchTopic.topicId) : registry.topic(named: fetchTopic.topic)
            for fetchPartition in fetchTopic.partitions {
                var data = FetchResponse.PartitionData(
                    partitionIndex: fetchPartition.partition,
                    errorCode: ErrorCode.none.rawValue,
                    highWatermark: -1,
                    lastStableOffset: -1,
                    logStartOffset: -1,
                    abortedTransactions: readCommitted ? [] : nil,
                    preferredReadReplica: -1,
                    records: allocator.buffer(capacity: 0)
                )
                defer { topicResponse.partitions.append(data) }
                guard let partition = topic?.partition(fetchPartition.partition) else {
                    data.errorCode =
                        (byId && topic == nil ? ErrorCode.unknownTopicId : .unknownTopicOrPartition).rawValue
                    round.hasError = true
                    continue
                }
                if fetchPartition.currentLeaderEpoch > Self.leaderEpoch {
                    data.errorCode = ErrorCode.unknownLeaderEpoch.rawValue
                    round.hasError = true
                    continue
                }
                // KIP-74: the first batch of the first non-empty partition is returned even when
                // it is larger than the limits, so a consumer can always make progress.
                // read_committed stops at the last stable offset and reports the aborted
                // transactions in what it returns, which the consumer drops.
                let partitionMaxBytes = min(Int(fetchPartition.partitionMaxBytes), remaining)
                var outcome = await partition.read(
                    from: fetchPartition.fetchOffset,
                    maxBytes: partitionMaxBytes,
                    minimumOneBatch: round.bytes == 0 && maxBytes > 0,
                    allocator: allocator,
                    readCommitted: readCommitted
                )
                if version <= 3 {
                    outcome = Self.downConverted(
                        outcome,
                        toMagic: version <= 1 ? 0 : 1,
                        fromOffset: fetchPartition.fetchOffset,
                        maxBytes: partitionMaxBytes,
                        minimumOneMessage: round.bytes == 0 && maxBytes > 0
                    )
                }
                switch outcome {
                case .records(let records, let snapshot, let aborted):
                    data.highWatermark = snapshot.highWatermark
                    data.lastStableOffset = snapshot.lastStableOffset
                    data.logStartOffset = snapshot.logStartOffset
                    if readCommitted {
                        data.abortedTransactions = aborted.map {
                            .init(producerId: $0.producerId, firstOffset: $0.firstOffset)
                        }
                    }
                    data.records = records
                    round.bytes += records.readableBytes
                    remaining = max(0, remaining - records.readableBytes)
                    if records.readableBytes == 0 { round.watched.append((partition, snapshot.highWatermark)) }
                case .error(let code, let snapshot):
                    data.errorCode = code.rawValue
                    data.highWatermark = snapshot.highWatermark
                    data.lastStableOffset = snapshot.lastStableOffset
                    data.logStartOffset = snapshot.logStartOffset
                    round.hasError = true
                }
            }
            round.response.responses.append(topicResponse)
        }
        return round
    }

    /// Fetch v0-3 readers understand magic 0 (v0-1) or magic 1 (v2-3) message sets only: what was
    /// read is converted for the response, never in the log (Kafka's `RecordsUtil.downConvert`).
    private static func downConverted(
        _ outcome: Partition.ReadOutcome,
        toMagic magic: Int8,
        fromOffset: Int64,
        maxBytes: Int,
        minimumOneMessage: Bool
    ) -> Partition.ReadOutcome {
        guard case .records(let stored, let snapshot, let aborted) = outcome, stored.readableBytes > 0 else {
            return outcome
        }
        do {
            let converted = try LegacyRecordsConverter.downConvert(
                stored,
                toMagic: magic,
                fromOffset: fromOffset,
                maxBytes: maxBytes,
                minimumOneMessage: minimumOneMessage,
                maxDecompressedBytes: decompressedBatchBytesMax
            )
            return .records(converted, snapshot, abortedTransactions: aborted)
        } catch {
            return .error(ErrorCode(rawValue: error.kafkaErrorCode), snapshot)
        }
    }

    /// ListOffsets: earliest (-2), latest (-1: the high watermark, or for read_committed (v2+
    /// IsolationLevel 1) the last stable offset), max timestamp (-3, v7+), or the first offset
    /// whose record timestamp is at or after a timestamp (read_committed: below the last stable
    /// offset only, as Kafka bounds it).
    func handleListOffsets(_ request: ListOffsetsRequest, _ context: Request) async -> ListOffsetsResponse {
        var response = ListOffsetsResponse(throttleTimeMs: 0, topics: [])
        let readCommitted = context.version >= 2 && request.isolationLevel == 1
        for listTopic in request.topics {
            var topicResponse = ListOffsetsResponse.ListOffsetsTopicResponse(name: listTopic.name, partitions: [])
            let topic = registry.topic(named: listTopic.name)
            for listPartition in listTopic.partitions {
                var answer = ListOffsetsResponse.ListOffsetsPartitionResponse(
                    partitionIndex: listPartition.partitionIndex,
                    errorCode: ErrorCode.none.rawValue,
                    timestamp: -1,
                    offset: -1,
                    leaderEpoch: Self.leaderEpoch
                )
                defer { topicResponse.partitions.append(answer) }
                guard let partition = topic?.partition(listPartition.partitionIndex) else {
                    answer.errorCode = ErrorCode.unknownTopicOrPartition.rawValue
                    answer.leaderEpoch = -1
                    continue
                }
                if listPartition.currentLeaderEpoch > Self.leaderEpoch {
                    answer.errorCode = ErrorCode.unknownLeaderEpoch.rawValue
                    continue
                }
                var snapshot = partition.snapshot
                // Everything below answers from "the end": the last stable offset for read_committed.
                if readCommitted { snapshot.highWatermark = snapshot.lastStableOffset }
                guard snapshot.isOnline else {
                    answer.errorCode = ErrorCode.kafkaStorageError.rawValue
                    continue
                }
                if context.version == 0 {
                    answer.oldStyleOffsets = legacyOffsets(
                        before: listPartition.timestamp,
                        maxCount: listPartition.maxNumOffsets,
                        fromConsumer: request.replicaId == -1,
                        snapshot
                    )
                    continue
                }
                switch listPartition.timestamp {
                case -2, Self.earliestLocalTimestamp:
                    // Without tiered storage the local log is the whole log.
                    answer.offset = snapshot.logStartOffset
                case -1:
                    answer.offset = snapshot.highWatermark
                case Self.latestTieredTimestamp:
                    // KIP-1005: nothing is tiered; Kafka answers offset and epoch -1 without error.
                    answer.leaderEpoch = -1
                case -3:
                    if let found = await offsetOfMaxTimestamp(partition, snapshot) {
                        answer.offset = found.offset
                        answer.timestamp = found.timestamp
                    }
                case let timestamp where timestamp >= 0:
                    do {
                        if let found = try await firstRecord(atOrAfter: timestamp, in: partition, snapshot) {
                            answer.offset = found.offset
                            answer.timestamp = found.timestamp
                        }
                    } catch {
                        answer.errorCode = ErrorCode.kafkaStorageError.rawValue
                    }
                default:
                    answer.errorCode = ErrorCode.invalidRequest.rawValue
                }
            }
            response.topics.append(topicResponse)
        }
        return response
    }

    /// The first record (offset and timestamp) with a timestamp at or after `timestamp`, below
    /// the high watermark: the backend's time index finds the batch, the batch is searched.
    private func firstRecord(
        atOrAfter timestamp: Int64,
        in partition: Partition,
        _ snapshot: Partition.Snapshot
    )
        async throws -> (offset: Int64, timestamp: Int64)?
    {
        var from = try await partition.log.findOffset(atOrAfterTimestamp: timestamp)
        // Batch max timestamps need not grow with offsets; search on until a record qualifies.
        while let offset = from, offset < snapshot.highWatermark {
            let read = try await partition.log.read(
                from: max(offset, snapshot.logStartOffset),
                limit: snapshot.highWatermark,
                maxBytes: 1,
                minimumOneEntry: true
            )
            guard let batch = RecordBatchReader.batches(in: read.bytes).first else { return nil }
            let header = try RecordBatchHeader(parsing: batch)
            if header.maxTimestamp >= timestamp {
                for record in try RecordBatchReader.records(
                    of: batch,
                    maxDecompressedBytes: Self.decompressedBatchBytesMax
                ) {
                    let recordOffset = header.baseOffset + Int64(record.offsetDelta)
                    if record.timestamp >= timestamp, recordOffset >= snapshot.logStartOffset {
                        return (recordOffset, record.timestamp)
                    }
                }
            }
            from = read.nextOffset
        }
        return nil
    }

    private func offsetOfMaxTimestamp(
        _ partition: Partition,
        _ snapshot: Partition.Snapshot
    ) async
        -> (offset: Int64, timestamp: Int64)?
    {
        guard snapshot.maxTimestamp >= 0, snapshot.highWatermark > snapshot.logStartOffset else { return nil }
        if snapshot.offsetOfMaxTimestamp >= 0 {
            return (snapshot.offsetOfMaxTimestamp, snapshot.maxTimestamp)
        }
        // Not tracked since the broker started: find it through the time index once.
        guard let found = try? await firstRecord(atOrAfter: snapshot.maxTimestamp, in: partition, snapshot) else {
            return nil
        }
        partition.noteOffsetOfMaxTimestamp(found.offset, timestamp: found.timestamp)
        return found
    }
}

extension FetchResponse {
    /// Bytes of records the response carries (`fjord_fetch_bytes_total`).
    var recordBytes: Int {
        responses.reduce(0) { sum, topic in
            topic.partitions.reduce(sum) { $0 + ($1.records?.readableBytes ?? 0) }
        }
    }
}
