import Logging
import NIOCore
import Synchronization
import VietnameseAI
@_spi(Locking) import VietnameseAIConcurrency

/// Each client's rate limit shared with every server that uses the same store: decisions spend
/// leases held in a ``LeaseBook`` and wait only when a client's lease runs out.
///
/// When the store cannot be reached, ``Policy`` decides: the server's own limiter decides
/// alone (each server then admits up to the whole limit), or requests are refused. One log line
/// when the store goes away and one when it is back; while it is away, one request a second
/// tries it again, so shared limiting resumes without a restart.
final class SharedRateLimit: Sendable {
  typealias Policy = RPCServer.Configuration.SharedRateLimit.Policy

  let policy: Policy
  let leaseSize: Int
  private let source: any LeaseSource
  private let fallback: BoGioiHanTocDo
  private let loop: any EventLoop
  private let logger: Logger
  private let shards: [ShardBox]
  private let storeDown = Atomic<Bool>(false)
  private let store = Locked(Store())
  /// How often a store that is away is tried again.
  private let probeInterval: Duration

  private final class ShardBox: Sendable {
    let state: Locked<Shard>
    // Keeps neighbouring shards' locks off one cache line.
    private let padding = CacheLinePadding()

    init(_ shard: consuming sending Shard) {
      state = Locked(shard)
    }

    func withLock<R>(_ body: (inout sending Shard) -> sending R) -> R {
      state.withLock(body)
    }
  }

  private struct Shard {
    var book: LeaseBook<EventLoopPromise<LimitVerdict>>
    var allowed = 0
    var rejected = 0
    var sinceSweep = 0
  }

  private struct Store {
    var nextProbe = ContinuousClock.Instant.now
    var probing = false
    var calls = 0
    var failures = 0
  }

  /// - Parameters:
  ///   - fallback: The server's own limiter, with the same parameters as the shared one.
  ///   - loop: Where waiting decisions complete.
  init(
    source: any LeaseSource,
    leaseSize: Int,
    policy: Policy,
    fallback: BoGioiHanTocDo,
    loop: any EventLoop,
    logger: Logger,
    probeInterval: Duration = .seconds(1)
  ) {
    self.probeInterval = probeInterval
    self.source = source
    self.leaseSize = max(leaseSize, 1)
    self.policy = policy
    self.fallback = fallback
    self.loop = loop
    self.logger = logger
    let unitInterval = fallback.cuaSo / fallback.goiY
    self.shards = (0..<16).map { _ in
      ShardBox(Shard(book: LeaseBook(leaseSize: leaseSize, unitInterval: unitInterval)))
    }
  }

  /// Decides `count` requests of `cost` each from `client`, in order.
  func reserve(_ client: String, cost: Int, count: Int) -> LimitReservation {
    if cost > fallback.kichThuocBurst {
      return .decided(LimitVerdict(allowed: 0, refusal: .limited(retryAfter: nil)))
    }
    if storeDown.load(ordering: .relaxed) { return .decided(whileAway(client, cost: cost, count: count)) }
    let shard = shard(of: client)
    let now = ContinuousClock.now
    var promise: EventLoopPromise<LimitVerdict>?
    let reserved = shard.withLock { shard in
      let reserved = shard.book.reserve(client, cost: cost, count: count, now: now) {
        let made = loop.makePromise(of: LimitVerdict.self)
        promise = made
        return made
      }
      if case .decided(let decision, _) = reserved {
        shard.allowed += decision.allowed
        shard.rejected += count - decision.allowed
      }
      shard.sinceSweep += 1
      if shard.sinceSweep >= 65_536 {
        shard.sinceSweep = 0
        shard.book.forget(idleSince: now - max(fallback.cuaSo, .seconds(60)))
      }
      return reserved
    }
    switch reserved {
    case .decided(let decision, let fetch):
      if let fetch { startLease(client, want: fetch, shard: shard) }
      return .decided(Self.verdict(decision))
    case .queued(let fetch):
      if let fetch { startLease(client, want: fetch, shard: shard) }
      // The book called `waiter` when it queued the request.
      return .pending(promise!.futureResult)
    }
  }

  private func shard(of client: String) -> ShardBox {
    shards[Int(UInt(bitPattern: client.hashValue) % UInt(shards.count))]
  }

  /// Decisions counted here (the fallback's count apart), and clients held.
  func statistics() -> (allowed: Int, rejected: Int, clients: Int) {
    shards.reduce((0, 0, 0)) { total, shard in
      shard.withLock { (total.0 + $0.allowed, total.1 + $0.rejected, total.2 + $0.book.clients.count) }
    }
  }

  /// Calls to the store, those that failed, and whether it is reachable now.
  func storeStatistics() -> (calls: Int, failures: Int, up: Bool) {
    let (calls, failures) = store.withLock { ($0.calls, $0.failures) }
    return (calls, failures, !storeDown.load(ordering: .relaxed))
  }

  private static func verdict(_ decision: LeaseBook<EventLoopPromise<LimitVerdict>>.Decision) -> LimitVerdict
  {
    LimitVerdict(
      allowed: decision.allowed,
      refusal: decision.retryAfter.map { .limited(retryAfter: $0) }
    )
  }

  // MARK: Leases

  private func startLease(_ client: String, want: Int, shard: ShardBox, probing: Bool = false) {
    Task { await lease(client, want: want, shard: shard, probing: probing) }
  }

  /// Asks the store for `want` units of `client`'s limit and answers the client's waiters with
  /// what comes back. A probe tries a store that is away.
  private func lease(_ client: String, want: Int, shard: ShardBox, probing: Bool) async {
    let result: Result<LeaseGrant, any Error>
    do {
      result = .success(try await source.lease(client, want: want))
    } catch {
      result = .failure(error)
    }
    let now = ContinuousClock.now
    let probeInterval = self.probeInterval
    store.withLock { store in
      store.calls += 1
      if case .failure = result {
        store.failures += 1
        store.nextProbe = now + probeInterval
      }
      if probing { store.probing = false }
    }
    switch result {
    case .success(let grant):
      let (answered, fetch) = shard.withLock { shard in
        let leased = shard.book.leased(
          client,
          granted: grant.granted,
          wanted: want,
          retryAfter: grant.retryAfter,
          now: now
        )
        for (queued, decision) in leased.answered {
          shard.allowed += decision.allowed
          shard.rejected += queued.count - decision.allowed
        }
        return leased
      }
      storeBack()
      for (queued, decision) in answered { queued.waiter.succeed(Self.verdict(decision)) }
      if let fetch { startLease(client, want: fetch, shard: shard) }
    case .failure(let error):
      storeAway(error)
      let waiting = shard.withLock { $0.book.leaseFailed(client) }
      for queued in waiting {
        queued.waiter.succeed(whileAway(client, cost: queued.cost, count: queued.count))
      }
    }
  }

  // MARK: The store away

  /// A decision while the store cannot be reached, by ``policy``; starts a probe when one is
  /// due.
  private func whileAway(_ client: String, cost: Int, count: Int) -> LimitVerdict {
    let now = ContinuousClock.now
    let probe = store.withLock { store -> Bool in
      guard !store.probing, now >= store.nextProbe else { return false }
      store.probing = true
      return true
    }
    if probe { startLease(client, want: leaseSize, shard: shard(of: client), probing: true) }
    switch policy {
    case .refuse:
      return LimitVerdict(
        allowed: 0,
        refusal: .storeUnreachable("the shared rate limit store at \(source.location) cannot be reached")
      )
    case .local:
      if count == 1 {
        let decision = fallback.kiemTra(client, cost: cost)
        return decision.choPhep
          ? .all(1) : LimitVerdict(allowed: 0, refusal: .limited(retryAfter: decision.retryAfter))
      }
      let decision = fallback.choPhep(client, soYeuCau: count * cost)
      let allowed = decision.allowed / max(cost, 1)
      return allowed == count
        ? .all(count) : LimitVerdict(allowed: allowed, refusal: .limited(retryAfter: decision.retryAfter))
    }
  }

  private func storeAway(_ error: any Error) {
    if !storeDown.exchange(true, ordering: .relaxed) {
      logger.error(
        "shared rate limit store unreachable",
        metadata: [
          "store": "\(source.location)", "error": "\(error)", "policy": "\(policy.rawValue)",
        ]
      )
    }
  }

  private func storeBack() {
    if storeDown.exchange(false, ordering: .relaxed) {
      logger.notice("shared rate limit store reachable again", metadata: ["store": "\(source.location)"])
    }
  }
}
