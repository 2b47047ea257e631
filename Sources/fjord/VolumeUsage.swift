#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The size and free space of the file system holding a directory (statvfs), for DescribeLogDirs.
enum VolumeUsage {
    /// Total and available bytes (to unprivileged users, as Kafka's `usable space`); nil when the
    /// directory cannot be examined (a memory backend's data directory need not exist).
    static func of(_ path: String) -> (totalBytes: Int64, usableBytes: Int64)? {
        var stats = statvfs()
        var status: Int32
        repeat { status = statvfs(path, &stats) } while status != 0 && errno == EINTR
        guard status == 0 else { return nil }
        let unit = Int64(stats.f_frsize)
        return (Int64(stats.f_blocks) * unit, Int64(stats.f_bavail) * unit)
    }
}
