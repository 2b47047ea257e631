internal import CKStore
import NIOCore
import Synchronization

/// One append or sync handed to the backend, and the context pointer its completion carries
/// (kstore.h "Completions"). One allocation per call: it holds the arguments, the host's
/// completion and the state that tells whether the backend's callback ran before the member
/// returned (then the submitter delivers, outside the callback) or later on a backend thread.
final class StorageCall: Sendable {
    enum Operation: Sendable {
        /// `checkedBatch`: the entry is a RecordBatch v2 whose CRC the caller has checked (kstore.h
        /// append_checked_batch).
        case append(firstOffset: Int64, lastOffset: Int64, maxTimestamp: Int64, parts: [ByteBuffer], checkedBatch: Bool)
        case sync
    }

    /// `phase` values.
    private static let calling: UInt8 = 0
    private static let returned: UInt8 = 1
    private static let firedDuringCall: UInt8 = 2
    private static let fired: UInt8 = 3

    let log: StorageLog
    let operation: Operation
    private let completion: @Sendable (Result<Void, StorageError>) -> Void
    private let phase = Atomic<UInt8>(0)
    private let firedStatus = Atomic<Int32>(0)
    /// When the call was submitted (MonotonicClock), read only when an observer measures calls.
    private let submittedAtNanoseconds: UInt64

    init(log: StorageLog, operation: Operation, completion: @escaping @Sendable (Result<Void, StorageError>) -> Void) {
        self.log = log
        self.operation = operation
        self.completion = completion
        self.submittedAtNanoseconds = log.context.observer == nil ? 0 : MonotonicClock.nanoseconds()
    }

    /// Before each attempt (a BUSY refusal is tried again with the same call).
    func beginAttempt() {
        self.phase.store(Self.calling, ordering: .relaxed)
    }

    /// The backend's callback, on whatever thread it calls it.
    func backendCompleted(_ status: Int32) {
        self.firedStatus.store(status, ordering: .relaxed)
        let (exchanged, original) = self.phase.compareExchange(
            expected: Self.calling,
            desired: Self.firedDuringCall,
            ordering: .acquiringAndReleasing
        )
        if exchanged { return }
        precondition(original == Self.returned, "a kstore completion was called twice")
        self.phase.store(Self.fired, ordering: .relaxed)
        self.log.deliverFromBackend(self, status)
    }

    /// The member returned KSTORE_OK: the status if the callback already ran, else nil.
    func memberReturned() -> Int32? {
        let (exchanged, original) = self.phase.compareExchange(
            expected: Self.calling,
            desired: Self.returned,
            ordering: .acquiringAndReleasing
        )
        if exchanged { return nil }
        precondition(original == Self.firedDuringCall, "a kstore member returned twice")
        self.phase.store(Self.fired, ordering: .relaxed)
        return self.firedStatus.load(ordering: .relaxed)
    }

    /// Completes the call with `status` (never inside a backend callback when it is an error:
    /// the message comes from last_error).
    func deliver(_ status: Int32) {
        if let observer = self.log.context.observer {
            let elapsed = MonotonicClock.nanoseconds() &- self.submittedAtNanoseconds
            switch self.operation {
            case .append(_, _, _, let parts, _):
                let byteCount = parts.reduce(0) { $0 + $1.readableBytes }
                observer.appendCompleted(byteCount: byteCount, nanoseconds: elapsed, succeeded: status == KSTORE_OK)
            case .sync:
                observer.syncCompleted(nanoseconds: elapsed, succeeded: status == KSTORE_OK)
            }
        }
        if status == KSTORE_OK {
            self.completion(.success(()))
        } else {
            self.completion(.failure(self.log.context.error(status, self.description)))
        }
        self.log.leave()
    }

    private var description: String {
        switch self.operation {
        case .append(let first, let last, _, _, _): "append [\(first), \(last)] to log '\(self.log.name)'"
        case .sync: "sync of log '\(self.log.name)'"
        }
    }
}

/// The callback the host passes with every append and sync: the context is a retained StorageCall.
private let storageCallCompletion: kstore_completion = { context, status in
    // The host passes a non-NULL context to every append and sync, and the backend calls the
    // callback exactly once with it (kstore.h "Completions").
    Unmanaged<StorageCall>.fromOpaque(context!).takeRetainedValue().backendCompleted(status)
}

/// Calls the backend has not taken yet, because it answered BUSY or because an earlier one is
/// still waiting for it. Invariant: `calls` is non-empty only while `owned`.
struct StorageBacklog {
    /// A call was refused and waits (a retry is scheduled), or its owner is taking the queued ones
    /// in order: every other call queues behind it. While false, calls go to the backend directly.
    var owned = false
    var calls = CircularBuffer<StorageCall>()
    /// When the backend first refused the call at the head.
    var busySince: ContinuousClock.Instant?
    var pause = StorageLog.busyRetryPauseMin
    /// Appends and syncs that waited at least once (for tests and statistics).
    var waited: UInt64 = 0
}

extension StorageLog {
    /// How many appends and syncs have waited for a BUSY backend since the log was opened.
    var busyWaits: UInt64 { self.backlog.withLock { $0.waited } }

    /// Runs appends and syncs in submission order, on the caller's thread (non-blocking backend,
    /// or a storage thread) or this log's serial lane. A call the backend refuses with BUSY is not
    /// failed: it waits, with every later append and sync of this log queued behind it, and is
    /// tried again after a pause (200 µs doubling to 20 ms) until the backend takes it —
    /// backpressure, so a write pipeline that is momentarily full slows producers instead of
    /// failing them. Only after `busyRetryLimit` of refusals does it complete with BUSY. Later
    /// calls keep their order: a sync queued behind a waiting append still covers it.
    func submit(_ call: StorageCall) {
        // A blocking backend is called right here from a storage thread (a request handed to the
        // pool whole, kstore.h "Threading": any call may block there); from other threads through
        // the log's lane.
        guard self.context.usesBlockingPool, !BlockingExecutor.isStorageThread else {
            self.runInOrder(call)
            return
        }
        self.operationLane.enqueue { self.runInOrder(call) }
    }

    private func runInOrder(_ call: StorageCall) {
        if !self.backlogOwned.load(ordering: .acquiring) {
            // Nothing waits (the common case, without a lock): call the backend right here.
            if self.attempt(call) { return }
            let owner = self.backlog.withLock { backlog -> Bool in
                guard !backlog.owned else {
                    // Another call, concurrent with this one, waits already: queue behind it.
                    backlog.calls.append(call)
                    return false
                }
                self.setOwned(&backlog, true)
                return true
            }
            if owner { self.drainBacklog(first: call, refused: true) }
            return
        }
        let direct = self.backlog.withLock { backlog in
            if backlog.owned {
                backlog.calls.append(call)
                return false
            }
            self.setOwned(&backlog, true)
            return true
        }
        if direct { self.drainBacklog(first: call) }
    }

    /// Calls the backend's member for `call`. Returns false, having delivered nothing, when the
    /// backend answered BUSY; otherwise the call is delivered now or will be by the callback.
    private func attempt(_ call: StorageCall) -> Bool {
        call.beginAttempt()
        let context = Unmanaged.passRetained(call).toOpaque()
        let handle = self.handle
        let status: Int32
        switch call.operation {
        case .append(let firstOffset, let lastOffset, let maxTimestamp, let parts, let checkedBatch):
            // kstore.h append_checked_batch where the table has it; otherwise append, a REQUIRED
            // member checked non-NULL in LogHandle.init.
            let append =
                checkedBatch && handle.hasAppendCheckedBatch
                ? handle.methods.append_checked_batch! : handle.methods.append!
            status = withIovecs(parts) { iovecs, iovecCount in
                self.mutationLock.withLock { _ in
                    append(
                        handle.pointer,
                        firstOffset,
                        lastOffset,
                        maxTimestamp,
                        iovecs,
                        iovecCount,
                        storageCallCompletion,
                        context
                    )
                }
            }
        case .sync:
            // REQUIRED member, checked non-NULL in LogHandle.init.
            status = handle.methods.sync!(handle.pointer, storageCallCompletion, context)
        }
        guard status == KSTORE_OK else {
            // Rejected: the backend never calls the callback, so the reference is ours to drop.
            Unmanaged<StorageCall>.fromOpaque(context).release()
            if status == KSTORE_ERR_BUSY { return false }
            self.deliverOnLane { call.deliver(status) }
            return true
        }
        if let fired = call.memberReturned() {
            if fired == KSTORE_OK && self.laneDeliveries.load(ordering: .acquiring) == 0 {
                // A synchronous backend completed during the call (memory; file on a storage
                // thread): the member has returned, nothing waits on the lane, so deliver here.
                call.deliver(fired)
            } else {
                self.deliverOnLane { call.deliver(fired) }
            }
        }
        return true
    }

    /// A backend callback after the member returned, on the backend's thread, inside the callback.
    /// A success is delivered right here (the host's completions are short and never call the
    /// backend): no thread hand-off. A failure needs last_error, which the ABI forbids inside a
    /// callback, so it hops to this log's completion lane — and so does everything after it until
    /// the lane is drained, to keep the order kstore.h promises.
    func deliverFromBackend(_ call: StorageCall, _ status: Int32) {
        if status == KSTORE_OK && self.laneDeliveries.load(ordering: .acquiring) == 0 {
            call.deliver(status)
        } else {
            self.deliverOnLane { call.deliver(status) }
        }
    }

    /// Runs a delivery through the completion lane (right here if the lane is idle), counting it in
    /// `laneDeliveries` so that backend callbacks do not overtake it.
    private func deliverOnLane(_ delivery: @escaping @Sendable () -> Void) {
        self.laneDeliveries.add(1, ordering: .acquiringAndReleasing)
        self.completionLane.runInlineOrEnqueue {
            delivery()
            self.laneDeliveries.subtract(1, ordering: .acquiringAndReleasing)
        }
    }

    /// Changes `owned` and its lock-free mirror together (with the backlog's lock held).
    private func setOwned(_ backlog: inout StorageBacklog, _ owned: Bool) {
        backlog.owned = owned
        self.backlogOwned.store(owned, ordering: .releasing)
    }

    /// Called by the owner of the backlog: tries `first` (or the head of the backlog), then every
    /// queued call, until the backlog is empty (ownership ends) or the backend answers BUSY
    /// (ownership passes to a scheduled retry). `refused`: the backend just refused `first`.
    private func drainBacklog(first: StorageCall?, refused: Bool = false) {
        var next = first
        var alreadyRefused = refused
        // Whether the call before the next one was taken or given up (not a retry's start).
        var previousDone = false
        while true {
            let call: StorageCall
            if let next {
                call = next
            } else {
                let head = self.backlog.withLock { [previousDone] backlog -> StorageCall? in
                    if previousDone {
                        backlog.busySince = nil
                        backlog.pause = Self.busyRetryPauseMin
                    }
                    guard let head = backlog.calls.popFirst() else {
                        self.setOwned(&backlog, false)
                        return nil
                    }
                    return head
                }
                guard let head else { return }
                call = head
            }
            next = nil
            if !alreadyRefused {
                previousDone = true
                if self.attempt(call) { continue }
            }
            alreadyRefused = false
            let now = ContinuousClock.now
            let pause = self.backlog.withLock { backlog -> Duration? in
                let since = backlog.busySince ?? now
                if backlog.busySince == nil {
                    backlog.waited += 1
                    self.context.observer?.callWaitedForBusyBackend()
                }
                guard now - since < Self.busyRetryLimit else { return nil }
                backlog.busySince = since
                backlog.calls.prepend(call)
                defer { backlog.pause = min(backlog.pause * 2, Self.busyRetryPauseMax) }
                return backlog.pause
            }
            guard let pause else {
                self.context.logger.warning(
                    "the backend stayed busy for \(Self.busyRetryLimit); failing the waiting operation",
                    metadata: ["storage.log": "\(self.name)"]
                )
                self.deliverOnLane { call.deliver(KSTORE_ERR_BUSY) }
                continue
            }
            Task.detached {
                try? await Task.sleep(for: pause)
                if self.context.usesBlockingPool {
                    self.operationLane.enqueue { self.drainBacklog(first: nil) }
                } else {
                    self.drainBacklog(first: nil)
                }
            }
            return
        }
    }
}
