import Testing

@testable import BrokerCore
@testable import KafkaMessages

/// Drives one `ClassicGroup` with a mock clock: time moves only when a test advances it, and
/// every action the machine returns is recorded as the reply to its token.
struct GroupHarness {
    var group: ClassicGroup
    /// The mock clock, in milliseconds.
    private(set) var now: Int64 = 0
    private var nextToken: UInt64 = 1
    private(set) var joins: [UInt64: JoinGroupOutcome] = [:]
    private(set) var syncs: [UInt64: SyncGroupOutcome] = [:]
    /// Tokens answered more than once (must stay empty).
    private(set) var doubleAnswers: [UInt64] = []
    /// Members the group removed on its own, and why.
    private(set) var removals: [(String, GroupAction.Removal)] = []

    init(settings: GroupSettings = GroupSettings(initialRebalanceDelayMs: 100)) {
        group = ClassicGroup(groupId: "g", settings: settings)
    }

    static let range = GroupProtocol(name: "range", metadata: [1])
    static let roundRobin = GroupProtocol(name: "roundrobin", metadata: [2])

    mutating func record(_ actions: [GroupAction]) {
        for action in actions {
            switch action {
            case .completeJoin(let token, let outcome):
                if joins.updateValue(outcome, forKey: token) != nil { doubleAnswers.append(token) }
            case .completeSync(let token, let outcome):
                if syncs.updateValue(outcome, forKey: token) != nil { doubleAnswers.append(token) }
            case .removedMember(let memberId, let reason):
                removals.append((memberId, reason))
            }
        }
    }

    private mutating func takeToken() -> UInt64 {
        defer { nextToken += 1 }
        return nextToken
    }

    /// Sends a JoinGroup; returns its token (look the answer up in `joins`).
    @discardableResult
    mutating func join(
        _ memberId: String = "",
        instance: String? = nil,
        requireKnownMemberId: Bool = false,
        protocolType: String = "consumer",
        protocols: [GroupProtocol] = [range],
        sessionTimeoutMs: Int32 = 10_000,
        rebalanceTimeoutMs: Int32 = 30_000,
        newId: String? = nil
    ) -> UInt64 {
        let token = takeToken()
        let parameters = JoinGroupParameters(
            memberId: memberId,
            groupInstanceId: instance,
            requireKnownMemberId: requireKnownMemberId,
            clientId: "client",
            clientHost: "/127.0.0.1",
            rebalanceTimeoutMs: rebalanceTimeoutMs,
            sessionTimeoutMs: sessionTimeoutMs,
            protocolType: protocolType,
            protocols: protocols,
            generatedMemberId: newId ?? "member-\(token)"
        )
        record(group.join(parameters, token: token, now: now))
        return token
    }

    @discardableResult
    mutating func sync(
        _ memberId: String,
        generation: Int32? = nil,
        instance: String? = nil,
        assignments: [String: [UInt8]] = [:]
    ) -> UInt64 {
        let token = takeToken()
        let parameters = ClassicGroup.SyncParameters(
            memberId: memberId,
            groupInstanceId: instance,
            generationId: generation ?? group.generationId,
            assignments: assignments
        )
        record(group.sync(parameters, token: token, now: now))
        return token
    }

    mutating func heartbeat(_ memberId: String, generation: Int32? = nil, instance: String? = nil) -> ErrorCode {
        group.heartbeat(
            memberId: memberId,
            groupInstanceId: instance,
            generationId: generation ?? group.generationId,
            now: now
        )
    }

    mutating func leave(_ memberId: String, instance: String? = nil) -> ErrorCode {
        var actions: [GroupAction] = []
        let error = group.leave(memberId: memberId, groupInstanceId: instance, now: now, actions: &actions)
        record(actions)
        return error
    }

    /// Moves the mock clock and fires whatever became due.
    mutating func advance(byMs milliseconds: Int64) {
        now += milliseconds
        record(group.expire(now: now))
    }

    /// Lets the (initial) rebalance delay run out, one delay at a time.
    mutating func completeJoinPhase() {
        for _ in 0..<100 where group.state == .preparingRebalance {
            advance(byMs: group.settings.initialRebalanceDelayMs)
        }
    }

    /// Joins `count` members at once and completes the first generation with the leader's
    /// assignment: member i gets [i]. Returns the member ids in join order.
    mutating func stableGroup(
        members count: Int,
        sessionTimeoutMs: Int32 = 10_000,
        instances: [String?]? = nil
    ) -> [String] {
        var tokens: [UInt64] = []
        for index in 0..<count {
            tokens.append(
                join(instance: instances?[index] ?? nil, sessionTimeoutMs: sessionTimeoutMs, newId: "m\(index)")
            )
        }
        completeJoinPhase()
        let ids = tokens.compactMap { joins[$0]?.memberId }
        #expect(ids == (0..<count).map { "m\($0)" }, "members did not all join generation 1")
        #expect(group.state == .completingRebalance)
        var assignments: [String: [UInt8]] = [:]
        for (index, id) in ids.enumerated() { assignments[id] = [UInt8(index)] }
        for id in ids where id != group.leaderId { sync(id) }
        sync(group.leaderId ?? "", assignments: assignments)
        #expect(group.state == .stable)
        return ids
    }
}

@Suite("Classic group state machine")
struct GroupStateMachineTests {
    /// A lone member joins, gets generation 1 with itself as leader, syncs its own assignment, and the group is Stable.
    @Test func loneMemberJoinsSyncsAndIsStable() throws {
        var h = GroupHarness()
        let join = h.join(newId: "a")
        #expect(h.group.state == .preparingRebalance)
        h.advance(byMs: 99)
        #expect(h.joins[join] == nil, "the initial delay is still running")
        h.advance(byMs: 1)
        #expect(h.group.state == .completingRebalance)
        let outcome = try #require(h.joins[join])
        #expect(outcome.errorCode == .none)
        #expect(outcome.generationId == 1)
        #expect(outcome.leaderId == "a")
        #expect(outcome.memberId == "a")
        #expect(outcome.protocolName == "range")
        #expect(outcome.protocolType == "consumer")
        #expect(outcome.members.map(\.memberId) == ["a"])
        #expect(outcome.members.first?.metadata == [1])
        let sync = h.sync("a", assignments: ["a": [9, 9]])
        #expect(
            h.syncs[sync]
                == SyncGroupOutcome(
                    errorCode: .none,
                    protocolType: "consumer",
                    protocolName: "range",
                    assignment: [9, 9]
                )
        )
        #expect(h.group.state == .stable)
        #expect(h.heartbeat("a") == .none)
        #expect(h.doubleAnswers.isEmpty)
    }

    /// From JoinGroup v4 a member without an id gets MEMBER_ID_REQUIRED and a generated id, and joins when it comes back with it.
    @Test func memberIdRequiredRoundTrip() {
        var h = GroupHarness()
        let first = h.join(requireKnownMemberId: true, newId: "generated")
        #expect(h.joins[first] == JoinGroupOutcome.error(.memberIdRequired, memberId: "generated"))
        #expect(h.group.state == .empty)
        #expect(h.group.isPendingMember("generated"))
        let second = h.join("generated", requireKnownMemberId: true)
        h.completeJoinPhase()
        #expect(h.joins[second]?.errorCode == ErrorCode.none)
        #expect(h.joins[second]?.memberId == "generated")
        #expect(h.joins[second]?.generationId == 1)
        #expect(!h.group.isPendingMember("generated"))
    }

    /// A pending member that never comes back is forgotten after its session timeout and does not hold up a rebalance.
    @Test func pendingMemberExpiresAfterSessionTimeout() {
        var h = GroupHarness()
        let ids = h.stableGroup(members: 1)
        h.join(requireKnownMemberId: true, sessionTimeoutMs: 6000, newId: "ghost")
        let rejoin = h.join(ids[0])  // the leader's JoinGroup starts a rebalance
        #expect(h.group.state == .preparingRebalance)
        #expect(h.joins[rejoin] == nil, "a pending member holds the rebalance")
        h.advance(byMs: 6000)
        #expect(!h.group.isPendingMember("ghost"))
        #expect(h.joins[rejoin]?.errorCode == ErrorCode.none)
        #expect(h.joins[rejoin]?.generationId == 2)
    }

    /// The initial rebalance delay collects members that arrive together and is extended while they keep arriving.
    @Test func initialRebalanceDelayCollectsMembers() {
        var h = GroupHarness(settings: GroupSettings(initialRebalanceDelayMs: 3000))
        let a = h.join(newId: "a")
        h.advance(byMs: 1000)
        let b = h.join(newId: "b")
        #expect(h.joins[a] == nil && h.joins[b] == nil)
        h.advance(byMs: 2000)  // t=3000: a member arrived during the delay, so it waits once more
        #expect(h.group.state == .preparingRebalance)
        h.advance(byMs: 2999)
        #expect(h.joins[a] == nil)
        h.advance(byMs: 1)  // t=6000
        #expect(h.joins[a]?.generationId == 1)
        #expect(h.joins[a]?.members.map(\.memberId) == ["a", "b"])
        #expect(h.joins[b]?.members == [])
        #expect(h.joins[b]?.leaderId == "a")
    }

    /// A member joining a Stable group starts a rebalance; the others learn of it by heartbeat, rejoin, and get the next generation.
    @Test func rebalanceWhenAMemberJoins() {
        var h = GroupHarness()
        let ids = h.stableGroup(members: 2)
        let newcomer = h.join(newId: "c")
        #expect(h.group.state == .preparingRebalance)
        #expect(h.heartbeat(ids[0]) == .rebalanceInProgress)
        // Commits are still accepted while the group prepares to rebalance.
        #expect(
            h.group.validateOffsetCommit(memberId: ids[1], groupInstanceId: nil, generationId: 1, now: h.now) == nil
        )
        let rejoins = ids.map { h.join($0) }
        #expect(h.group.state == .completingRebalance)
        #expect(h.group.generationId == 2)
        #expect(h.joins[rejoins[0]]?.members.map(\.memberId) == ["m0", "m1", "c"])
        #expect(h.joins[newcomer]?.leaderId == "m0")
        // A follower's SyncGroup waits for the leader's.
        let follower = h.sync("c")
        #expect(h.syncs[follower] == nil)
        #expect(
            h.group.validateOffsetCommit(memberId: "c", groupInstanceId: nil, generationId: 2, now: h.now)
                == .rebalanceInProgress
        )
        h.sync("m0", assignments: ["m0": [0], "m1": [1], "c": [2]])
        #expect(h.syncs[follower]?.assignment == [2])
        #expect(h.group.state == .stable)
        #expect(h.doubleAnswers.isEmpty)
    }

    /// A member that leaves starts a rebalance; the remaining members form the next generation.
    @Test func leaveStartsRebalance() {
        var h = GroupHarness()
        let ids = h.stableGroup(members: 2)
        #expect(h.leave(ids[0]) == .none)  // the leader leaves
        #expect(h.group.state == .preparingRebalance)
        #expect(h.group.leaderId == ids[1])
        let rejoin = h.join(ids[1])
        #expect(h.joins[rejoin]?.generationId == 2)
        #expect(h.joins[rejoin]?.members.map(\.memberId) == [ids[1]])
        #expect(h.leave("nobody") == .unknownMemberId)
    }

    /// The last member leaving empties the group: next generation, Empty, no protocol.
    @Test func lastMemberLeavingEmptiesTheGroup() {
        var h = GroupHarness()
        let ids = h.stableGroup(members: 1)
        #expect(h.leave(ids[0]) == .none)
        #expect(h.group.state == .empty)
        #expect(h.group.generationId == 2)
        #expect(h.group.protocolName == nil)
        #expect(h.group.isIdle)
    }

    /// A member that stops heartbeating is removed once its session timeout passes, and the group rebalances without it.
    @Test(arguments: [Int64(6000), 10_000, 45_000])
    func sessionTimeoutEvictsSilentMember(sessionTimeoutMs: Int64) {
        var h = GroupHarness()
        let ids = h.stableGroup(members: 2, sessionTimeoutMs: Int32(sessionTimeoutMs))
        // m0 keeps heartbeating at a third of the session timeout; m1 is silent.
        var elapsed: Int64 = 0
        while elapsed + sessionTimeoutMs / 3 < sessionTimeoutMs {
            h.advance(byMs: sessionTimeoutMs / 3)
            elapsed += sessionTimeoutMs / 3
            #expect(h.heartbeat(ids[0]) == .none)
        }
        #expect(h.group.has(ids[1]))
        h.advance(byMs: sessionTimeoutMs - elapsed)
        #expect(!h.group.has(ids[1]))
        #expect(h.removals.map(\.0) == [ids[1]])
        #expect(h.removals.map(\.1) == [.sessionExpired])
        #expect(h.group.state == .preparingRebalance)
        #expect(h.heartbeat(ids[1]) == .unknownMemberId)
        let rejoin = h.join(ids[0])
        #expect(h.joins[rejoin]?.members.map(\.memberId) == [ids[0]])
    }

    /// Members that do not rejoin within the rebalance timeout are dropped; the generation goes on with those that did.
    @Test func rebalanceTimeoutRemovesMembersThatDoNotRejoin() {
        var h = GroupHarness()
        let ids = h.stableGroup(members: 2, sessionTimeoutMs: 60_000)
        let newcomer = h.join(rebalanceTimeoutMs: 30_000, newId: "c")
        let rejoin = h.join(ids[0])
        h.advance(byMs: 29_999)
        #expect(h.joins[rejoin] == nil)
        #expect(h.heartbeat(ids[1]) == .rebalanceInProgress)  // alive but not rejoining
        h.advance(byMs: 1)
        #expect(!h.group.has(ids[1]))
        #expect(h.removals.map(\.1) == [.didNotRejoin])
        #expect(h.joins[rejoin]?.members.map(\.memberId) == [ids[0], "c"])
        #expect(h.joins[newcomer]?.generationId == 2)
    }

    /// A member that gets its JoinGroup answer but never sends SyncGroup is removed after the rebalance timeout.
    @Test func memberThatNeverSyncsIsRemoved() {
        var h = GroupHarness()
        let a = h.join(rebalanceTimeoutMs: 5000, newId: "a")
        let b = h.join(rebalanceTimeoutMs: 5000, newId: "b")
        h.completeJoinPhase()
        #expect(h.joins[a]?.generationId == 1 && h.joins[b]?.generationId == 1)
        h.sync("a", assignments: ["a": [1], "b": [2]])
        #expect(h.group.state == .stable)
        #expect(h.heartbeat("b") == .none)  // heartbeats do not replace SyncGroup
        h.advance(byMs: 5000)
        #expect(!h.group.has("b"))
        #expect(h.removals.map(\.1) == [.didNotSync])
        #expect(h.group.state == .preparingRebalance)
    }

    /// A static member restarting with its group.instance.id gets a new member id and its old assignment without a rebalance; the old id is fenced.
    @Test func staticMemberRejoinsWithoutRebalance() throws {
        var h = GroupHarness()
        let ids = h.stableGroup(members: 2, instances: ["instance-0", "instance-1"])
        let generation = h.group.generationId
        let rejoin = h.join(instance: "instance-1", newId: "instance-1-new")
        let outcome = try #require(h.joins[rejoin])
        #expect(outcome.errorCode == .none)
        #expect(outcome.memberId == "instance-1-new")
        #expect(outcome.generationId == generation)
        #expect(outcome.leaderId == ids[0])
        #expect(outcome.members.isEmpty)
        #expect(h.group.state == .stable)
        let sync = h.sync("instance-1-new", instance: "instance-1")
        #expect(h.syncs[sync]?.assignment == [1])
        #expect(h.heartbeat(ids[1], instance: "instance-1") == .fencedInstanceId)
        #expect(h.heartbeat("instance-1-new", instance: "instance-1") == .none)
        #expect(h.group.generationId == generation)
    }

    /// A restarted static leader is answered with the old leader id, so it does not run the assignor in a Stable group.
    @Test func restartedStaticLeaderDoesNotBecomeAssigner() {
        var h = GroupHarness()
        let ids = h.stableGroup(members: 2, instances: ["i0", "i1"])
        let rejoin = h.join(instance: "i0", newId: "i0-new")
        #expect(h.joins[rejoin]?.leaderId == ids[0])
        #expect(h.joins[rejoin]?.memberId == "i0-new")
        #expect(h.group.leaderId == "i0-new")
        #expect(h.group.state == .stable)
    }

    /// A static member rejoining with other protocols forces a rebalance.
    @Test func staticMemberWithNewProtocolsRebalances() {
        var h = GroupHarness()
        _ = h.stableGroup(members: 1, instances: ["i0"])
        h.join(instance: "i0", protocols: [GroupHarness.roundRobin, GroupHarness.range], newId: "i0-new")
        #expect(h.group.state == .completingRebalance)
        #expect(h.group.protocolName == "roundrobin")
    }

    /// Heartbeat, SyncGroup and JoinGroup report Kafka's errors for unknown members, old generations and fenced instances.
    @Test func generationAndMembershipErrors() {
        var h = GroupHarness()
        let ids = h.stableGroup(members: 1, instances: ["i0"])
        #expect(h.heartbeat("stranger") == .unknownMemberId)
        #expect(h.heartbeat(ids[0], generation: 0) == .illegalGeneration)
        #expect(h.heartbeat("stranger", instance: "i0") == .fencedInstanceId)
        #expect(h.heartbeat(ids[0], instance: "other") == .unknownMemberId)
        let staleSync = h.sync(ids[0], generation: 7, instance: "i0")
        #expect(h.syncs[staleSync]?.errorCode == .illegalGeneration)
        let strangerSync = h.sync("stranger")
        #expect(h.syncs[strangerSync]?.errorCode == .unknownMemberId)
        let strangerJoin = h.join("stranger")
        #expect(h.joins[strangerJoin] == .error(.unknownMemberId, memberId: "stranger"))
        #expect(
            h.group.validateOffsetCommit(memberId: ids[0], groupInstanceId: nil, generationId: 0, now: h.now)
                == .illegalGeneration
        )
        #expect(
            h.group.validateOffsetCommit(memberId: "", groupInstanceId: nil, generationId: -1, now: h.now)
                == .unknownMemberId
        )
        #expect(
            h.group.validateOffsetCommit(memberId: ids[0], groupInstanceId: "i0", generationId: 1, now: h.now) == nil
        )
    }

    /// Protocols must share a type and a protocol every member supports, else INCONSISTENT_GROUP_PROTOCOL.
    @Test func inconsistentProtocols() {
        var h = GroupHarness()
        _ = h.stableGroup(members: 1)
        let otherType = h.join(protocolType: "connect")
        #expect(h.joins[otherType]?.errorCode == .inconsistentGroupProtocol)
        let noOverlap = h.join(protocols: [GroupHarness.roundRobin])
        #expect(h.joins[noOverlap]?.errorCode == .inconsistentGroupProtocol)
        var empty = GroupHarness()
        let noProtocols = empty.join(protocols: [])
        #expect(empty.joins[noProtocols]?.errorCode == .inconsistentGroupProtocol)
        let noType = empty.join(protocolType: "")
        #expect(empty.joins[noType]?.errorCode == .inconsistentGroupProtocol)
    }

    /// The protocol is the one most members list first among those all members support.
    @Test(arguments: [
        ([["range", "roundrobin"], ["range", "roundrobin"], ["roundrobin", "range"]], "range"),
        ([["range", "roundrobin"], ["roundrobin", "range"], ["roundrobin", "range"]], "roundrobin"),
        ([["range", "roundrobin"], ["range", "roundrobin"], ["roundrobin"]], "roundrobin"),
        ([["sticky", "range"], ["range", "sticky"]], "sticky"),
    ])
    func protocolChosenByVote(preferences: [[String]], expected: String) {
        var h = GroupHarness()
        for (index, names) in preferences.enumerated() {
            h.join(protocols: names.map { GroupProtocol(name: $0, metadata: []) }, newId: "m\(index)")
        }
        h.completeJoinPhase()
        #expect(h.group.protocolName == expected)
    }

    /// group.max.size: a member beyond the limit gets GROUP_MAX_SIZE_REACHED; members up to it are accepted.
    @Test(arguments: [1, 3])
    func groupMaxSize(maxSize: Int) {
        var h = GroupHarness(settings: GroupSettings(maxSize: maxSize))
        _ = h.stableGroup(members: maxSize)
        let extra = h.join(newId: "extra")
        #expect(h.joins[extra] == .error(.groupMaxSizeReached))
        #expect(h.group.members.count == maxSize)
        #expect(h.group.state == .stable)
    }

    /// A static member restarting in a full group gets its place back rather than GROUP_MAX_SIZE_REACHED.
    @Test func staticMemberRejoinsAFullGroup() {
        var h = GroupHarness(settings: GroupSettings(maxSize: 2))
        _ = h.stableGroup(members: 2, instances: ["i0", "i1"])
        let rejoin = h.join(instance: "i1", newId: "i1-new")
        #expect(h.joins[rejoin]?.errorCode == ErrorCode.none)
        #expect(h.group.members.count == 2)
        let stranger = h.join(instance: "i2", newId: "i2")
        #expect(h.joins[stranger]?.errorCode == .groupMaxSizeReached)
    }

    /// A second JoinGroup from a member replaces its first, which is answered (never left hanging).
    @Test func duplicateJoinAnswersTheFirst() {
        var h = GroupHarness()
        let ids = h.stableGroup(members: 2)
        let first = h.join(ids[0])
        let second = h.join(ids[0])
        #expect(h.joins[first]?.errorCode == .rebalanceInProgress)
        #expect(h.joins[second] == nil)
        h.join(ids[1])
        #expect(h.joins[second]?.generationId == 2)
        #expect(h.doubleAnswers.isEmpty)
    }

    /// Unloading answers every parked request and leaves the group Dead.
    @Test func unloadAnswersParkedRequests() {
        var h = GroupHarness()
        let ids = h.stableGroup(members: 2)
        let parked = h.join(ids[0])
        h.record(h.group.unload(error: .notCoordinator))
        #expect(h.joins[parked]?.errorCode == .notCoordinator)
        #expect(h.group.state == .dead)
        #expect(h.heartbeat(ids[1]) == .coordinatorNotAvailable)
        #expect(h.group.nextDeadline == nil)
    }

    /// An empty group can be deleted; one with members cannot.
    @Test func deleteOnlyEmptyGroups() {
        var h = GroupHarness()
        _ = h.stableGroup(members: 1)
        #expect(h.group.markDeleted() == .nonEmptyGroup)
        var empty = GroupHarness()
        #expect(empty.group.markDeleted() == .none)
        #expect(empty.group.state == .dead)
    }
}

@Suite("Group coordinator state")
struct GroupCoordinatorStateTests {
    func parameters(
        _ memberId: String = "",
        sessionTimeoutMs: Int32 = 10_000,
        newId: String = "m"
    ) -> JoinGroupParameters {
        JoinGroupParameters(
            memberId: memberId,
            groupInstanceId: nil,
            requireKnownMemberId: false,
            clientId: "c",
            clientHost: "/h",
            rebalanceTimeoutMs: 1000,
            sessionTimeoutMs: sessionTimeoutMs,
            protocolType: "consumer",
            protocols: [GroupHarness.range],
            generatedMemberId: newId
        )
    }

    /// Session timeouts outside the broker's bounds are refused with INVALID_SESSION_TIMEOUT (bounds inclusive).
    @Test(arguments: [
        (Int32(5999), ErrorCode.invalidSessionTimeout), (6000, .none), (1_800_000, .none),
        (1_800_001, .invalidSessionTimeout),
    ])
    func sessionTimeoutBounds(sessionTimeoutMs: Int32, expected: ErrorCode) {
        var state = GroupCoordinatorState(settings: GroupSettings(initialRebalanceDelayMs: 0))
        let actions = state.join(groupId: "g", parameters(sessionTimeoutMs: sessionTimeoutMs), token: 1, now: 0)
        guard case .completeJoin(1, let outcome) = actions.first else {
            Issue.record("no answer: \(actions)")
            return
        }
        #expect(outcome.errorCode == expected)
    }

    /// A member id for a group that does not exist is stale: UNKNOWN_MEMBER_ID, and no group is created.
    @Test func knownMemberIdForUnknownGroup() {
        var state = GroupCoordinatorState(settings: GroupSettings())
        let actions = state.join(groupId: "g", parameters("old-id"), token: 1, now: 0)
        #expect(actions == [.completeJoin(token: 1, .error(.unknownMemberId, memberId: "old-id"))])
        #expect(!state.exists("g"))
        #expect(
            state.sync(groupId: "g", .init(memberId: "x", generationId: 1), token: 2, now: 0) == [
                .completeSync(token: 2, .error(.unknownMemberId))
            ]
        )
        #expect(
            state.heartbeat(groupId: "g", memberId: "x", groupInstanceId: nil, generationId: 1, now: 0)
                == .unknownMemberId
        )
        #expect(state.describe("g") == .dead)
    }

    /// Offsets can be committed without membership (generation -1) and make the group exist; a generation for an unknown group is ILLEGAL_GENERATION.
    @Test func simpleCommitsCreateGroups() {
        var state = GroupCoordinatorState(settings: GroupSettings())
        #expect(
            state.validateOffsetCommit(groupId: "g", memberId: "m", groupInstanceId: nil, generationId: 3, now: 0)
                == .illegalGeneration
        )
        #expect(
            state.validateOffsetCommit(groupId: "g", memberId: "", groupInstanceId: nil, generationId: -1, now: 0)
                == nil
        )
        state.storeOffsets(
            groupId: "g",
            [
                TopicPartition(topic: "t", partition: 0): CommittedOffset(
                    offset: 5,
                    leaderEpoch: -1,
                    metadata: "",
                    commitTimestampMs: 1
                )
            ]
        )
        #expect(state.exists("g"))
        #expect(state.list(statesFilter: []) == [GroupOverview(groupId: "g", protocolType: "", state: "Empty")])
        #expect(state.list(statesFilter: ["STABLE"]).isEmpty)
        #expect(state.describe("g").state == "Empty")
        #expect(state.deleteGroup("g") == .none)
        #expect(!state.exists("g"))
        #expect(state.deleteGroup("g") == .groupIdNotFound)
    }

    /// A group with members cannot be deleted; its state filter matches case-insensitively.
    @Test func nonEmptyGroupIsNotDeleted() {
        var state = GroupCoordinatorState(settings: GroupSettings(initialRebalanceDelayMs: 0))
        _ = state.join(groupId: "g", parameters(), token: 1, now: 0)
        #expect(state.deleteGroup("g") == .nonEmptyGroup)
        #expect(state.list(statesFilter: ["completingrebalance"]).map(\.groupId) == ["g"])
        #expect(state.describe("g").members.map(\.memberId) == ["m"])
        // Not Stable yet: no metadata or assignment in the description.
        #expect(state.describe("g").protocolName == "")
    }

    /// An idle group without offsets is forgotten; the next deadline of all groups is the earliest.
    @Test func idleGroupsAreDropped() {
        var state = GroupCoordinatorState(settings: GroupSettings(initialRebalanceDelayMs: 0))
        _ = state.join(groupId: "g", parameters(sessionTimeoutMs: 6000), token: 1, now: 0)
        #expect(state.nextDeadline == 1000)  // the SyncGroup deadline (rebalance timeout)
        let (errors, _) = state.leave(groupId: "g", members: [("m", nil)], now: 10)
        #expect(errors == [.none])
        #expect(!state.exists("g"))
        #expect(state.nextDeadline == nil)
    }
}
