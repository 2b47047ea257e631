import Synchronization

/// What `/health/live` and `/health/ready` answer. Live while the process serves HTTP at all;
/// ready only between "recovery is done and the Kafka listener accepts" and the start of a
/// shutdown, so a supervisor or load balancer sends clients only to a broker that can serve them.
public final class HealthState: Sendable {
    public enum Phase: UInt8, Sendable, CustomStringConvertible {
        /// Opening storage, recovering partitions, binding the Kafka listener.
        case starting = 0
        case ready = 1
        /// A graceful shutdown began.
        case stopping = 2

        public var description: String {
            switch self {
            case .starting: "starting"
            case .ready: "ready"
            case .stopping: "stopping"
            }
        }
    }

    private let phase = Atomic<UInt8>(Phase.starting.rawValue)

    public init() {}

    public var current: Phase { Phase(rawValue: phase.load(ordering: .acquiring)) ?? .stopping }

    /// Recovery is done and the Kafka listener accepts connections.
    public func markReady() {
        // Never back from stopping: a shutdown that began during startup wins.
        _ = phase.compareExchange(
            expected: Phase.starting.rawValue,
            desired: Phase.ready.rawValue,
            ordering: .acquiringAndReleasing
        )
    }

    public func markStopping() {
        phase.store(Phase.stopping.rawValue, ordering: .releasing)
    }

    var scrapeSource: any ScrapeSource { Source(health: self) }

    private struct Source: ScrapeSource {
        let health: HealthState

        func collect(into series: ScrapeSeries) {
            series.gauge(
                "fjord_ready",
                help: "1 once recovery is done and the Kafka listener accepts, 0 while starting or stopping.",
                health.current == .ready ? 1 : 0
            )
        }
    }
}
