#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A value protected by a pthread mutex.
///
/// Why not `Synchronization.Mutex`: on Linux it is a futex that ThreadSanitizer cannot see, so
/// every critical section showed up as a race and hid real ones; pthread mutexes are intercepted.
///
/// `@unchecked Sendable`: `value` is only touched inside `withLock`, with the mutex held, and the
/// values are Sendable themselves. `package`: the storage test support (Tests/StorageTestSupport), a
/// plain target that must build without testability, uses it too.
package final class LockedState<Value: Sendable>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var value: Value

    package init(_ value: Value) {
        self.value = value
        precondition(pthread_mutex_init(self.mutex, nil) == 0, "pthread_mutex_init failed")
    }

    deinit {
        pthread_mutex_destroy(self.mutex)
        self.mutex.deallocate()
    }

    /// Runs `body` with the mutex held. `body` must not call `withLock` on the same instance.
    package func withLock<Result, Failure: Error>(
        _ body: (inout Value) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        pthread_mutex_lock(self.mutex)
        defer { pthread_mutex_unlock(self.mutex) }
        return try body(&self.value)
    }
}

/// A pthread mutex and condition variable (NIOPosix's is off limits here).
///
/// `@unchecked Sendable`: the pthread objects are made for use from many threads; the pointers
/// are allocated once and freed in deinit.
final class ConditionLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        precondition(pthread_mutex_init(self.mutex, nil) == 0, "pthread_mutex_init failed")
        precondition(pthread_cond_init(self.condition, nil) == 0, "pthread_cond_init failed")
    }

    deinit {
        pthread_cond_destroy(self.condition)
        pthread_mutex_destroy(self.mutex)
        self.condition.deallocate()
        self.mutex.deallocate()
    }

    func lock() { pthread_mutex_lock(self.mutex) }
    func unlock() { pthread_mutex_unlock(self.mutex) }
    /// Waits for `signal`/`broadcast`; the caller holds the lock and re-checks its condition.
    func wait() { pthread_cond_wait(self.condition, self.mutex) }
    func signal() { pthread_cond_signal(self.condition) }
    func broadcast() { pthread_cond_broadcast(self.condition) }
}
