import NIOCore
import Synchronization

/// Where a token limit shared between servers lives.
protocol TokenStore: Sendable {
  /// Charges `spent` tokens whatever the limit says, then, for a stream to open, its `prompt`
  /// if one token is free.
  ///
  /// - Returns: `nil` if a token was free (the prompt is charged), else how long until one is.
  func charge(_ client: String, spent: Int, prompt: Int?) async throws -> Duration?
}

/// Each client's tokens per window, as LLM APIs enforce tokens per minute: a stream is charged
/// its prompt when it opens and its tokens as they are produced, and a client over its
/// allowance may not open a stream until the allowance has come back (see ``TokenBudget``).
///
/// With a store, the allowance is shared: a stream's open asks the store, charging with it the
/// tokens this server's streams produced since they were last sent, which go to the store
/// every ``flushInterval`` too; a client the store says is over is refused here until its
/// retry-after. Other servers' tokens thus count within one ``flushInterval``. This server
/// always keeps its own accounts as well, which decide while the store is away under policy
/// `local`.
final class TokenLimit: Sendable {
  let limit: Int
  let window: Duration
  let flushInterval: Duration
  private let parameters: TokenBudget.Parameters
  private let store: (any TokenStore)?
  private let health: StoreHealth?
  private let loop: any EventLoop
  private let origin = ContinuousClock.now
  private let shards = ClientShards<Accounts> { Accounts() }
  private let flushScheduled = Atomic<Bool>(false)

  private struct Accounts {
    var byClient: [String: Account] = [:]
    var sinceSweep = 0
  }

  private struct Account {
    var budget: TokenBudget
    /// Tokens produced here and not yet charged in the store.
    var pending = 0
    /// Until when the store said the client is over, in nanoseconds since `origin`.
    var blockedUntil: Int64 = .min
  }

  init(
    limit: Int,
    window: Duration,
    store: (any TokenStore)? = nil,
    health: StoreHealth? = nil,
    loop: any EventLoop,
    flushInterval: Duration = .milliseconds(50)
  ) {
    self.limit = limit
    self.window = window
    self.parameters = TokenBudget.Parameters(limit: limit, window: window)
    self.store = store
    self.health = health
    self.loop = loop
    self.flushInterval = flushInterval
  }

  /// Decides whether `client` may open a stream whose prompt costs `prompt` tokens; if so,
  /// the prompt is charged.
  func reserve(_ client: String, prompt: Int) -> LimitReservation {
    let now = nanoseconds()
    guard let store, let health, !health.isAway else {
      return .decided(decideHere(client, prompt: prompt, now: now))
    }
    let decided = account(client, now: now) { account -> (spent: Int, verdict: LimitVerdict?) in
      if account.blockedUntil > now {
        return (
          0,
          LimitVerdict(allowed: 0, refusal: .overTokens(retryAfter: .nanoseconds(account.blockedUntil - now)))
        )
      }
      defer { account.pending = 0 }
      return (account.pending, nil)
    }
    if let verdict = decided.verdict { return .decided(verdict) }
    let promise = loop.makePromise(of: LimitVerdict.self)
    Task {
      let verdict: LimitVerdict
      do {
        let wait = try await store.charge(client, spent: decided.spent, prompt: prompt)
        health.succeeded()
        verdict = self.settle(client, wait: wait, prompt: prompt)
      } catch {
        health.failed(error)
        verdict =
          health.policy == .local
          ? self.decideHere(client, prompt: prompt, now: self.nanoseconds())
          : LimitVerdict(allowed: 0, refusal: health.unreachable)
      }
      promise.succeed(verdict)
    }
    return .pending(promise.futureResult)
  }

  /// Charges `tokens` that `client`'s stream produced.
  func spend(_ client: String, _ tokens: Int) {
    guard tokens > 0 else { return }
    let now = nanoseconds()
    account(client, now: now) { account in
      account.budget.spend(tokens, now: now, parameters)
      if store != nil { account.pending += tokens }
    }
    if store != nil, !flushScheduled.exchange(true, ordering: .relaxed) {
      Task {
        try? await Task.sleep(for: flushInterval)
        await flush()
      }
    }
  }

  /// A meter for one stream of `client`, which charges its tokens as they are produced.
  func meter(_ client: String) -> TokenMeter {
    TokenMeter(limit: self, client: client)
  }

  // MARK: Internals

  /// A decision on this server's own accounts; while the store is away, a probe when due.
  private func decideHere(_ client: String, prompt: Int, now: Int64) -> LimitVerdict {
    if let health, health.isAway {
      if health.probeDue() { probe(client) }
      if health.policy == .refuse { return LimitVerdict(allowed: 0, refusal: health.unreachable) }
    }
    let parameters = self.parameters
    let wait = account(client, now: now) { $0.budget.open(prompt: prompt, now: now, parameters) }
    guard let wait else { return .all(1) }
    return LimitVerdict(allowed: 0, refusal: .overTokens(retryAfter: wait))
  }

  /// The store answered an open: records a refusal until its retry-after, or charges the
  /// prompt to this server's own account too.
  private func settle(_ client: String, wait: Duration?, prompt: Int) -> LimitVerdict {
    let now = nanoseconds()
    let parameters = self.parameters
    account(client, now: now) { account in
      if let wait {
        account.blockedUntil = now + Self.nanoseconds(wait)
      } else {
        account.budget.spend(prompt, now: now, parameters)
      }
    }
    guard let wait else { return .all(1) }
    return LimitVerdict(allowed: 0, refusal: .overTokens(retryAfter: wait))
  }

  private func probe(_ client: String) {
    guard let store, let health else { return }
    Task {
      do {
        _ = try await store.charge(client, spent: 0, prompt: nil)
        health.succeeded(probe: true)
      } catch {
        health.failed(error, probe: true)
      }
    }
  }

  /// Sends every client's pending tokens to the store, and records who is over.
  private func flush() async {
    flushScheduled.store(false, ordering: .relaxed)
    guard let store, let health else { return }
    var batch: [(String, Int)] = []
    for shard in shards.all {
      shard.withLock { accounts in
        for (client, account) in accounts.byClient where account.pending > 0 {
          batch.append((client, account.pending))
          accounts.byClient[client]?.pending = 0
        }
      }
    }
    if health.isAway { return }  // charged here only; the store is probed by decisions
    await withTaskGroup(of: Void.self) { group in
      for (client, spent) in batch {
        group.addTask {
          do {
            let wait = try await store.charge(client, spent: spent, prompt: nil)
            health.succeeded()
            if let wait {
              let until = self.nanoseconds() + Self.nanoseconds(wait)
              self.account(client, now: self.nanoseconds()) { $0.blockedUntil = max($0.blockedUntil, until) }
            }
          } catch {
            health.failed(error)
          }
        }
      }
    }
  }

  /// Runs `body` on `client`'s account. Now and then forgets the accounts that are as good as
  /// new (allowance full, nothing pending, not refused), which bounds memory.
  @discardableResult
  private func account<R>(_ client: String, now: Int64, _ body: (inout Account) -> R) -> R {
    shards.shard(of: client).withLock { accounts in
      accounts.sinceSweep += 1
      if accounts.sinceSweep >= 4_096 {
        accounts.sinceSweep = 0
        accounts.byClient = accounts.byClient.filter { _, account in
          account.budget.tat > now || account.pending > 0 || account.blockedUntil > now
        }
      }
      return body(&accounts.byClient[client, default: Account(budget: TokenBudget(now: now))])
    }
  }

  private func nanoseconds() -> Int64 {
    Self.nanoseconds(ContinuousClock.now - origin)
  }

  private static func nanoseconds(_ duration: Duration) -> Int64 {
    let (seconds, attoseconds) = duration.components
    return seconds &* 1_000_000_000 &+ attoseconds / 1_000_000_000
  }
}

/// Charges one stream's tokens to its client as they are produced, 16 at a time, and the rest
/// when the stream ends (or the meter is let go).
final class TokenMeter: Sendable {
  private let limit: TokenLimit
  private let client: String
  private let count = Atomic<Int>(0)

  init(limit: TokenLimit, client: String) {
    self.limit = limit
    self.client = client
  }

  func produced(_ tokens: Int = 1) {
    guard count.wrappingAdd(tokens, ordering: .relaxed).newValue >= 16 else { return }
    limit.spend(client, count.exchange(0, ordering: .relaxed))
  }

  func finish() {
    limit.spend(client, count.exchange(0, ordering: .relaxed))
  }

  deinit {
    finish()
  }
}
