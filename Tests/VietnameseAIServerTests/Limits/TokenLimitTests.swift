import Logging
import NIOCore
import NIOPosix
import TestSupport
import Testing
@_spi(Locking) import VietnameseAIConcurrency

@testable import VietnameseAIServer

/// The token limit alone and over a store played by the test.
@Suite("Token limit")
struct TokenLimitTests {
  /// A store keeping one budget per client, as Redis would; fails while `away`.
  final class FakeStore: TokenStore {
    struct State {
      var budgets: [String: TokenBudget] = [:]
      var away = false
      var spent = 0
      var calls = 0
    }

    let state = Locked(State())
    let parameters: TokenBudget.Parameters

    init(limit: Int, window: Duration) {
      parameters = TokenBudget.Parameters(limit: limit, window: window)
    }

    func charge(_ client: String, spent: Int, prompt: Int?) async throws -> Duration? {
      try state.withLock { state in
        state.calls += 1
        if state.away { throw ServingError(.unavailable, "away") }
        state.spent += spent
        var budget = state.budgets[client] ?? TokenBudget(now: 0)
        budget.spend(spent, now: 0, parameters)
        defer { state.budgets[client] = budget }
        guard let prompt else { return budget.retryAfter(now: 0, parameters) }
        return budget.open(prompt: prompt, now: 0, parameters)
      }
    }
  }

  static let loop = MultiThreadedEventLoopGroup.singleton.any()
  static let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

  /// 100 tokens an hour, shared through `store`.
  static func shared(_ store: FakeStore, _ health: StoreHealth) -> TokenLimit {
    TokenLimit(
      limit: 100,
      window: .seconds(3600),
      store: store,
      health: health,
      loop: loop,
      flushInterval: .milliseconds(1)
    )
  }

  static func decide(_ limit: TokenLimit, _ client: String = "c", prompt: Int) async throws -> LimitVerdict {
    switch limit.reserve(client, prompt: prompt) {
    case .decided(let verdict): return verdict
    case .pending(let later): return try await later.get()
    }
  }

  @Test("local: prompts and produced tokens count; over the limit, no new stream until it comes back")
  func local() async throws {
    // 100 tokens an hour: nothing comes back within the test.
    let limit = TokenLimit(limit: 100, window: .seconds(3600), loop: Self.loop)
    #expect(try await Self.decide(limit, prompt: 30) == .all(1))
    let meter = limit.meter("c")
    for _ in 0..<69 { meter.produced() }
    meter.finish()
    // 99 used: one left, so a stream opens, its prompt going into debt.
    #expect(try await Self.decide(limit, prompt: 10) == .all(1))
    let refused = try await Self.decide(limit, prompt: 1)
    guard case .overTokens(let wait)? = refused.refusal else {
      Issue.record("expected a refusal for tokens, got \(refused)")
      return
    }
    // 9 tokens of debt and one more: 10 tokens of 36 s.
    #expect(wait > .seconds(359) && wait <= .seconds(360), "\(wait)")
    #expect(try await Self.decide(limit, "other", prompt: 50) == .all(1))
  }

  @Test("a meter charges what it counted when it is let go")
  func meterReleased() async throws {
    let limit = TokenLimit(limit: 10, window: .seconds(3600), loop: Self.loop)
    do {
      let meter = limit.meter("c")
      for _ in 0..<12 { meter.produced() }
    }
    #expect(try await Self.decide(limit, prompt: 0).refusal != nil)
  }

  @Test("shared: tokens produced here reach the store, which then refuses the client everywhere")
  func shared() async throws {
    let store = FakeStore(limit: 100, window: .seconds(3600))
    let health = StoreHealth(location: "fake", policy: .local, logger: Self.quiet, probeInterval: .zero)
    let (here, there) = (Self.shared(store, health), Self.shared(store, health))
    #expect(try await Self.decide(here, prompt: 20) == .all(1))
    let meter = here.meter("c")
    for _ in 0..<90 { meter.produced() }
    meter.finish()
    try await eventually("the produced tokens reach the store") { store.state.withLock { $0.spent } == 90 }
    let refused = try await Self.decide(there, prompt: 1)
    guard case .overTokens? = refused.refusal else {
      Issue.record("the other server must see the client over, got \(refused)")
      return
    }
    // Known over there now: refused without asking the store again.
    let calls = store.state.withLock { $0.calls }
    #expect(try await Self.decide(there, prompt: 1).allowed == 0)
    #expect(store.state.withLock { $0.calls } == calls)
  }

  @Test("store away: policy local decides on this server's own accounts, policy refuse refuses")
  func away() async throws {
    let store = FakeStore(limit: 100, window: .seconds(3600))
    store.state.withLock { $0.away = true }
    for policy in [RPCServer.Configuration.SharedRateLimit.Policy.local, .refuse] {
      let health = StoreHealth(
        location: "fake",
        policy: policy,
        logger: Self.quiet,
        probeInterval: .seconds(3600)
      )
      let limit = Self.shared(store, health)
      let first = try await Self.decide(limit, prompt: 10)
      #expect(health.statistics().up == false)
      switch policy {
      case .local:
        #expect(first == .all(1))
        #expect(try await Self.decide(limit, prompt: 100) == .all(1))
        #expect(try await Self.decide(limit, prompt: 1).refusal != nil, "110 used of 100, counted here")
      case .refuse:
        guard case .storeUnreachable? = first.refusal else {
          Issue.record("policy refuse must refuse, got \(first)")
          return
        }
      }
    }
  }
}
