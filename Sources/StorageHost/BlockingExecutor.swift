import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A small pool of dedicated threads for backend calls that may block on I/O (backends without
/// KSTORE_CAP_NONBLOCKING, kstore.h "Threading"), and for delivering completions that a backend
/// reports from its own thread. Threads start lazily, up to `threadLimit`, so a host that never
/// needs the pool never starts a thread. Work runs either alone (`submit`) or through a
/// `SerialLane`, which keeps one log's calls in submission order while different logs run in
/// parallel.
///
/// `@unchecked Sendable`: every mutable field is read and written only with `lock` held.
final class BlockingExecutor: @unchecked Sendable {
    private enum Job {
        case work(@Sendable () -> Void)
        case lane(SerialLane)
    }

    let threadLimit: Int
    private let lock = ConditionLock()
    private var jobs = CircularBuffer<Job>()
    private var threadCount = 0
    private var idleThreadCount = 0
    private var stopping = false

    init(threadLimit: Int) {
        precondition(threadLimit >= 1, "the blocking executor needs at least one thread")
        self.threadLimit = threadLimit
    }

    /// Runs `work` on a pool thread, in no particular order relative to other work.
    func submit(_ work: @escaping @Sendable () -> Void) {
        self.enqueue(.work(work))
    }

    /// Called by a lane that has work and is not yet queued.
    fileprivate func schedule(_ lane: SerialLane) {
        self.enqueue(.lane(lane))
    }

    /// Lets the threads exit once the queue is empty. Work submitted afterwards still runs: the
    /// pool restarts a thread for it rather than dropping it.
    func shutdown() {
        self.lock.lock()
        self.stopping = true
        self.lock.broadcast()
        self.lock.unlock()
    }

    private func enqueue(_ job: Job) {
        self.lock.lock()
        self.jobs.append(job)
        if self.idleThreadCount > 0 {
            self.lock.signal()
        }
        // Start another thread while queued work outnumbers the threads about to take it.
        let startThread = self.jobs.count > self.idleThreadCount && self.threadCount < self.threadLimit
        if startThread {
            self.threadCount += 1
        }
        self.lock.unlock()
        if startThread {
            self.startThread()
        }
    }

    private func startThread() {
        let context = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(
            &thread,
            nil,
            { context in
                let executor = Unmanaged<BlockingExecutor>.fromOpaque(context!).takeRetainedValue()
                executor.runThread()
                return nil
            },
            context
        )
        if result == 0 {
            pthread_detach(thread)
            return
        }
        Unmanaged<BlockingExecutor>.fromOpaque(context).release()
        self.lock.lock()
        self.threadCount -= 1
        let noThreads = self.threadCount == 0
        self.lock.unlock()
        // Without any thread, queued storage work would never run and its callers would hang.
        precondition(!noThreads, "cannot start a storage thread (pthread_create: \(result))")
    }

    /// Whether the calling thread is one of a blocking executor's threads, where backend calls that
    /// may block are allowed (StorageLog then calls a blocking backend directly, not via a lane).
    static var isStorageThread: Bool { pthread_getspecific(storageThreadKey) != nil }

    /// Marks the pool's threads (a pthread key: thread-local, no Foundation).
    private static let storageThreadKey: pthread_key_t = {
        var key = pthread_key_t()
        let result = pthread_key_create(&key, nil)
        precondition(result == 0, "pthread_key_create failed: \(result)")
        return key
    }()

    private func runThread() {
        // Any non-NULL value marks the thread.
        pthread_setspecific(Self.storageThreadKey, UnsafeRawPointer(bitPattern: 1))
        while true {
            self.lock.lock()
            while self.jobs.isEmpty && !self.stopping {
                self.idleThreadCount += 1
                self.lock.wait()
                self.idleThreadCount -= 1
            }
            guard let job = self.jobs.popFirst() else {
                // Stopping and nothing left to do.
                self.threadCount -= 1
                self.lock.unlock()
                return
            }
            self.lock.unlock()
            switch job {
            case .work(let work): work()
            case .lane(let lane): lane.runBatch()
            }
        }
    }
}

/// A serial queue of work on a `BlockingExecutor`: items run one at a time, in the order they were
/// enqueued, on whichever pool thread picks the lane up.
final class SerialLane: Sendable {
    /// How many items a lane runs before it yields its thread to other lanes.
    private static let batchLimit = 16

    private struct State {
        var work = CircularBuffer<@Sendable () -> Void>()
        /// The lane is queued on the executor or running (inline or on a pool thread). Invariant:
        /// `work` is non-empty only while `scheduled` is true.
        var scheduled = false
    }

    private let executor: BlockingExecutor
    private let state = LockedState(State())

    init(executor: BlockingExecutor) {
        self.executor = executor
    }

    /// Appends `work`; it runs on a pool thread after everything enqueued before it.
    func enqueue(_ work: @escaping @Sendable () -> Void) {
        let schedule = self.state.withLock { state in
            state.work.append(work)
            if state.scheduled { return false }
            state.scheduled = true
            return true
        }
        if schedule {
            self.executor.schedule(self)
        }
    }

    /// Runs `work` right here if the lane is idle, otherwise enqueues it behind the lane's work, so
    /// the order stays the order of the calls either way.
    func runInlineOrEnqueue(_ work: @escaping @Sendable () -> Void) {
        let inline = self.state.withLock { state in
            if !state.scheduled {
                state.scheduled = true
                return true
            }
            state.work.append(work)
            return false
        }
        guard inline else { return }
        work()
        let schedule = self.state.withLock { state in
            if state.work.isEmpty {
                state.scheduled = false
                return false
            }
            return true
        }
        if schedule {
            self.executor.schedule(self)
        }
    }

    /// Called by a pool thread: runs up to `batchLimit` items, then requeues the lane if work is
    /// left, so one busy log cannot monopolise a thread.
    fileprivate func runBatch() {
        for _ in 0..<Self.batchLimit {
            let next = self.state.withLock { state -> (@Sendable () -> Void)? in
                if let work = state.work.popFirst() { return work }
                state.scheduled = false
                return nil
            }
            guard let next else { return }
            next()
        }
        self.executor.schedule(self)
    }
}
