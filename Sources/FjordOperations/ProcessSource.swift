#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The process metrics every Prometheus client exports under the same names (`process_*`, from
/// /proc): CPU seconds, resident memory, open and allowed descriptors — the last also the host's
/// fallback for a backend's open files — and the start time.
struct ProcessSource: ScrapeSource {
    func collect(into series: ScrapeSeries) {
        let stat = Self.readFile("/proc/self/stat")
        // Fields after the command name (which may contain spaces) start at "state" (field 3).
        if let stat, let close = stat.lastIndex(of: ")") {
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
            if fields.count > 19, let utime = Double(fields[11]), let stime = Double(fields[12]),
                let startTicks = Double(fields[19]), ticks > 0
            {
                series.counter(
                    "process_cpu_seconds_total",
                    help: "Total user and system CPU time spent in seconds.",
                    total: (utime + stime) / ticks
                )
                if let bootTime = Self.bootTimeSeconds() {
                    series.gauge(
                        "process_start_time_seconds",
                        help: "Start time of the process since unix epoch in seconds.",
                        bootTime + startTicks / ticks
                    )
                }
            }
        }
        if let statm = Self.readFile("/proc/self/statm") {
            let fields = statm.split(separator: " ")
            if fields.count > 1, let pages = Double(fields[1]) {
                series.gauge(
                    "process_resident_memory_bytes",
                    help: "Resident memory size in bytes.",
                    pages * Double(sysconf(Int32(_SC_PAGESIZE)))
                )
            }
        }
        if let open = Self.openDescriptorCount() {
            series.gauge("process_open_fds", help: "Number of open file descriptors.", Double(open))
        }
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            series.gauge("process_max_fds", help: "Maximum number of open file descriptors.", Double(limit.rlim_cur))
        }
    }

    static func readFile(_ path: String) -> String? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func bootTimeSeconds() -> Double? {
        guard let stat = readFile("/proc/stat") else { return nil }
        for line in stat.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6).trimmingPrefix(while: { $0 == " " }))
        }
        return nil
    }

    private static func openDescriptorCount() -> Int? {
        guard let directory = opendir("/proc/self/fd") else { return nil }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let isDot = withUnsafeBytes(of: entry.pointee.d_name) { $0.first == UInt8(ascii: ".") }
            if !isDot { count += 1 }
        }
        // The directory being read holds a descriptor of its own.
        return max(0, count - 1)
    }
}
