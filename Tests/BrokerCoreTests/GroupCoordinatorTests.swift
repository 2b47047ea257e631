import Logging
import StorageBackends
import StorageHost
import Synchronization
import Testing

@testable import BrokerCore
@testable import KafkaMessages

/// A clock that moves only when a test says so.
final class ManualClock: Sendable {
    private let nowMs = Atomic<Int64>(0)
    var groupClock: GroupClock { GroupClock { self.nowMs.load(ordering: .relaxed) } }
    func advance(byMs milliseconds: Int64) { nowMs.add(milliseconds, ordering: .relaxed) }
}

@Suite("Group coordinator with a mock clock")
struct GroupCoordinatorTests {
    func open(
        settings: GroupSettings,
        clock: ManualClock,
        engine: StorageEngine? = nil
    ) async throws -> (GroupCoordinator, StorageEngine) {
        var logger = Logger(label: "test")
        logger.logLevel = .warning
        let engine = try engine ?? StorageEngine.open(backend: .builtin(named: "memory"), options: [], logger: logger)
        let coordinator = try await GroupCoordinator.open(
            storage: engine,
            settings: settings,
            offsetsSettings: OffsetsStoreSettings(),
            logger: logger,
            clock: clock.groupClock
        )
        return (coordinator, engine)
    }

    func join(_ newId: String, memberId: String = "", sessionTimeoutMs: Int32 = 10_000) -> JoinGroupParameters {
        JoinGroupParameters(
            memberId: memberId,
            groupInstanceId: nil,
            requireKnownMemberId: false,
            clientId: "c",
            clientHost: "/h",
            rebalanceTimeoutMs: 30_000,
            sessionTimeoutMs: sessionTimeoutMs,
            protocolType: "consumer",
            protocols: [GroupProtocol(name: "range", metadata: [])],
            generatedMemberId: newId
        )
    }

    /// A JoinGroup stays parked through the initial rebalance delay and is answered when the clock passes it.
    @Test func parkedJoinIsAnsweredWhenTheDelayPasses() async throws {
        let clock = ManualClock()
        let (coordinator, _) = try await open(settings: GroupSettings(initialRebalanceDelayMs: 3000), clock: clock)
        let first = coordinator.join(groupId: "g", join("a"))
        clock.advance(byMs: 1000)
        let second = coordinator.join(groupId: "g", join("b"))
        clock.advance(byMs: 2000)
        coordinator.tick()
        #expect(first.reply == nil, "a member arrived during the delay: it is extended")
        clock.advance(byMs: 3000)
        coordinator.tick()
        guard case .join(let leader) = try #require(first.reply), case .join(let follower) = try #require(second.reply)
        else {
            Issue.record("not JoinGroup answers")
            return
        }
        #expect(leader.generationId == 1)
        #expect(leader.members.map(\.memberId) == ["a", "b"])
        #expect(follower.leaderId == "a")
        await coordinator.close()
    }

    /// The session timer evicts a member that stops heartbeating; heartbeats keep the other.
    @Test func sessionExpiryThroughTheCoordinator() async throws {
        let clock = ManualClock()
        let (coordinator, _) = try await open(settings: GroupSettings(initialRebalanceDelayMs: 0), clock: clock)
        let a = coordinator.join(groupId: "g", join("a", sessionTimeoutMs: 6000))
        guard case .join(let joined) = await a.wait() else { return }
        let sync = coordinator.sync(
            groupId: "g",
            .init(memberId: "a", generationId: joined.generationId, assignments: ["a": [1]])
        )
        #expect(
            await sync.wait()
                == .sync(
                    SyncGroupOutcome(errorCode: .none, protocolType: "consumer", protocolName: "range", assignment: [1])
                )
        )
        clock.advance(byMs: 5999)
        coordinator.tick()
        #expect(coordinator.heartbeat(groupId: "g", memberId: "a", groupInstanceId: nil, generationId: 1) == .none)
        clock.advance(byMs: 6000)
        coordinator.tick()
        #expect(
            coordinator.heartbeat(groupId: "g", memberId: "a", groupInstanceId: nil, generationId: 1)
                == .unknownMemberId
        )
        #expect(coordinator.describe(groupId: "g") == .dead)
        await coordinator.close()
    }

    /// Closing answers every parked request.
    @Test func closeAnswersParkedRequests() async throws {
        let clock = ManualClock()
        let (coordinator, _) = try await open(settings: GroupSettings(initialRebalanceDelayMs: 60_000), clock: clock)
        let parked = coordinator.join(groupId: "g", join("a"))
        #expect(parked.reply == nil)
        await coordinator.close()
        #expect(parked.reply == .join(.error(.notCoordinator, memberId: "a")))
    }
}
