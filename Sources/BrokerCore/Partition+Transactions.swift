import KafkaMessages
import KafkaRecords
import NIOCore
import StorageHost

/// Asks the transaction coordinator whether a producer's transaction includes a partition, before
/// the partition accepts the first transactional batch of that transaction (KIP-890 part 1, on by
/// default in Kafka 3.8 as `transaction.partition.verification.enable`).
protocol TransactionVerifier: Sendable {
    /// nil when the batch may be appended; otherwise the error the producer gets for it.
    func verify(producerId: Int64, producerEpoch: Int16, topic: String, partition: Int32) -> (ErrorCode, String)?
}

/// Transactions in a partition: verification of transactional batches, end-transaction markers,
/// the aborted-transactions index and its recovery.
extension Partition {
    /// Called under `appendOrder` for a transactional batch: nil when the batch continues a
    /// transaction of its producer already open here or the coordinator confirms the partition is
    /// in the producer's transaction.
    func verifyTransactionalBatch(_ header: RecordBatchHeader, _ verifier: (any TransactionVerifier)?) -> AppendFailure?
    {
        if state.withLock({ $0.transactions.hasOpenTransaction(header.producerId) }) { return nil }
        guard let verifier else {
            // Kafka refuses transactional records in a Produce without a transactional id.
            return AppendFailure(
                .transactionalIdAuthorizationFailed,
                "transactional records need the request's transactional id"
            )
        }
        guard
            let (code, message) = verifier.verify(
                producerId: header.producerId,
                producerEpoch: header.producerEpoch,
                topic: topicName,
                partition: index
            )
        else { return nil }
        return AppendFailure(code, message)
    }

    /// Appends an end-transaction marker of `producerId` (Kafka's WriteTxnMarkers, done in-process
    /// on a single broker) through the same path as produced batches: the partition assigns its
    /// offset, the sink hears when it is visible (and durable on a durable backend: markers are
    /// always written as acks=all). Returns what to do about the sync, and the first offset of the
    /// producer's transaction in this partition when it had written here (for the index record of
    /// an abort).
    func submitMarker(
        producerId: Int64,
        producerEpoch: Int16,
        commit: Bool,
        nowMs: Int64,
        sink: AppendSink
    ) -> (submission: Submission, transactionFirstOffset: Int64?) {
        let marker = EndTransactionMarker(kind: commit ? .commit : .abort, coordinatorEpoch: 0)
        let batch = marker.batch(producerId: producerId, producerEpoch: producerEpoch, timestamp: nowMs)
        // Built just above: a whole, valid header.
        let header = try! RecordBatchHeader(parsing: batch)
        let needsSync = isDurable
        let admitted: (AssignedBatch, Int64?)? = appendOrder.withLock { _ in
            let decision = state.withLock { state -> Result<(AssignedBatch, Int64?), AppendFailure> in
                if let refusal = state.refusal(self) { return .failure(refusal) }
                let previous = state.producers.entries[producerId]
                state.producers.noteMarker(producerId: producerId, producerEpoch: producerEpoch, nowMs: nowMs)
                let offset = state.nextOffset
                state.nextOffset += 1
                let first = state.transactions.noteMarker(producerId: producerId, at: offset, isAbort: !commit)
                let id = state.nextBatchId
                state.nextBatchId += 1
                var entry = InFlightBatch(
                    id: id,
                    firstOffset: offset,
                    endOffset: offset + 1,
                    needsSync: needsSync,
                    sink: sink,
                    producerId: producerId,
                    previousProducerEntry: previous,
                    maxTimestamp: nowMs,
                    offsetOfMaxTimestamp: offset
                )
                entry.isMarker = true
                state.inFlight.append(entry)
                return .success((AssignedBatch(first: offset, last: offset, id: id), first))
            }
            switch decision {
            case .success(let admitted):
                appendAssigned(
                    batch: batch,
                    header: header,
                    byteCount: batch.readableBytes,
                    maxTimestamp: nowMs,
                    assigned: admitted.0
                )
                return admitted
            case .failure(let failure):
                sink.deliver(failure.outcome(logStartOffset: state.withLock { $0.logStartOffset }))
                return nil
            }
        }
        guard let admitted else { return (.submitted, nil) }
        guard needsSync else { return (.submitted, admitted.1) }
        if syncIsShared { return (.awaitsSharedSync, admitted.1) }
        requestSync()
        return (.submitted, admitted.1)
    }

    // MARK: Recovery

    /// Rebuilds the transactions of this partition at startup. `openSince` maps each producer
    /// whose transaction the coordinator has not completed (and that includes this partition) to
    /// the partition's log end when the partition joined that transaction: every batch of the
    /// transaction lies at or after it, and the producer's previous marker before it. Only
    /// [min(openSince), end) is scanned: the cost is reading what was written here since the
    /// oldest undecided transaction began, nothing when there is none.
    ///
    /// The scan finds the transactions still open (their first batch holds the last stable
    /// offset) and ABORT markers that are in the log but whose index record may not have been
    /// written before the crash; those are returned so the caller persists them. `persisted` are
    /// the index entries read back from the index log.
    func recoverTransactions(
        openSince: [Int64: Int64],
        persisted: [AbortedTransaction]
    ) async throws
        -> [AbortedTransaction]
    {
        let snapshot = self.snapshot
        var open: [Int64: Int64] = [:]
        var found: [AbortedTransaction] = []
        if let earliest = openSince.values.min() {
            var offset = max(earliest, snapshot.logStartOffset)
            while offset < snapshot.highWatermark {
                let chunk = try await log.read(
                    from: offset,
                    limit: snapshot.highWatermark,
                    maxBytes: 1 << 20,
                    minimumOneEntry: true
                )
                guard chunk.entryCount > 0 else { break }
                for batch in RecordBatchReader.batches(in: chunk.bytes) {
                    guard let header = try? RecordBatchHeader(parsing: batch), let since = openSince[header.producerId],
                        header.baseOffset >= since
                    else { continue }
                    let producerId = header.producerId
                    if header.isControl {
                        let first = open.removeValue(forKey: producerId)
                        if let first, EndTransactionMarker(controlBatch: batch)?.kind == .abort {
                            found.append(
                                AbortedTransaction(
                                    producerId: producerId,
                                    firstOffset: first,
                                    lastOffset: header.baseOffset
                                )
                            )
                        }
                    } else if header.isTransactional, open[producerId] == nil {
                        open[producerId] = header.baseOffset
                    }
                }
                offset = chunk.nextOffset
            }
        }
        let known = Set(persisted)
        let discovered = found.filter { !known.contains($0) }
        state.withLock { $0.transactions.restore(open: open, aborted: persisted + discovered) }
        return discovered
    }

    /// The index entries read back from the index log that this log really holds: the marker is
    /// still in the log (not below the start: retention) and is an ABORT of that producer. An
    /// entry that fails is dropped (and reported), never trusted.
    func verifiedAbortedTransactions(
        _ entries: [AbortedTransaction]
    ) async -> (kept: [AbortedTransaction], dropped: Int) {
        let snapshot = self.snapshot
        var kept: [AbortedTransaction] = []
        var dropped = 0
        for entry in entries.sorted() {
            if entry.lastOffset < snapshot.logStartOffset { continue }
            guard entry.lastOffset < snapshot.highWatermark, entry.firstOffset <= entry.lastOffset,
                let read = try? await log.read(
                    from: entry.lastOffset,
                    limit: entry.lastOffset + 1,
                    maxBytes: 1,
                    minimumOneEntry: true
                ),
                let batch = RecordBatchReader.batches(in: read.bytes).first,
                let header = try? RecordBatchHeader(parsing: batch),
                header.baseOffset == entry.lastOffset, header.producerId == entry.producerId,
                EndTransactionMarker(controlBatch: batch)?.kind == .abort
            else {
                dropped += 1
                continue
            }
            kept.append(entry)
        }
        return (kept, dropped)
    }

    /// The aborted transactions of this partition whose marker is still in the log (what a
    /// compaction of the index log keeps).
    var liveAbortedTransactions: [AbortedTransaction] {
        state.withLock { state in
            state.transactions.pruneAborted(below: state.logStartOffset)
            return state.transactions.aborted
        }
    }

    // MARK: DescribeProducers

    /// One producer with state in this partition (Kafka's `DescribeProducers` ProducerState).
    struct ProducerDescription: Sendable, Equatable {
        var producerId: Int64
        var producerEpoch: Int16
        var lastSequence: Int32
        var lastTimestampMs: Int64
        var currentTransactionStartOffset: Int64
    }

    var producerDescriptions: [ProducerDescription] {
        state.withLock { state in
            state.producers.entries.keys.sorted().compactMap { producerId in
                guard let entry = state.producers.entries[producerId] else { return nil }
                return ProducerDescription(
                    producerId: producerId,
                    producerEpoch: entry.producerEpoch,
                    lastSequence: entry.lastSequence ?? -1,
                    lastTimestampMs: entry.lastUpdateMs,
                    currentTransactionStartOffset: state.transactions.open[producerId] ?? -1
                )
            }
        }
    }
}
