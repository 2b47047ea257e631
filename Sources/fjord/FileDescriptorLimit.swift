#if canImport(Glibc)
import Glibc
#endif

/// The process's open-file limit (RLIMIT_NOFILE). Every connection and every open segment or index
/// file costs a descriptor; many distributions start processes with a soft limit of 1,024 under a
/// much higher hard limit, so fjord raises the soft limit to the hard one at startup.
enum FileDescriptorLimit {
    struct Limits: Sendable, Equatable {
        var soft: UInt64
        var hard: UInt64
    }

    static func current() -> Limits? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
        return Limits(soft: UInt64(limit.rlim_cur), hard: UInt64(limit.rlim_max))
    }

    /// Raises the soft limit to the hard limit. Returns the limits before and after (after equals
    /// before when nothing changed or the raise was refused), nil when they cannot be read.
    static func raiseSoftToHard() -> (before: Limits, after: Limits)? {
        guard let before = current() else { return nil }
        guard before.soft < before.hard else { return (before, before) }
        var limit = rlimit(rlim_cur: rlim_t(before.hard), rlim_max: rlim_t(before.hard))
        guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return (before, before) }
        return (before, current() ?? before)
    }
}
