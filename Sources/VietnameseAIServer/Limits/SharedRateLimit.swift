import NIOCore
import VietnameseAI

/// Each client's rate limit shared with every server that uses the same store: decisions spend
/// leases held in a ``LeaseBook`` and wait only when a client's lease runs out.
///
/// When the store cannot be reached, its ``StoreHealth``'s policy decides: the server's own
/// limiter decides alone (each server then admits up to the whole limit), or requests are
/// refused; one request a second tries the store again, so shared limiting resumes without a
/// restart.
final class SharedRateLimit: Sendable {
  let leaseSize: Int
  let health: StoreHealth
  private let source: any LeaseSource
  private let fallback: BoGioiHanTocDo
  private let loop: any EventLoop
  private let shards: ClientShards<Shard>

  private struct Shard {
    var book: LeaseBook<EventLoopPromise<LimitVerdict>>
    var allowed = 0
    var rejected = 0
    var sinceSweep = 0
  }

  /// - Parameters:
  ///   - fallback: The server's own limiter, with the same parameters as the shared one.
  ///   - loop: Where waiting decisions complete.
  init(
    source: any LeaseSource,
    leaseSize: Int,
    health: StoreHealth,
    fallback: BoGioiHanTocDo,
    loop: any EventLoop
  ) {
    self.source = source
    self.leaseSize = max(leaseSize, 1)
    self.health = health
    self.fallback = fallback
    self.loop = loop
    let unitInterval = fallback.cuaSo / fallback.goiY
    self.shards = ClientShards { Shard(book: LeaseBook(leaseSize: leaseSize, unitInterval: unitInterval)) }
  }

  /// Decides `count` requests of `cost` each from `client`, in order.
  func reserve(_ client: String, cost: Int, count: Int) -> LimitReservation {
    if cost > fallback.kichThuocBurst {
      return .decided(LimitVerdict(allowed: 0, refusal: .limited(retryAfter: nil)))
    }
    if health.isAway { return .decided(whileAway(client, cost: cost, count: count)) }
    let shard = shards.shard(of: client)
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

  /// Decisions counted here (the fallback's count apart), and clients held.
  func statistics() -> (allowed: Int, rejected: Int, clients: Int) {
    shards.all.reduce((0, 0, 0)) { total, shard in
      shard.withLock { (total.0 + $0.allowed, total.1 + $0.rejected, total.2 + $0.book.clients.count) }
    }
  }

  private static func verdict(_ decision: LeaseBook<EventLoopPromise<LimitVerdict>>.Decision) -> LimitVerdict
  {
    LimitVerdict(
      allowed: decision.allowed,
      refusal: decision.retryAfter.map { .limited(retryAfter: $0) }
    )
  }

  // MARK: Leases

  private func startLease(
    _ client: String,
    want: Int,
    shard: ClientShards<Shard>.Shard,
    probing: Bool = false
  ) {
    Task { await lease(client, want: want, shard: shard, probing: probing) }
  }

  /// Asks the store for `want` units of `client`'s limit and answers the client's waiters with
  /// what comes back. A probe tries a store that is away.
  private func lease(_ client: String, want: Int, shard: ClientShards<Shard>.Shard, probing: Bool) async {
    let result: Result<LeaseGrant, any Error>
    do {
      result = .success(try await source.lease(client, want: want))
    } catch {
      result = .failure(error)
    }
    let now = ContinuousClock.now
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
      health.succeeded(probe: probing)
      for (queued, decision) in answered { queued.waiter.succeed(Self.verdict(decision)) }
      if let fetch { startLease(client, want: fetch, shard: shard) }
    case .failure(let error):
      health.failed(error, probe: probing)
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
    if health.probeDue() {
      startLease(client, want: leaseSize, shard: shards.shard(of: client), probing: true)
    }
    switch health.policy {
    case .refuse:
      return LimitVerdict(allowed: 0, refusal: health.unreachable)
    case .local:
      return fallback.verdict(client, cost: cost, count: count)
    }
  }
}
