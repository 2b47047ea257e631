#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Receives the host's own measurements of a storage engine: the fallback kstore.h documents for
/// backends that report no figures of their own (KSTORE_CONTROL_STATS), measured the same way for
/// every backend so their latencies compare.
///
/// Threading: called on the thread that completes the call — often the backend's own completion
/// thread, where kstore.h allows nothing slow — so an implementation must be quick (atomic counters,
/// a histogram), must not block and must never call the storage engine.
public protocol StorageObserver: Sendable {
    /// An append completed (successfully or not) `nanoseconds` after it was submitted; `byteCount`
    /// is the entry's size. A call that waited for a BUSY backend counts its wait.
    func appendCompleted(byteCount: Int, nanoseconds: UInt64, succeeded: Bool)
    /// A sync completed `nanoseconds` after it was submitted.
    func syncCompleted(nanoseconds: UInt64, succeeded: Bool)
    /// An append or sync was refused with KSTORE_ERR_BUSY and waits (once per waiting call).
    func callWaitedForBusyBackend()
}

/// CLOCK_MONOTONIC in nanoseconds: one vDSO call, no allocation (the clock the host times storage
/// calls with, and the broker its requests).
public enum MonotonicClock {
    @inline(__always)
    public static func nanoseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
    }
}
