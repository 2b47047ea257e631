internal import CKStore
import Logging
import NIOCore
import Synchronization

/// What a log holds (kstore.h `kstore_log_state`).
public struct StorageLogState: Sendable, Equatable {
    /// The first readable offset.
    public var startOffset: Int64
    /// The offset the next append must start at.
    public var endOffset: Int64
    /// Every entry below it is on stable storage (equals `endOffset` without DURABLE).
    public var durableEndOffset: Int64
    /// The largest max timestamp of the entries in [start, end); -1 if none.
    public var maxTimestamp: Int64
    /// Bytes of the log's entries (entry bytes only).
    public var byteCount: UInt64
    /// Entries in [start, end), counting one that lies partly below start.
    public var entryCount: UInt64

    public init(
        startOffset: Int64,
        endOffset: Int64,
        durableEndOffset: Int64,
        maxTimestamp: Int64,
        byteCount: UInt64,
        entryCount: UInt64
    ) {
        self.startOffset = startOffset
        self.endOffset = endOffset
        self.durableEndOffset = durableEndOffset
        self.maxTimestamp = maxTimestamp
        self.byteCount = byteCount
        self.entryCount = entryCount
    }
}

/// Whole entries returned by `StorageLog.read`.
public struct StorageReadResult: Sendable {
    /// The entries' bytes, concatenated, exactly as appended.
    public var bytes: ByteBuffer
    /// The offset after the last entry returned; the requested offset when none was.
    public var nextOffset: Int64
    public var entryCount: Int

    public init(bytes: ByteBuffer, nextOffset: Int64, entryCount: Int) {
        self.bytes = bytes
        self.nextOffset = nextOffset
        self.entryCount = entryCount
    }
}

/// One open log (kstore.h `kstore_log`), for example one Kafka partition.
///
/// Threading: for a non-blocking backend every call runs on the caller's thread. Otherwise each
/// call is queued on this log's serial lane on the blocking pool: one log's calls run one at a time
/// in submission order, different logs in parallel, and the async methods suspend without blocking
/// a thread. Completions of `submitAppend`/`submitSync` are delivered one at a time, in the order
/// the calls were made.
public final class StorageLog: Sendable {
    /// The first capacity `read` gives its buffer; it grows only when entries need more.
    static let readInitialBytes = 16 * 1024

    private enum Phase: Equatable {
        case open, closing, closed
    }

    private struct State {
        var phase = Phase.open
        var drainWaiter: CheckedContinuation<Void, Never>?
        var closeWaiters: [CheckedContinuation<Void, Never>] = []
        /// The start offset the host keeps itself when the backend has no delete_before
        /// (kstore.h host fallback); `Int64.min` otherwise.
        var hostStartOffset = Int64.min
    }

    public let name: String
    let handle: LogHandle
    let context: InstanceContext
    let operationLane: SerialLane
    let completionLane: SerialLane
    private let lifecycle = LockedState(State())
    /// Calls in progress plus accepted appends/syncs whose completion is not yet delivered, and
    /// `closingFlag` once `close` began: counted without a lock, because every append enters and
    /// leaves.
    private let active = Atomic<Int>(0)
    private static let closingFlag = 1 << 62
    /// kstore.h "Threading": the host never runs two mutating calls (append, truncate_to,
    /// delete_before, enforce_retention) on one log at once. The caller serializes appends, but
    /// retention or truncation may come from another task, so every mutating call holds this lock
    /// (uncontended on the blocking path, where the lane already serializes them). It is never
    /// held while a completion is delivered, so a completion may submit the next append.
    let mutationLock = LockedState(())
    /// Appends and syncs in submission order while the backend answers BUSY (see `submit`).
    let backlog = LockedState(StorageBacklog())
    /// `backlog.owned`, readable without the lock: while false, appends and syncs call the
    /// backend directly. Written only with the backlog's lock held.
    let backlogOwned = Atomic<Bool>(false)
    /// Deliveries queued on or running through the completion lane. While it is not zero, a
    /// backend callback's success is queued behind them instead of being delivered at once.
    let laneDeliveries = Atomic<Int>(0)

    /// How long the host keeps retrying an append or sync that the backend refuses with
    /// KSTORE_ERR_BUSY (kstore.h: temporarily unable, retryable — the uring backend's staging is
    /// full, or it is rolling back a failed write) before it reports the refusal.
    static let busyRetryLimit: Duration = .seconds(30)
    /// The pause before the first retry; it doubles up to `busyRetryPauseMax`.
    static let busyRetryPauseMin: Duration = .microseconds(200)
    static let busyRetryPauseMax: Duration = .milliseconds(20)

    init(name: String, handle: LogHandle, context: InstanceContext) {
        self.name = name
        self.handle = handle
        self.context = context
        self.operationLane = SerialLane(executor: context.executor)
        self.completionLane = SerialLane(executor: context.executor)
    }

    public var capabilities: StorageCapabilities { self.context.backend.capabilities }

    /// Whether the backend can remove entries from the end (kstore.h truncate_to). Without it the
    /// host cannot roll back a failed append and must treat the failure as fatal for the log.
    public var supportsTruncation: Bool { self.handle.member(\.truncate_to) != nil }

    /// The start offset the host keeps for a backend without delete_before (`Int64.min` otherwise).
    var hostStartOffset: Int64 { self.lifecycle.withLock { $0.hostStartOffset } }

    // MARK: Appends and syncs

    /// Submits one append in order. The CALLER serializes appends per log (the broker calls this
    /// under its partition lock, in offset order). The bytes are `parts` concatenated (the broker
    /// passes a rewritten 16-byte header + the rest of the producer's batch). A non-blocking
    /// backend is called right here, without copying the bytes; so is a blocking one when the
    /// caller is a storage thread (`StorageEngine.runOnStorageThread`); otherwise the call is
    /// queued on the log's serial lane on the blocking pool, preserving order. `completion` runs
    /// exactly once, on any thread.
    ///
    /// Where `completion` runs: a backend that completes before its append returns (memory) has
    /// its completion run on the caller's thread *before submitAppend returns* — so the caller must
    /// not hold a non-reentrant lock that the completion takes. A backend that completes later has
    /// it run on the backend's completion thread (a failure: on a pool thread), so it must be short
    /// and must not call the backend; `submitSyncOffCompletionThread` is the way to sync from
    /// there. Completions of one log never run concurrently and arrive in submission order. A
    /// rejected append (a contract violation such as a first offset that does not continue the
    /// log, or a closed log) completes with the error and changes nothing.
    ///
    /// `checkedBatch`: the entry is a Kafka RecordBatch v2 whose CRC-32C field the caller has
    /// checked against bytes 21..<end (the produce path's validator or the rewriter computed it),
    /// so a backend with kstore.h `append_checked_batch` may rely on it instead of checksumming
    /// every byte again. Pass true only for such bytes.
    public func submitAppend(
        firstOffset: Int64,
        lastOffset: Int64,
        maxTimestamp: Int64,
        parts: [ByteBuffer],
        checkedBatch: Bool = false,
        completion: @escaping @Sendable (Result<Void, StorageError>) -> Void
    ) {
        do {
            try self.enter("append")
        } catch {
            completion(.failure(error))
            return
        }
        let operation = StorageCall.Operation.append(
            firstOffset: firstOffset,
            lastOffset: lastOffset,
            maxTimestamp: maxTimestamp,
            parts: parts,
            checkedBatch: checkedBatch
        )
        self.submit(StorageCall(log: self, operation: operation, completion: completion))
    }

    /// Appends one entry and waits until it is readable (see `submitAppend`).
    public func append(
        firstOffset: Int64,
        lastOffset: Int64,
        maxTimestamp: Int64,
        parts: [ByteBuffer],
        checkedBatch: Bool = false
    ) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            self.submitAppend(
                firstOffset: firstOffset,
                lastOffset: lastOffset,
                maxTimestamp: maxTimestamp,
                parts: parts,
                checkedBatch: checkedBatch
            ) {
                continuation.resume(with: $0)
            }
        }
    }

    /// Submits a sync: `completion` runs once every append submitted before it is readable and,
    /// on a DURABLE backend, on stable storage. Same threading and ordering as `submitAppend`.
    public func submitSync(completion: @escaping @Sendable (Result<Void, StorageError>) -> Void) {
        do {
            try self.enter("sync")
        } catch {
            completion(.failure(error))
            return
        }
        self.submit(StorageCall(log: self, operation: .sync, completion: completion))
    }

    /// `submitSync` for a caller inside a completion (of this or another log of the instance): the
    /// backend's call is made from this log's lane on the blocking pool, never from the calling
    /// thread, which may be the backend's own (kstore.h: a callback must not call the instance).
    public func submitSyncOffCompletionThread(completion: @escaping @Sendable (Result<Void, StorageError>) -> Void) {
        self.operationLane.enqueue { self.submitSync(completion: completion) }
    }

    /// Syncs and waits (see `submitSync`).
    public func sync() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            self.submitSync { continuation.resume(with: $0) }
        }
    }

    // MARK: Reads and queries

    /// Whole entries from the one containing `offset`, none starting at or after `limit`, at most
    /// `maxBytes` in total — except that when `minimumOneEntry` is true and the first entry alone
    /// exceeds maxBytes, that one entry is returned (Kafka's KIP-74 rule). Allocates only what it
    /// returns (do not allocate maxBytes up front: start small, grow, read on from nextOffset).
    ///
    /// Throws `.outOfRange` when `offset` lies outside [start, end]. Reading at the end or at/after
    /// `limit` returns no entries.
    public func read(
        from offset: Int64,
        limit: Int64,
        maxBytes: Int,
        minimumOneEntry: Bool
    ) async throws
        -> StorageReadResult
    {
        try await self.perform("read") {
            try self.performRead(from: offset, limit: limit, maxBytes: maxBytes, minimumOneEntry: minimumOneEntry)
        }
    }

    /// The log's `control` member (backend-specific operations, kstore.h): returns its status,
    /// KSTORE_ERR_UNSUPPORTED when the backend has none. Runs on the calling thread.
    public func control(_ op: Int32, _ argument: UnsafeMutableRawPointer?) -> Int32 {
        guard let control = self.handle.member(\.control) else { return KSTORE_ERR_UNSUPPORTED }
        return control(self.handle.pointer, op, argument)
    }

    /// The log's current state, straight from the backend's memory (kstore.h: state never blocks),
    /// on the caller's thread whatever the backend.
    public func state() throws -> StorageLogState {
        try self.enter("state")
        defer { self.leave() }
        return try self.fetchState()
    }

    /// The first offset (from start) of the first entry whose max timestamp is >= `timestamp`, or
    /// nil if there is none. Uses the backend's time index; without find_offset_by_time the host
    /// scans the entries with read and `StorageHostConfiguration.entryMaxTimestamp`.
    public func findOffset(atOrAfterTimestamp timestamp: Int64) async throws -> Int64? {
        try await self.perform("find offset by time") { try self.performFindOffset(atOrAfterTimestamp: timestamp) }
    }

    // MARK: Mutations

    /// Removes every entry whose first offset is >= `offset`, an entry boundary in [start, end]
    /// (else `.outOfRange`). Throws `.unsupported` when the backend cannot truncate.
    public func truncate(to offset: Int64) async throws {
        try await self.perform("truncate") {
            guard let truncate = self.handle.member(\.truncate_to) else {
                throw StorageError(
                    code: .unsupported,
                    message: "truncate log '\(self.name)' to \(offset): backend '\(self.context.backend.name)' has no "
                        + "truncate_to, so a failed append is fatal for the log"
                )
            }
            let status = self.mutationLock.withLock { _ in truncate(self.handle.pointer, offset) }
            guard status == KSTORE_OK else {
                throw self.context.error(status, "truncate log '\(self.name)' to \(offset)")
            }
        }
    }

    /// Advances the start offset to `offset` (no-op below start, `.outOfRange` beyond end); reads
    /// below it then throw `.outOfRange`.
    public func deleteBefore(_ offset: Int64) async throws {
        try await self.perform("delete before") {
            if let deleteBefore = self.handle.member(\.delete_before) {
                let status = self.mutationLock.withLock { _ in deleteBefore(self.handle.pointer, offset) }
                guard status == KSTORE_OK else {
                    throw self.context.error(status, "delete before \(offset) in log '\(self.name)'")
                }
                return
            }
            // kstore.h fallback: the host keeps the start offset; no storage is reclaimed.
            let state = try self.fetchState()
            guard offset <= state.endOffset else {
                throw StorageError(
                    code: .outOfRange,
                    message: "delete before \(offset) in log '\(self.name)': beyond the end \(state.endOffset)"
                )
            }
            self.lifecycle.withLock { $0.hostStartOffset = max($0.hostStartOffset, offset) }
        }
    }

    /// Retention (kstore.h enforce_retention): deletes whole storage units from the start while
    /// the log holds more than `retainBytes` bytes (ignored when negative) or the oldest unit is
    /// wholly older than `retainAfterTimestamp` (ignored when negative). Returns the new start
    /// offset. Without the member, retention is not enforced and a warning is logged.
    public func enforceRetention(retainBytes: Int64, retainAfterTimestamp: Int64) async throws -> Int64 {
        try await self.perform("enforce retention") {
            guard let enforce = self.handle.member(\.enforce_retention) else {
                self.context.logger.warning(
                    "backend has no enforce_retention: retention is not enforced",
                    metadata: ["storage.log": "\(self.name)"]
                )
                return try self.fetchState().startOffset
            }
            var newStartOffset: Int64 = 0
            let status = self.mutationLock.withLock { _ in
                enforce(self.handle.pointer, retainBytes, retainAfterTimestamp, &newStartOffset)
            }
            guard status == KSTORE_OK else {
                throw self.context.error(status, "enforce retention on log '\(self.name)'")
            }
            return max(newStartOffset, self.hostStartOffset)
        }
    }

    // MARK: Closing

    /// Waits until every call in progress has finished and every completion has been delivered,
    /// then releases the log (the backend's close, exactly once). Concurrent and later calls wait
    /// for the first to finish; every other call on the log afterwards throws or completes with an
    /// error.
    public func close() async {
        let first = self.lifecycle.withLock { state in
            guard state.phase == .open else { return false }
            state.phase = .closing
            return true
        }
        guard first else {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let closed = self.lifecycle.withLock { state in
                    if state.phase == .closed { return true }
                    state.closeWaiters.append(continuation)
                    return false
                }
                if closed { continuation.resume() }
            }
            return
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            // The flag is set under the lock, so a `leave` that empties the count after it either
            // finds the waiter stored or happened before this check saw the count.
            let drained = self.lifecycle.withLock { state in
                let count = self.active.bitwiseOr(Self.closingFlag, ordering: .acquiringAndReleasing).newValue
                if count == Self.closingFlag { return true }
                state.drainWaiter = continuation
                return false
            }
            if drained { continuation.resume() }
        }
        let handle = self.handle
        // REQUIRED member, checked non-NULL in LogHandle.init.
        let closeLog = { @Sendable in handle.methods.close!(handle.pointer) }
        if self.context.usesBlockingPool {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                self.operationLane.enqueue {
                    closeLog()
                    continuation.resume()
                }
            }
        } else {
            closeLog()
        }
        self.context.unregister(self)
        self.context.logger.debug("log closed", metadata: ["storage.log": "\(self.name)"])
        let waiters = self.lifecycle.withLock { state in
            state.phase = .closed
            defer { state.closeWaiters = [] }
            return state.closeWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    // MARK: - Machinery

    func enter(_ operation: String) throws(StorageError) {
        let count = self.active.add(1, ordering: .acquiring).newValue
        guard count & Self.closingFlag == 0 else {
            self.leave()
            throw StorageError(code: .invalidArgument, message: "\(operation): log '\(self.name)' is closed")
        }
    }

    func leave() {
        let count = self.active.subtract(1, ordering: .acquiringAndReleasing).newValue
        guard count == Self.closingFlag else { return }
        let waiter = self.lifecycle.withLock { state -> CheckedContinuation<Void, Never>? in
            defer { state.drainWaiter = nil }
            return state.drainWaiter
        }
        waiter?.resume()
    }

    /// Runs a call on the caller's thread (non-blocking backend) or on this log's serial lane.
    private func perform<T: Sendable>(_ operation: String, _ body: @escaping @Sendable () throws -> T) async throws -> T
    {
        try self.enter(operation)
        guard self.context.usesBlockingPool else {
            defer { self.leave() }
            return try body()
        }
        return try await withCheckedThrowingContinuation { continuation in
            self.operationLane.enqueue {
                let result = Result { try body() }
                self.leave()
                continuation.resume(with: result)
            }
        }
    }
}
