import Testing

@testable import FjordOperations

@Suite("HealthState")
struct HealthStateTests {
    @Test func startsStartingThenReadyThenStopping() {
        let health = HealthState()
        #expect(health.current == .starting)
        health.markReady()
        #expect(health.current == .ready)
        health.markStopping()
        #expect(health.current == .stopping)
    }

    /// A shutdown that began during startup wins over a later "ready".
    @Test func neverReadyAgainOnceStopping() {
        let health = HealthState()
        health.markStopping()
        health.markReady()
        #expect(health.current == .stopping)
    }

    @Test func phasesDescribeThemselves() {
        #expect(HealthState.Phase.allCasesForTest.map(\.description) == ["starting", "ready", "stopping"])
    }
}

extension HealthState.Phase {
    static let allCasesForTest: [Self] = [.starting, .ready, .stopping]
}
