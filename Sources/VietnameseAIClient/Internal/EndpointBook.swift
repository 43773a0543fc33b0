/// The servers of an ``RPCClientPool`` and what the pool knows of each, as plain values: which
/// connection serves, which is being made, which failed and when to try it again, and how many
/// calls each has in flight. The pool performs what the transitions return.
struct EndpointBook<Connection> {
  enum State {
    /// Not connected; may be tried at once.
    case idle
    case connecting
    case ready(Connection)
    /// The last attempt failed, or the server went away: not before `until`.
    case backingOff(until: ContinuousClock.Instant)
  }

  struct Endpoint {
    var state: State = .idle
    var inFlight = 0
    /// The wait after the next failure.
    var nextDelay: Duration
  }

  let firstDelay: Duration
  let maxDelay: Duration
  private(set) var endpoints: [Endpoint]
  /// Where the search for the least busy server starts, so that ties take turns.
  private var cursor = 0

  init(count: Int, firstDelay: Duration, maxDelay: Duration) {
    self.firstDelay = firstDelay
    self.maxDelay = maxDelay
    self.endpoints = Array(repeating: Endpoint(nextDelay: firstDelay), count: count)
  }

  enum Pick {
    /// Call on this connection (its in-flight count is taken).
    case use(Int, Connection)
    /// Connect these first (they are marked connecting), then pick again.
    case connect([Int])
    /// Some are being connected: pick again once one is done.
    case wait
    /// None can be used before `until` (nil: none at all outside `excluded`).
    case unavailable(until: ContinuousClock.Instant?)
  }

  /// The ready server with the fewest calls in flight, outside `excluded`; else what to do.
  mutating func pick(excluding excluded: Set<Int>, now: ContinuousClock.Instant) -> Pick {
    var best: (index: Int, inFlight: Int, connection: Connection)?
    var toConnect: [Int] = []
    var connecting = false
    var soonest: ContinuousClock.Instant?
    for offset in endpoints.indices {
      let index = (cursor + offset) % endpoints.count
      guard !excluded.contains(index) else { continue }
      switch endpoints[index].state {
      case .ready(let connection):
        if best == nil || endpoints[index].inFlight < best!.inFlight {
          best = (index, endpoints[index].inFlight, connection)
        }
      case .connecting:
        connecting = true
      case .idle:
        toConnect.append(index)
      case .backingOff(let until):
        if until <= now {
          toConnect.append(index)
        } else {
          soonest = min(soonest ?? until, until)
        }
      }
    }
    if let best {
      endpoints[best.index].inFlight += 1
      cursor = (best.index + 1) % endpoints.count
      return .use(best.index, best.connection)
    }
    if !toConnect.isEmpty {
      for index in toConnect { endpoints[index].state = .connecting }
      return .connect(toConnect)
    }
    return connecting ? .wait : .unavailable(until: soonest)
  }

  /// A call on `index` ended.
  mutating func finished(_ index: Int) {
    endpoints[index].inFlight = max(endpoints[index].inFlight - 1, 0)
  }

  mutating func connected(_ index: Int, _ connection: Connection) {
    endpoints[index].state = .ready(connection)
    endpoints[index].nextDelay = firstDelay
  }

  /// The connection to `index` could not be made, or was lost (the server sent `GOAWAY` or
  /// went away): not tried again before a delay that doubles with each failure in a row.
  mutating func failed(_ index: Int, now: ContinuousClock.Instant) {
    endpoints[index].state = .backingOff(until: now + endpoints[index].nextDelay)
    endpoints[index].nextDelay = min(endpoints[index].nextDelay * 2, maxDelay)
  }

  /// The connection in use at `index`, if it is ready.
  func connection(at index: Int) -> Connection? {
    if case .ready(let connection) = endpoints[index].state { return connection }
    return nil
  }
}
