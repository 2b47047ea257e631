import Dispatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Turns SIGINT and SIGTERM into an awaitable event. The first signal starts a graceful shutdown; a
/// second one, while that shutdown is still running, exits the process at once (an operator pressing
/// Ctrl-C twice means it).
final class ShutdownSignals: @unchecked Sendable {
    // @unchecked Sendable: `sources` is written only in `init` and read only in `stop`, after the
    // handlers were installed; `received` is touched only on `queue`, which is serial.
    private let queue = DispatchQueue(label: "fjord.signals")
    private var sources: [any DispatchSourceSignal] = []
    private var received = 0
    private let stream: AsyncStream<Int32>
    private let continuation: AsyncStream<Int32>.Continuation

    init(signals: [Int32] = [SIGINT, SIGTERM]) {
        (self.stream, self.continuation) = AsyncStream.makeStream(of: Int32.self)
        for signalNumber in signals {
            // The default action would kill the process before the dispatch source sees the signal.
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: self.queue)
            // The handler holds `self` strongly: the watcher must outlive `wait()` to catch the second
            // signal; `stop()` breaks the cycle.
            source.setEventHandler {
                self.received += 1
                if self.received == 1 {
                    self.continuation.yield(signalNumber)
                } else {
                    printToStandardError("fjord: \(Self.name(of: signalNumber)) again during shutdown; exiting now")
                    // _exit, not exit: skip atexit handlers, and never run `exit` concurrently with the
                    // main thread's own `exit` at the end of a graceful shutdown (glibc may deadlock).
                    _exit(128 + signalNumber)
                }
            }
            source.resume()
            self.sources.append(source)
        }
    }

    /// Waits for the first signal and returns its number.
    func wait() async -> Int32 {
        for await signalNumber in self.stream {
            return signalNumber
        }
        return SIGTERM
    }

    /// Stops watching; a later signal is ignored. Call once shutdown is complete.
    func stop() {
        for source in self.sources {
            source.cancel()
        }
    }

    static func name(of signalNumber: Int32) -> String {
        switch signalNumber {
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        default: "signal \(signalNumber)"
        }
    }
}
