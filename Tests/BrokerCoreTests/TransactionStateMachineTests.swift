import Testing

@testable import BrokerCore
@testable import KafkaMessages

/// Drives `TransactionCoordinatorState` the way the shell does — prepare, then complete the
/// write — with time passed in by hand (a manual clock).
struct TransactionMachine {
    var machine = TransactionCoordinatorState(
        settings: TransactionSettings(maxTimeoutMs: 60_000, transactionalIdExpirationMs: 100_000)
    )
    var nowMs: Int64 = 1_000_000
    var nextProducerId: Int64 = 100

    static let partitionA = TopicPartition(topic: "a", partition: 0)
    static let partitionB = TopicPartition(topic: "b", partition: 1)

    /// InitProducerId to completion: the producer id and epoch, or the error.
    mutating func initProducerId(
        _ id: String = "tx",
        timeoutMs: Int32 = 10_000,
        expected: ProducerIdAndEpoch? = nil
    )
        -> Result<ProducerIdAndEpoch, InitFailure>
    {
        var fresh: Int64?
        for _ in 0..<2 {
            switch machine.initProducerId(
                transactionalId: id,
                timeoutMs: timeoutMs,
                expected: expected,
                newProducerId: fresh,
                nowMs: nowMs
            ) {
            case .needsProducerId:
                fresh = nextProducerId
                nextProducerId += 1
            case .answer(let error):
                return .failure(InitFailure(error: error))
            case .write(let target):
                #expect(machine.completeWrite(target, succeeded: true) == [])
                return .success(ProducerIdAndEpoch(producerId: target.producerId, producerEpoch: target.producerEpoch))
            case .fence(let target):
                completeDecided(target)
                return .failure(InitFailure(error: .concurrentTransactions))
            }
        }
        return .failure(InitFailure(error: .unknownServerError))
    }

    struct InitFailure: Error, Equatable {
        var error: ErrorCode
    }

    /// Writes a decision (or returns the immediate answer).
    mutating func carryOut(_ decision: TransactionDecision) -> (ErrorCode, [TransactionAction]) {
        switch decision {
        case .answer(let error): return (error, [])
        case .write(let target): return (.none, machine.completeWrite(target, succeeded: true))
        }
    }

    mutating func add(
        _ producer: ProducerIdAndEpoch,
        _ partitions: [TopicPartition: Int64],
        groups: Set<String> = [],
        id: String = "tx"
    )
        -> ErrorCode
    {
        carryOut(
            machine.addToTransaction(
                transactionalId: id,
                producer: producer,
                partitions: partitions,
                groups: groups,
                nowMs: nowMs
            )
        ).0
    }

    mutating func end(
        _ producer: ProducerIdAndEpoch,
        commit: Bool,
        id: String = "tx"
    ) -> (ErrorCode, [TransactionAction]) {
        carryOut(machine.endTransaction(transactionalId: id, producer: producer, commit: commit, nowMs: nowMs))
    }

    /// A decided transaction's write, its markers, and its completion.
    mutating func completeDecided(_ target: TransactionMetadata) {
        #expect(machine.completeWrite(target, succeeded: true) == [.writeMarkers(target)])
        finishMarkers(target.transactionalId, epoch: target.producerEpoch)
    }

    mutating func finishMarkers(_ id: String, epoch: Int16) {
        guard let complete = machine.markersWritten(transactionalId: id, producerEpoch: epoch, nowMs: nowMs) else {
            Issue.record("no completion for \(id)")
            return
        }
        #expect(machine.completeWrite(complete, succeeded: true) == [])
    }

    func phase(_ id: String = "tx") -> TransactionPhase? { machine.metadata(id)?.phase }
}

@Suite("Transaction coordinator state machine")
struct TransactionStateMachineTests {
    /// A new transactional id gets a producer id and epoch 0; each InitProducerId bumps the epoch
    /// and forgets the last one (no client named it).
    @Test func initProducerIdAllocatesThenBumpsTheEpoch() throws {
        var test = TransactionMachine()
        let first = try test.initProducerId().get()
        #expect(first == ProducerIdAndEpoch(producerId: 100, producerEpoch: 0))
        #expect(test.phase() == .empty)
        let second = try test.initProducerId().get()
        #expect(second == ProducerIdAndEpoch(producerId: 100, producerEpoch: 1))
        #expect(test.machine.metadata("tx")?.lastProducerEpoch == -1)
        #expect(test.machine.metadata("tx")?.lastProducerId == 100)
    }

    /// transaction.timeout.ms must be positive and at most transaction.max.timeout.ms.
    @Test(arguments: [(Int32(0), false), (1, true), (60_000, true), (60_001, false), (-5, false)])
    func transactionTimeoutBounds(timeoutMs: Int32, valid: Bool) {
        #expect(TransactionMachine().machine.isValidTimeout(timeoutMs) == valid)
    }

    /// Empty → Ongoing (start time recorded) → PrepareCommit (markers due) → CompleteCommit
    /// (partitions cleared); repeats are answered as Kafka does at every step.
    @Test func commitWalksEveryState() throws {
        var test = TransactionMachine()
        let producer = try test.initProducerId().get()
        #expect(test.end(producer, commit: true).0 == .invalidTxnState)
        test.nowMs += 5
        #expect(test.add(producer, [TransactionMachine.partitionA: 7]) == .none)
        #expect(test.phase() == .ongoing)
        #expect(test.machine.metadata("tx")?.startTimestampMs == test.nowMs)
        // Already in the transaction: answered without a write.
        #expect(
            test.machine.addToTransaction(
                transactionalId: "tx",
                producer: producer,
                partitions: [TransactionMachine.partitionA: 9],
                nowMs: test.nowMs
            ) == .answer(.none)
        )
        // A new partition is merged; a known one keeps its earlier log end offset.
        #expect(test.add(producer, [TransactionMachine.partitionA: 9, TransactionMachine.partitionB: 3]) == .none)
        #expect(
            test.machine.metadata("tx")?.partitions == [
                TransactionMachine.partitionA: 7, TransactionMachine.partitionB: 3,
            ]
        )
        let (error, actions) = test.end(producer, commit: true)
        #expect(error == .none)
        #expect(test.phase() == .prepareCommit)
        guard case .writeMarkers(let decided)? = actions.first else {
            Issue.record("no markers due")
            return
        }
        #expect(decided.partitions.count == 2)
        // While the markers are written.
        #expect(test.add(producer, [TransactionMachine.partitionA: 1]) == .concurrentTransactions)
        #expect(test.end(producer, commit: true).0 == .concurrentTransactions)
        #expect(test.end(producer, commit: false).0 == .invalidTxnState)
        #expect(test.initProducerId() == .failure(.init(error: .concurrentTransactions)))
        test.finishMarkers("tx", epoch: producer.producerEpoch)
        #expect(test.phase() == .completeCommit)
        #expect(test.machine.metadata("tx")?.partitions.isEmpty == true)
        #expect(test.end(producer, commit: true).0 == .none)
        #expect(test.end(producer, commit: false).0 == .invalidTxnState)
        // The next transaction starts from CompleteCommit with a fresh start time.
        test.nowMs += 100
        #expect(test.add(producer, [TransactionMachine.partitionB: 50]) == .none)
        #expect(test.machine.metadata("tx")?.startTimestampMs == test.nowMs)
        #expect(test.machine.metadata("tx")?.partitions == [TransactionMachine.partitionB: 50])
    }

    /// An abort goes PrepareAbort → CompleteAbort; a second abort is answered NONE, a commit INVALID_TXN_STATE.
    @Test func abortWalksItsStates() throws {
        var test = TransactionMachine()
        let producer = try test.initProducerId().get()
        #expect(test.add(producer, [:], groups: ["g"]) == .none)
        #expect(test.machine.metadata("tx")?.groups == ["g"])
        #expect(test.end(producer, commit: false).0 == .none)
        #expect(test.phase() == .prepareAbort)
        #expect(test.end(producer, commit: false).0 == .concurrentTransactions)
        #expect(test.end(producer, commit: true).0 == .invalidTxnState)
        test.finishMarkers("tx", epoch: producer.producerEpoch)
        #expect(test.phase() == .completeAbort)
        #expect(test.end(producer, commit: false).0 == .none)
        #expect(test.end(producer, commit: true).0 == .invalidTxnState)
    }

    /// Requests naming another producer id, an older or newer epoch, or an unknown id are refused.
    @Test func wrongProducerIdsAndEpochsAreRefused() throws {
        var test = TransactionMachine()
        let producer = try test.initProducerId().get()
        let other = ProducerIdAndEpoch(producerId: producer.producerId + 1, producerEpoch: producer.producerEpoch)
        #expect(test.add(other, [TransactionMachine.partitionA: 0]) == .invalidProducerIdMapping)
        #expect(test.add(producer, [TransactionMachine.partitionA: 0], id: "unknown") == .invalidProducerIdMapping)
        let newer = ProducerIdAndEpoch(producerId: producer.producerId, producerEpoch: producer.producerEpoch + 1)
        #expect(test.add(newer, [TransactionMachine.partitionA: 0]) == .producerFenced)
        _ = try test.initProducerId().get()
        #expect(test.add(producer, [TransactionMachine.partitionA: 0]) == .producerFenced)
        #expect(test.end(producer, commit: true).0 == .producerFenced)
    }

    /// While a transition is being written every other request for the id is CONCURRENT_TRANSACTIONS;
    /// a failed write changes nothing.
    @Test func pendingWritesBlockAndFailedWritesChangeNothing() throws {
        var test = TransactionMachine()
        let producer = try test.initProducerId().get()
        guard
            case .write(let target) = test.machine.addToTransaction(
                transactionalId: "tx",
                producer: producer,
                partitions: [TransactionMachine.partitionA: 0],
                nowMs: test.nowMs
            )
        else {
            Issue.record("no write")
            return
        }
        #expect(test.machine.hasPendingWrites)
        #expect(test.end(producer, commit: true).0 == .concurrentTransactions)
        #expect(test.initProducerId() == .failure(.init(error: .concurrentTransactions)))
        #expect(test.machine.completeWrite(target, succeeded: false) == [])
        #expect(!test.machine.hasPendingWrites)
        #expect(test.phase() == .empty)
        #expect(
            test.machine.verify(transactionalId: "tx", producer: producer, partition: TransactionMachine.partitionA)
                == .transactionAbortable
        )
    }

    /// A second producer initializing the id while a transaction is open fences the first: the
    /// transaction is aborted with the epoch bumped, the new producer is told to retry, and its
    /// retry bumps once more; the old producer is fenced everywhere.
    @Test func initProducerIdFencesAnOngoingTransaction() throws {
        var test = TransactionMachine()
        let zombie = try test.initProducerId().get()
        #expect(test.add(zombie, [TransactionMachine.partitionA: 0]) == .none)
        guard
            case .fence(let fenced) = test.machine.initProducerId(
                transactionalId: "tx",
                timeoutMs: 10_000,
                expected: nil,
                newProducerId: nil,
                nowMs: test.nowMs
            )
        else {
            Issue.record("no fence")
            return
        }
        #expect(fenced.phase == .prepareAbort)
        #expect(fenced.producerEpoch == zombie.producerEpoch + 1)
        test.completeDecided(fenced)
        #expect(test.phase() == .completeAbort)
        let successor = try test.initProducerId().get()
        #expect(successor.producerEpoch == zombie.producerEpoch + 2)
        #expect(test.end(zombie, commit: true).0 == .producerFenced)
        #expect(
            test.machine.verify(transactionalId: "tx", producer: zombie, partition: TransactionMachine.partitionA)
                == .producerFenced
        )
    }

    /// An Ongoing transaction times out `timeout` after it started: the coordinator aborts it with
    /// an epoch bump, so its producer is fenced; not a millisecond earlier.
    @Test func timedOutTransactionsAreAbortedWithAnEpochBump() throws {
        var test = TransactionMachine()
        let producer = try test.initProducerId(timeoutMs: 2_000).get()
        let started = test.nowMs
        #expect(test.machine.nextDeadline == nil)
        #expect(test.add(producer, [TransactionMachine.partitionA: 0]) == .none)
        #expect(test.machine.nextDeadline == started + 2_001)
        test.nowMs = started + 2_000
        #expect(test.machine.abortTimedOut(nowMs: test.nowMs).isEmpty)
        test.nowMs += 1
        let due = test.machine.abortTimedOut(nowMs: test.nowMs)
        #expect(due.count == 1)
        #expect(due.first?.phase == .prepareAbort)
        #expect(due.first?.producerEpoch == producer.producerEpoch + 1)
        // Pending: not picked twice, and no deadline while it is written.
        #expect(test.machine.abortTimedOut(nowMs: test.nowMs + 10_000).isEmpty)
        #expect(test.machine.nextDeadline == nil)
        if let target = due.first { test.completeDecided(target) }
        #expect(test.phase() == .completeAbort)
        #expect(test.end(producer, commit: true).0 == .producerFenced)
        #expect(test.add(producer, [TransactionMachine.partitionA: 0]) == .producerFenced)
    }

    /// A fenced abort whose write failed keeps the bumped epoch for the next attempt (the bumped
    /// epoch was never handed out), as Kafka's hasFailedEpochFence does.
    @Test func aFailedFenceDoesNotBumpTwice() throws {
        var test = TransactionMachine()
        let producer = try test.initProducerId(timeoutMs: 100).get()
        #expect(test.add(producer, [TransactionMachine.partitionA: 0]) == .none)
        test.nowMs += 1_000
        let first = test.machine.abortTimedOut(nowMs: test.nowMs)
        #expect(first.first?.producerEpoch == producer.producerEpoch + 1)
        if let target = first.first { #expect(test.machine.completeWrite(target, succeeded: false) == []) }
        let second = test.machine.abortTimedOut(nowMs: test.nowMs)
        #expect(second.first?.producerEpoch == producer.producerEpoch)
    }

    /// KIP-360: a producer naming its id and current epoch gets a bump and the coordinator
    /// remembers the old epoch, so a retry of that call gets the same answer; any other epoch is fenced.
    @Test func kip360EpochBumpsAndTheirRetries() throws {
        var test = TransactionMachine()
        let producer = try test.initProducerId().get()
        let bumped = try test.initProducerId(expected: producer).get()
        #expect(bumped.producerEpoch == producer.producerEpoch + 1)
        #expect(test.machine.metadata("tx")?.lastProducerEpoch == producer.producerEpoch)
        let retried = try test.initProducerId(expected: producer).get()
        #expect(retried == bumped)
        let stale = ProducerIdAndEpoch(producerId: producer.producerId, producerEpoch: 57)
        #expect(test.initProducerId(expected: stale) == .failure(.init(error: .producerFenced)))
        let foreign = ProducerIdAndEpoch(producerId: 999, producerEpoch: 0)
        #expect(test.initProducerId(expected: foreign) == .failure(.init(error: .producerFenced)))
    }

    /// An exhausted epoch rotates the producer id: a new id at epoch 0, the old one remembered.
    @Test func anExhaustedEpochRotatesTheProducerId() throws {
        var test = TransactionMachine()
        let producer = try test.initProducerId().get()
        var metadata = try #require(test.machine.metadata("tx"))
        metadata.producerEpoch = Int16.max - 1
        test.machine.restore(metadata)
        let rotated = try test.initProducerId().get()
        #expect(rotated.producerId != producer.producerId)
        #expect(rotated.producerEpoch == 0)
        #expect(test.machine.metadata("tx")?.lastProducerId == producer.producerId)
    }

    /// Two producers with their own transactional ids interleave without affecting each other.
    @Test func concurrentProducersAreIndependent() throws {
        var test = TransactionMachine()
        let one = try test.initProducerId("one").get()
        let two = try test.initProducerId("two").get()
        #expect(one.producerId != two.producerId)
        #expect(test.add(one, [TransactionMachine.partitionA: 0], id: "one") == .none)
        #expect(test.add(two, [TransactionMachine.partitionA: 4], id: "two") == .none)
        #expect(test.end(one, commit: true, id: "one").0 == .none)
        #expect(test.phase("one") == .prepareCommit)
        #expect(test.phase("two") == .ongoing)
        #expect(test.add(two, [TransactionMachine.partitionB: 1], id: "two") == .none)
        #expect(test.end(two, commit: false, id: "two").0 == .none)
        test.finishMarkers("two", epoch: two.producerEpoch)
        test.finishMarkers("one", epoch: one.producerEpoch)
        #expect(test.phase("one") == .completeCommit)
        #expect(test.phase("two") == .completeAbort)
        // A producer of one id cannot touch the other.
        #expect(test.add(one, [TransactionMachine.partitionA: 0], id: "two") == .invalidProducerIdMapping)
    }

    /// Verification: a partition or group is in the producer's transaction only while it is Ongoing.
    @Test func verificationOfPartitionsAndGroups() throws {
        var test = TransactionMachine()
        let producer = try test.initProducerId().get()
        #expect(test.add(producer, [TransactionMachine.partitionA: 0], groups: ["g"]) == .none)
        #expect(
            test.machine.verify(transactionalId: "tx", producer: producer, partition: TransactionMachine.partitionA)
                == .none
        )
        #expect(
            test.machine.verify(transactionalId: "tx", producer: producer, partition: TransactionMachine.partitionB)
                == .transactionAbortable
        )
        #expect(test.machine.verify(transactionalId: "tx", producer: producer, group: "g") == .none)
        #expect(test.machine.verify(transactionalId: "tx", producer: producer, group: "h") == .transactionAbortable)
        #expect(
            test.machine.verify(transactionalId: "nope", producer: producer, group: "g") == .invalidProducerIdMapping
        )
        _ = test.end(producer, commit: true)
        #expect(
            test.machine.verify(transactionalId: "tx", producer: producer, partition: TransactionMachine.partitionA)
                == .concurrentTransactions
        )
    }

    /// Ids without a transaction under way and idle past transactional.id.expiration.ms expire;
    /// Ongoing ones never do.
    @Test func idleTransactionalIdsExpire() throws {
        var test = TransactionMachine()
        _ = try test.initProducerId("idle").get()
        let busy = try test.initProducerId("busy").get()
        #expect(test.add(busy, [TransactionMachine.partitionA: 0], id: "busy") == .none)
        test.nowMs += 100_000
        let expired = test.machine.expireTransactionalIds(nowMs: test.nowMs)
        #expect(expired.map(\.transactionalId) == ["idle"])
        #expect(expired.first?.phase == .dead)
        if let target = expired.first { #expect(test.machine.completeWrite(target, succeeded: true) == []) }
        #expect(test.machine.metadata("idle") == nil)
        #expect(test.phase("busy") == .ongoing)
    }
}
