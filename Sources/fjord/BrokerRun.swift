import BrokerCore
import BrokerServer
import FjordConfiguration
import FjordOperations
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import StorageBackends
import StorageHost

#if canImport(Glibc)
import Glibc
#endif

/// One run of the broker with resolved settings: start every part in dependency order (operations
/// listener, storage and recovery, Kafka listener), then run them as services until SIGTERM or
/// SIGINT shuts them down in the reverse order (see Lifecycle.swift).
struct BrokerRun {
    let settings: BrokerSettings

    var backendSelection: BackendSelection {
        if let library = settings.backendLibrary { return .library(path: library) }
        return .builtin(name: settings.backendName ?? defaultBackendName)
    }

    /// Runs the broker until it is stopped. Returns the process exit status.
    func run() async -> Int32 {
        bootstrapLogging()
        let logger = Logger(label: "fjord")
        let health = settings.metricsListen == nil ? nil : HealthState()
        // Installed first, so a signal during startup is not fatal; it is acted on once startup is done.
        let trigger = await ShutdownTrigger.install(logger: logger) { health?.markStopping() }
        for entry in settings.effectiveConfigs {
            logger.info("config \(entry.name)=\(entry.value ?? "(hidden)") (\(entry.origin))")
        }
        if let limits = FileDescriptorLimit.raiseSoftToHard() {
            logger.info(
                "open-file limit: soft \(limits.before.soft) -> \(limits.after.soft), hard \(limits.after.hard)"
            )
        }

        var exporter: MetricsExporter?
        var operations: OperationsServer?
        if let address = settings.metricsListen, let health {
            let created = MetricsExporter()
            created.observeProcess()
            created.observe(health: health)
            let server = OperationsServer(
                host: address.host,
                port: address.port,
                exporter: created,
                health: health,
                logger: Logger(label: "fjord.metrics")
            )
            do {
                let bound = try await server.start()
                logger.info(
                    "metrics and health on http://\(Self.hostPort(bound, address))/metrics, /health/live, /health/ready"
                )
            } catch {
                return Self.fail("cannot listen on \(address) for metrics: \(Self.describe(error))")
            }
            (exporter, operations) = (created, server)
        }

        guard let started = await startStorageAndBroker(exporter: exporter) else {
            await operations?.shutdown()
            return 1
        }
        let (engine, broker) = started

        let server = KafkaServer(
            configuration: settings.serverConfiguration,
            handler: broker,
            logger: Logger(label: "fjord.server"),
            group: MultiThreadedEventLoopGroup.singleton
        )
        let address: SocketAddress
        do {
            address = try await server.start()
        } catch {
            await broker.shutdown()
            await engine.close()
            await operations?.shutdown()
            return Self.fail("cannot listen on \(settings.listener.address): \(Self.describe(error))")
        }
        exporter?.observe(server: server)
        exporter?.observe(broker: broker)
        let listen = settings.listener.address
        logger.info(
            "fjord listening on \(Self.hostPort(address, listen)) (backend \(backendSelection), data \(settings.dataDirectory))"
        )
        if settings.advertisedAddress != listen {
            logger.info("advertising \(settings.advertisedAddress) to clients")
        }
        health?.markReady()

        var services: [any Service] = [
            StorageService(engine: engine), BrokerLogsService(broker: broker), MaintenanceService(broker: broker),
        ]
        if let operations { services.append(OperationsService(server: operations)) }
        services.append(KafkaListenerService(server: server, broker: broker, health: health))
        var lifecycleLogger = Logger(label: "fjord.lifecycle")
        lifecycleLogger.logLevel = .notice
        let group = ServiceGroup(services: services, logger: lifecycleLogger)
        do {
            try await trigger.run(group)
        } catch {
            logger.error("the service group failed: \(error)")
        }
        trigger.stop()
        let since = trigger.requestedAt.map { ContinuousClock.now - $0 } ?? .zero
        logger.info("fjord stopped after \(since)")
        return 0
    }

    /// Opens the backend and starts the broker over it (recovery), timing both for
    /// `fjord_storage_recovery_seconds`. nil after a failure, which it has reported.
    private func startStorageAndBroker(exporter: MetricsExporter?) async -> (StorageEngine, Broker)? {
        let backend: StorageBackend
        do {
            backend = try Storage.backend(backendSelection)
        } catch {
            _ = Self.fail("cannot open storage backend \(backendSelection) in \(settings.dataDirectory): \(error)")
            return nil
        }
        let storageMetrics = exporter.map { StorageMetrics(backend: backend.name, factory: $0.factory) }
        let recoveryStarted = ContinuousClock.now
        let engine: StorageEngine
        do {
            engine = try Storage.open(
                backend,
                dataDirectory: settings.dataDirectory,
                backendOptions: settings.backendOptions.map { (key: $0.key, value: $0.value) },
                ioThreads: settings.ioThreads,
                observer: storageMetrics,
                logger: Logger(label: "fjord.storage")
            )
        } catch {
            _ = Self.fail("cannot open storage backend \(backendSelection) in \(settings.dataDirectory): \(error)")
            return nil
        }
        let broker: Broker
        do {
            var configuration = try settings.brokerConfiguration()
            let directory = Self.absolutePath(settings.dataDirectory)
            configuration.logDirectory = directory
            configuration.logDirectoryUsage = { VolumeUsage.of(directory) }
            broker = try await Broker.start(
                configuration: configuration,
                storage: engine,
                logger: Logger(label: "fjord.broker"),
                metrics: exporter.map { BrokerMetrics(factory: $0.factory) } ?? .disabled
            )
        } catch {
            await engine.close()
            _ = Self.fail("cannot start the broker: \(error)")
            return nil
        }
        if let storageMetrics, let exporter {
            let elapsed = ContinuousClock.now - recoveryStarted
            storageMetrics.recordRecovery(
                seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            )
            storageMetrics.readBackendStatistics { engine.backendStatistics() }
            exporter.observe(storage: storageMetrics)
        }
        return (engine, broker)
    }

    private func bootstrapLogging() {
        // Cannot fail: the resolver accepted only swift-log's level names.
        let level = Logger.Level(rawValue: settings.logLevel)!
        let format = settings.logFormat
        LoggingSystem.bootstrap { label in
            switch format {
            case .text:
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            case .json:
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
        }
    }

    private static func hostPort(_ address: SocketAddress, _ fallback: HostPort) -> HostPort {
        HostPort(host: address.ipAddress ?? fallback.host, port: address.port ?? fallback.port)
    }

    /// Prints one line on stderr and returns the exit status for a startup failure.
    static func fail(_ message: String) -> Int32 {
        printToStandardError("fjord: error: \(message)")
        return 1
    }

    /// "address already in use" rather than "bind(descriptor:ptr:bytes:): Address already in use (errno: 98)".
    static func describe(_ error: any Error) -> String {
        if let error = error as? IOError {
            return String(cString: strerror(error.errnoCode))
        }
        return "\(error)"
    }

    /// `path` made absolute against the working directory (DescribeLogDirs reports absolute paths).
    static func absolutePath(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        guard let cwd = getcwd(nil, 0) else { return path }
        defer { free(cwd) }
        let base = String(cString: cwd)
        let relative = path.hasPrefix("./") ? String(path.dropFirst(2)) : path
        return relative.isEmpty || relative == "." ? base : base + "/" + relative
    }
}
