import DequeModule

/// The shares of shared limits this server holds, one per client: units leased from the shared
/// store and not spent yet, whether the store said the client is over its limit, and the
/// requests that wait for a lease. Plain values: ``SharedRateLimit`` performs what its
/// transitions return.
///
/// A client's requests spend its units locally; when they run short the book asks the store
/// for a lease of ``leaseSize`` units (more for a request that costs more), and requests
/// arriving meanwhile queue behind it, answered in order when it comes. A lease is topped up
/// in the background once half of it is spent, so a steady client does not wait. When the
/// store grants nothing, the client is refused here, without asking again, until the store's
/// retry-after.
///
/// Leased units were charged to the client in the store when they were leased, so a server
/// may spend them later than the store's own clock would have allowed: over any window, the
/// servers together admit at most the limit plus what they held at its start, which is at
/// most ``leaseSize`` (or one request's cost, if larger) per server.
struct LeaseBook<Waiter> {
  /// Units asked of the store at a time.
  let leaseSize: Int
  /// The time the limit takes to free one unit: the retry-after of a request that a lease
  /// left short.
  let unitInterval: Duration
  private(set) var clients: [String: Client] = [:]

  struct Client {
    var units = 0
    var blockedUntil: ContinuousClock.Instant?
    var fetching = false
    var waiters: Deque<Queued> = []
    var lastUsed: ContinuousClock.Instant
  }

  struct Queued {
    var waiter: Waiter
    var cost: Int
    var count: Int
  }

  /// How many of `count` requests may go and, for the others, when to try again.
  struct Decision: Equatable, Sendable {
    var allowed: Int
    /// `nil` when all were allowed.
    var retryAfter: Duration?
  }

  enum Reserved {
    /// Decided at once; ask the store for `fetch` units in the background, if set.
    case decided(Decision, fetch: Int?)
    /// Queued; ask the store for `fetch` units, if set (else a lease is on its way).
    case queued(fetch: Int?)
  }

  init(leaseSize: Int, unitInterval: Duration) {
    self.leaseSize = max(leaseSize, 1)
    self.unitInterval = unitInterval
  }

  /// `count` requests of `cost` units each from `client`.
  mutating func reserve(
    _ client: String,
    cost: Int,
    count: Int,
    now: ContinuousClock.Instant,
    waiter: () -> Waiter
  ) -> Reserved {
    let needed = cost * count
    let leaseSize = self.leaseSize
    return update(client, now: now) { entry in
      if entry.waiters.isEmpty && entry.units >= needed {
        entry.units -= needed
        return .decided(
          Decision(allowed: count, retryAfter: nil),
          fetch: Self.topUp(&entry, leaseSize, now: now)
        )
      }
      if let until = entry.blockedUntil {
        if now < until { return .decided(Decision(allowed: 0, retryAfter: until - now), fetch: nil) }
        entry.blockedUntil = nil
      }
      entry.waiters.append(Queued(waiter: waiter(), cost: cost, count: count))
      return .queued(fetch: Self.fetch(&entry, leaseSize))
    }
  }

  /// The store granted `granted` of the `wanted` units to `client` (`retryAfter` when none):
  /// the waiters that can now be answered, in order, and a further lease to ask for, if any.
  ///
  /// A client the store refused, or could not give a whole lease, has reached its limit: once
  /// its units are spent it is refused here until a whole lease has built up in the store, not
  /// just one unit. The allowance it gathers meanwhile is not lost, and a client over its limit
  /// costs the store about one call per lease rather than one per unit.
  mutating func leased(
    _ client: String,
    granted: Int,
    wanted: Int,
    retryAfter: Duration,
    now: ContinuousClock.Instant
  ) -> (answered: [(Queued, Decision)], fetch: Int?) {
    let (leaseSize, unitInterval) = (self.leaseSize, self.unitInterval)
    return update(client, now: now) { entry in
      entry.fetching = false
      entry.units += granted
      let short = granted < wanted
      if granted == 0 {
        entry.blockedUntil = now + retryAfter + unitInterval * (leaseSize - 1)
      } else if short {
        entry.blockedUntil = now + unitInterval * leaseSize
      }
      var answered: [(Queued, Decision)] = []
      while let first = entry.waiters.first {
        let needed = first.cost * first.count
        if entry.units >= needed {
          entry.waiters.removeFirst()
          entry.units -= needed
          answered.append((first, Decision(allowed: first.count, retryAfter: nil)))
          continue
        }
        // The store gave all that was asked: it has more, so the rest wait for another lease.
        guard short else { break }
        // The store is at the client's limit: what fits goes, the rest is refused.
        entry.waiters.removeFirst()
        let fits = entry.units / max(first.cost, 1)
        entry.units -= fits * first.cost
        let wait = entry.blockedUntil.map { $0 - now } ?? unitInterval
        answered.append((first, Decision(allowed: fits, retryAfter: max(wait, unitInterval))))
      }
      let fetch =
        entry.waiters.isEmpty ? Self.topUp(&entry, leaseSize, now: now) : Self.fetch(&entry, leaseSize)
      return (answered, fetch)
    }
  }

  /// The store could not be asked: every waiter of `client`, for the caller to decide
  /// otherwise.
  mutating func leaseFailed(_ client: String) -> [Queued] {
    guard var entry = clients[client] else { return [] }
    entry.fetching = false
    let waiters = Array(entry.waiters)
    entry.waiters.removeAll()
    clients[client] = entry
    return waiters
  }

  /// Forgets clients idle since `cutoff` with nothing in flight; their unspent units are lost
  /// (the store counted them already, so forgetting never admits more).
  mutating func forget(idleSince cutoff: ContinuousClock.Instant) {
    clients = clients.filter { _, entry in
      entry.lastUsed > cutoff || entry.fetching || !entry.waiters.isEmpty
    }
  }

  /// Units to ask for when a spend leaves at most half a lease and none is on its way, so
  /// that a steady client finds its next lease already there.
  private static func topUp(_ entry: inout Client, _ leaseSize: Int, now: ContinuousClock.Instant) -> Int? {
    guard !entry.fetching, entry.units * 2 <= leaseSize else { return nil }
    if let until = entry.blockedUntil, now < until { return nil }
    entry.fetching = true
    return leaseSize - entry.units
  }

  /// Units to ask for so that the waiters can be answered, unless a lease is on its way.
  private static func fetch(_ entry: inout Client, _ leaseSize: Int) -> Int? {
    guard !entry.fetching else { return nil }
    entry.fetching = true
    let needed = entry.waiters.reduce(0) { $0 + $1.cost * $1.count }
    return max(leaseSize, needed) - entry.units
  }

  private mutating func update<R>(
    _ client: String,
    now: ContinuousClock.Instant,
    _ body: (inout Client) -> R
  ) -> R {
    func touched(_ entry: inout Client) -> R {
      entry.lastUsed = now
      return body(&entry)
    }
    return touched(&clients[client, default: Client(lastUsed: now)])
  }
}
