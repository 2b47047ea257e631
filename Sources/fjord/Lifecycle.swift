import BrokerCore
import BrokerServer
import FjordOperations
import Logging
import ServiceLifecycle
import StorageHost
import Synchronization
import UnixSignals

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// The broker's parts as swift-service-lifecycle services. A ServiceGroup shuts its services down
// in the reverse order of registration, each after the one before it has finished, so `fjord`
// registers them as [storage, logs, timers, operations listener, Kafka listener]: on SIGTERM the
// Kafka listener stops accepting and answers what is in flight, then the operations listener
// closes, then retention, flushing and group rebalances stop, then every log is synced and
// closed, then the storage instance. Everything is started before the group runs (each part
// needs the one before it: recovery before the listener), so the services only wait for the
// shutdown and do their part of it.

/// The storage instance: closed last.
struct StorageService: Service, CustomStringConvertible {
    let engine: StorageEngine
    var description: String { "storage" }

    func run() async throws {
        try? await gracefulShutdown()
        await engine.close()
    }
}

/// The partitions, the committed-offsets log and the metadata log: synced and closed.
struct BrokerLogsService: Service, CustomStringConvertible {
    let broker: Broker
    var description: String { "broker logs" }

    func run() async throws {
        try? await gracefulShutdown()
        await broker.shutdown()
    }
}

/// Periodic flushing and retention, and the group coordinator's rebalance timers.
struct MaintenanceService: Service, CustomStringConvertible {
    let broker: Broker
    var description: String { "retention and group timers" }

    func run() async throws {
        try? await gracefulShutdown()
        broker.stopMaintenance()
    }
}

/// The operations listener (/metrics, /health).
struct OperationsService: Service, CustomStringConvertible {
    let server: OperationsServer
    var description: String { "operations listener" }

    func run() async throws {
        try? await gracefulShutdown()
        await server.shutdown()
    }
}

/// The Kafka listener: first to stop. Long polls are woken first, so the graceful shutdown does
/// not wait out their MaxWaitMs.
struct KafkaListenerService: Service, CustomStringConvertible {
    let server: KafkaServer
    let broker: Broker
    let health: HealthState?
    var description: String { "Kafka listener" }

    func run() async throws {
        try? await gracefulShutdown()
        health?.markStopping()
        broker.beginShutdown()
        await server.shutdown()
    }
}

/// SIGTERM and SIGINT, through swift-service-lifecycle's signal sequence: the first starts the
/// group's graceful shutdown (or, during startup, makes it start as soon as the group runs); a
/// second one, while that shutdown is still running, ends the process at once — an operator
/// pressing Ctrl-C twice means it.
final class ShutdownTrigger: Sendable {
    private struct State {
        var group: ServiceGroup?
        var requested = false
        var requestedAt: ContinuousClock.Instant?
    }

    /// A class, so the watcher task and the trigger share it.
    private final class Shared: Sendable {
        let state = Mutex(State())
    }

    private let shared = Shared()
    private let watcher: Task<Void, Never>

    /// Starts watching. Call first: a signal during startup is then not fatal.
    static func install(logger: Logger, onFirstSignal: @escaping @Sendable () -> Void) async -> ShutdownTrigger {
        // libdispatch's signal source on Linux sees the signal only if its default action (which
        // ends the process) does not run first; the previous hand-written watcher did the same.
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        return ShutdownTrigger(signals: signals, logger: logger, onFirstSignal: onFirstSignal)
    }

    private init(signals: UnixSignalsSequence, logger: Logger, onFirstSignal: @escaping @Sendable () -> Void) {
        let shared = self.shared
        watcher = Task {
            var received = 0
            for await signal in signals {
                received += 1
                if received > 1 {
                    printToStandardError("fjord: \(signal) again during shutdown; exiting now")
                    // _exit, not exit: skip atexit handlers, and never run `exit` concurrently with
                    // the main thread's own at the end of a graceful shutdown (glibc may deadlock).
                    _exit(128 + signal.rawValue)
                }
                logger.info("\(signal) received: shutting down (send it again to exit at once)")
                onFirstSignal()
                let group = shared.state.withLock { state -> ServiceGroup? in
                    state.requested = true
                    state.requestedAt = .now
                    return state.group
                }
                await group?.triggerGracefulShutdown()
            }
        }
    }

    /// When the first signal arrived.
    var requestedAt: ContinuousClock.Instant? { shared.state.withLock { $0.requestedAt } }

    /// Runs the group until its services have shut down.
    func run(_ group: ServiceGroup) async throws {
        let requested = shared.state.withLock { state -> Bool in
            state.group = group
            return state.requested
        }
        if requested { await group.triggerGracefulShutdown() }
        try await group.run()
    }

    /// Stops watching; a later signal is ignored. Call once shutdown is complete.
    func stop() {
        watcher.cancel()
    }
}
