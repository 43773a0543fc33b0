import Logging
import NIOCore
import NIOPosix
import TestSupport
import Testing
import VietnameseAI
@_spi(Locking) import VietnameseAIConcurrency

@testable import VietnameseAIServer

/// The shared limit over a store played by the test: leases spent locally, waits, and what
/// happens while the store is away.
@Suite("Shared rate limit")
struct SharedRateLimitTests {
  /// A store that grants from a plain counter, or fails while `away`.
  final class FakeStore: LeaseSource {
    struct State {
      var available: Int
      var away = false
      var calls = 0
    }

    let state: Locked<State>

    init(available: Int) {
      state = Locked(State(available: available))
    }

    func lease(_ client: String, want: Int) async throws -> LeaseGrant {
      try state.withLock { state in
        state.calls += 1
        if state.away { throw ServingError(.unavailable, "away") }
        let granted = min(want, state.available)
        state.available -= granted
        return LeaseGrant(granted: granted, retryAfter: .milliseconds(1))
      }
    }
  }

  static func limit(
    _ store: FakeStore,
    lease: Int = 10,
    policy: RPCServer.Configuration.SharedRateLimit.Policy = .local,
    fallbackBurst: Int = 5
  ) -> SharedRateLimit {
    SharedRateLimit(
      source: store,
      leaseSize: lease,
      health: StoreHealth(location: "fake", policy: policy, logger: quiet, probeInterval: .zero),
      // An hour's window: the fallback refills too slowly to matter within a test.
      fallback: BoGioiHanTocDo(goiY: fallbackBurst, cuaSo: .seconds(3600)),
      loop: MultiThreadedEventLoopGroup.singleton.any()
    )
  }

  static let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

  static func decide(_ limit: SharedRateLimit, _ client: String = "c", cost: Int = 1, count: Int = 1)
    async throws
    -> LimitVerdict
  {
    switch limit.reserve(client, cost: cost, count: count) {
    case .decided(let verdict): return verdict
    case .pending(let later): return try await later.get()
    }
  }

  @Test("decisions spend leases: one call per lease, not per decision")
  func leasesSpareTheStore() async throws {
    let store = FakeStore(available: 1_000)
    let limit = Self.limit(store)
    for _ in 0..<100 {
      #expect(try await Self.decide(limit) == .all(1))
    }
    let calls = store.state.withLock { $0.calls }
    // A lease of 10, topped up at half: about one call per 5 decisions.
    #expect(calls >= 10 && calls <= 25, "\(calls) calls for 100 decisions")
    #expect(limit.statistics().allowed == 100)
  }

  @Test("the store's limit holds: what it does not grant is refused with a retry-after")
  func storeLimitHolds() async throws {
    let store = FakeStore(available: 25)
    let limit = Self.limit(store)
    var allowed = 0
    var refusals: [LimitVerdict.Refusal] = []
    for _ in 0..<60 {
      let verdict = try await Self.decide(limit)
      allowed += verdict.allowed
      if let refusal = verdict.refusal { refusals.append(refusal) }
    }
    #expect(allowed == 25)
    #expect(refusals.count == 35)
    #expect(refusals.allSatisfy { if case .limited(let after?) = $0 { after > .zero } else { false } })
    let statistics = limit.statistics()
    #expect(statistics.allowed == 25 && statistics.rejected == 35)
  }

  @Test("requests waiting for one lease are all answered when it comes")
  func concurrentWaiters() async throws {
    let store = FakeStore(available: 1_000)
    let limit = Self.limit(store, lease: 50)
    let verdicts = try await withThrowingTaskGroup(of: LimitVerdict.self) { group in
      for index in 0..<40 {
        group.addTask { try await Self.decide(limit, "c\(index % 4)") }
      }
      return try await group.reduce(into: []) { $0.append($1) }
    }
    #expect(verdicts.count == 40)
    #expect(verdicts.allSatisfy { $0 == .all(1) })
  }

  @Test("policy local: the server's own limiter decides while the store is away, then the store again")
  func localFallbackAndRecovery() async throws {
    let store = FakeStore(available: 1_000)
    store.state.withLock { $0.away = true }
    let limit = Self.limit(store, policy: .local, fallbackBurst: 5)
    var allowed = 0
    for _ in 0..<8 { allowed += try await Self.decide(limit).allowed }
    #expect(allowed == 5, "the fallback's burst of 5")
    #expect(limit.health.statistics().up == false)
    store.state.withLock { $0.away = false }
    // The next decision while away starts a probe (due at once here); the store is back once
    // it answers.
    _ = try await Self.decide(limit)
    try await eventually("the store is back") { limit.health.statistics().up }
    var back = 0
    for _ in 0..<20 { back += try await Self.decide(limit).allowed }
    #expect(back == 20, "the store decides again, past the fallback's burst")
  }

  @Test("policy refuse: every decision is refused while the store is away")
  func refuseWhileAway() async throws {
    let store = FakeStore(available: 1_000)
    store.state.withLock { $0.away = true }
    let limit = Self.limit(store, policy: .refuse)
    for _ in 0..<5 {
      let verdict = try await Self.decide(limit)
      #expect(verdict.allowed == 0)
      guard case .storeUnreachable? = verdict.refusal else {
        Issue.record("expected a refusal for the store, got \(verdict)")
        return
      }
    }
  }

  @Test("a cost above the burst can never pass, and costs no call")
  func costAboveBurst() async throws {
    let store = FakeStore(available: 1_000)
    let limit = Self.limit(store, fallbackBurst: 5)
    #expect(
      try await Self.decide(limit, cost: 6) == LimitVerdict(allowed: 0, refusal: .limited(retryAfter: nil))
    )
    #expect(store.state.withLock { $0.calls } == 0)
  }
}

extension SharedRateLimitTests {
  @Test("requests queued behind a lease too small for them wait for another, while the store has plenty")
  func queuedBehindSmallLease() async throws {
    let store = FakeStore(available: 1_000_000_000)
    let limit = Self.limit(store, lease: 10, fallbackBurst: 1_000_000_000)
    try await withThrowingTaskGroup(of: Int.self) { group in
      for _ in 0..<8 {
        group.addTask {
          var allowed = 0
          for _ in 0..<5_000 {
            allowed += try await Self.decide(limit, "c", count: 3).allowed
          }
          return allowed
        }
      }
      let total = try await group.reduce(0, +)
      #expect(total == 8 * 5_000 * 3)
    }
  }
}
