import Synchronization

/// A per-client rate limiter: token bucket (default) or sliding window.
///
/// ```swift
/// let limiter = BoGioiHanTocDo(goiY: 100, cuaSo: .seconds(60), kichThuocBurst: 150, cheDo: .tokenBucket)
/// if limiter.choPhep("client_1") {
///   // handle the request
/// } else {
///   // limited: answer 429 with limiter.kiemTra("client_1").retryAfter
/// }
/// ```
///
/// - Token bucket: each client's bucket holds at most ``kichThuocBurst`` tokens and refills
///   continuously at ``goiY`` per ``cuaSo``; a request takes `cost` tokens. Bursts up to the
///   capacity pass at once, the long-run rate is `goiY / cuaSo`.
/// - Sliding window: never more than ``goiY`` allowed in any trailing window of length
///   ``cuaSo``. Admissions are remembered per slot of `cuaSo / 64`, rounded *up* to the slot's
///   end, so a client costs at most 65 entries (or `goiY`, if smaller) whatever its rate, and
///   rounding up can only make the limiter stricter by at most one slot, never looser.
///
/// No lock is taken on the decision path of the token bucket: a decision for a known client
/// swaps its 16-byte bucket by compare-and-swap, so threads deciding for different clients do
/// not wait for each other or share a cache line they write (see `TokenBucketTable`). Sliding
/// windows are split over 64 shards, each behind its own lock.
public final class BoGioiHanTocDo: Sendable {
  /// The limiting algorithm.
  public enum CheDo: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case tokenBucket = "token_bucket"
    case slidingWindow = "sliding_window"

    /// Parses the seed's names `"token_bucket"` and `"sliding_window"`.
    ///
    /// - Throws: ``VietnameseAIError/Code/invalidArgument`` for any other string.
    public init(parsing name: String) throws(VietnameseAIError) {
      guard let mode = CheDo(rawValue: name) else {
        let known = CheDo.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
        throw VietnameseAIError(
          code: .invalidArgument,
          message: "unknown rate limit mode \"\(name)\": expected one of \(known)"
        )
      }
      self = mode
    }

    public var description: String { rawValue }
  }

  /// Requests allowed per window (and the token bucket's refill per window).
  public let goiY: Int
  /// The window length.
  public let cuaSo: Duration
  /// The token bucket's capacity: the largest burst.
  public let kichThuocBurst: Int
  /// The algorithm.
  public let cheDo: CheDo

  /// Sliding-window slots per window.
  static let slotsPerWindow: Int64 = 64

  // The clients' state: the store of the limiter's algorithm is used, the other stays empty.
  // Two stored properties rather than an enum with payloads: taking a payload out of an enum
  // retains it, and a retain and a release are two atomic writes to the store's first cache
  // line, the one every decision reads; with two cores deciding, that line would move between
  // them on every decision. A `let` property is borrowed as it is.
  private let tokenBuckets = TokenBucketTable()
  private let slidingWindows = SlidingWindowShards()
  private let clock: InjectedClock
  /// Whether decisions read the coarse system clock (see `init`).
  var usesCoarseClock: Bool { clock.isCoarse }
  private let limits: LimitParameters

  /// Creates a rate limiter.
  ///
  /// - Parameters:
  ///   - goiY: Requests per window, at least 1 (default 100).
  ///   - cuaSo: Window length, more than zero (default 60 s).
  ///   - kichThuocBurst: Bucket capacity, at least 1 (default `goiY`). Token bucket only.
  ///   - cheDo: The algorithm (default token bucket).
  ///   - clock: Where time comes from; tests pass a test clock. With the system clock and a
  ///     window of at least a thousand ticks of Linux's coarse clock (4 s at the usual 4 ms
  ///     tick), decisions read the coarse clock, which is cheaper: the time they see is at
  ///     most one tick old, which holds a refill back by at most a thousandth of the window
  ///     and never lets more through.
  ///
  /// The parameters must be valid: check values from outside the program with
  /// ``validate(goiY:cuaSo:kichThuocBurst:)`` first. An invalid one is a programming error.
  public init(
    goiY: Int = 100,
    cuaSo: Duration = .seconds(60),
    kichThuocBurst: Int? = nil,
    cheDo: CheDo = .tokenBucket,
    clock: some Clock<Duration> = ContinuousClock()
  ) {
    do {
      try Self.validate(goiY: goiY, cuaSo: cuaSo, kichThuocBurst: kichThuocBurst)
    } catch {
      preconditionFailure("BoGioiHanTocDo: \(error.message)")
    }
    self.goiY = goiY
    self.cuaSo = cuaSo
    self.kichThuocBurst = kichThuocBurst ?? goiY
    self.cheDo = cheDo
    // A decision needs the time to within a thousandth of the window, not to the nanosecond:
    // with the default 60 s window, Linux's coarse clock (ticks of a few ms) is plenty.
    self.clock = InjectedClock(clock, coarseWithin: cuaSo / 1_000)
    let windowNanos = cuaSo.nanoseconds
    self.limits = LimitParameters(
      goiY: goiY,
      capacity: Double(kichThuocBurst ?? goiY),
      windowNanos: windowNanos,
      slotNanos: max(windowNanos / Self.slotsPerWindow, 1),
      refillPerNano: Double(goiY) / Double(windowNanos)
    )
  }

  /// Checks limiter parameters, for command-line front ends and configuration files.
  ///
  /// - Throws: ``VietnameseAIError/Code/invalidArgument`` naming the first bad parameter.
  public static func validate(goiY: Int, cuaSo: Duration, kichThuocBurst: Int?) throws(VietnameseAIError) {
    func bad(_ message: String) -> VietnameseAIError {
      VietnameseAIError(code: .invalidArgument, message: message)
    }
    guard goiY >= 1 else { throw bad("goiY must be at least 1, got \(goiY)") }
    guard cuaSo.nanoseconds >= 1 else { throw bad("cuaSo must be longer than zero, got \(cuaSo)") }
    if let kichThuocBurst, kichThuocBurst < 1 {
      throw bad("kichThuocBurst must be at least 1, got \(kichThuocBurst)")
    }
  }

  // MARK: Decisions

  /// Whether `clientID` may make a request of `cost` now; if so, the cost is taken.
  ///
  /// A cost of zero or less is always allowed and takes nothing.
  public func choPhep(_ clientID: String, cost: Int = 1) -> Bool {
    switch cheDo {
    case .tokenBucket:
      decide(in: tokenBuckets, clientID, cost: cost, detailed: false).choPhep
    case .slidingWindow:
      decide(in: slidingWindows, clientID, cost: cost, detailed: false).choPhep
    }
  }

  /// Like ``choPhep(_:cost:)``, with what is left and, when rejected, the retry-after.
  public func kiemTra(_ clientID: String, cost: Int = 1) -> QuyetDinh {
    switch cheDo {
    case .tokenBucket: decide(in: tokenBuckets, clientID, cost: cost, detailed: true)
    case .slidingWindow: decide(in: slidingWindows, clientID, cost: cost, detailed: true)
    }
  }

  /// Decides `count` requests of cost 1 from `clientID` at once, in order: the first
  /// `allowed` may go ahead (their cost is taken), the others are rejected, and each counts
  /// in the statistics as a decision of its own. When some are rejected, `retryAfter` says
  /// when the next would be allowed (`nil`: never).
  ///
  /// The same decisions as `count` calls of ``choPhep(_:cost:)`` at one instant, for one
  /// lookup: a server decides the requests of one read together.
  package func choPhep(_ clientID: String, soYeuCau count: Int) -> (allowed: Int, retryAfter: Duration?) {
    switch cheDo {
    case .tokenBucket: decideMany(in: tokenBuckets, clientID, count: count)
    case .slidingWindow: decideMany(in: slidingWindows, clientID, count: count)
    }
  }

  /// How long until a request of `cost` by `clientID` would be allowed: zero if it would be
  /// now, `nil` if never (the cost exceeds the capacity). Takes nothing.
  public func thoiGianCho(_ clientID: String, cost: Int = 1) -> Duration? {
    let cost = max(cost, 0)
    let nanos =
      switch cheDo {
      case .tokenBucket: peek(tokenBuckets, clientID) { $0.retryAfter(cost: cost, now: $1, $2) }
      case .slidingWindow: peek(slidingWindows, clientID) { $0.retryAfter(cost: cost, now: $1, $2) }
      }
    return nanos.map { .nanoseconds($0) }
  }

  /// Requests of cost 1 `clientID` could make right now. Takes nothing.
  public func layConLai(_ clientID: String) -> Int {
    switch cheDo {
    case .tokenBucket: peek(tokenBuckets, clientID) { client, _, limits in client.remaining(limits) }
    case .slidingWindow: peek(slidingWindows, clientID) { client, _, limits in client.remaining(limits) }
    }
  }

  /// Forgets `clientID`: its next request starts from a full allowance.
  public func reset(_ clientID: String) {
    switch cheDo {
    case .tokenBucket: tokenBuckets.remove(ClientKey(clientID))
    case .slidingWindow: slidingWindows.remove(ClientKey(clientID))
    }
  }

  /// Forgets every client that made no request for `timeout` (default 300 s).
  ///
  /// Call it periodically to bound memory when client ids come and go. A forgotten client
  /// starts again from a full allowance, so use a timeout at least as long as ``cuaSo``.
  ///
  /// - Returns: How many clients were removed.
  @discardableResult
  public func xoaClientKhongHoatDong(timeout: Duration = .seconds(300)) -> Int {
    let cutoff = clock.nowNanoseconds() - timeout.nanoseconds
    return switch cheDo {
    case .tokenBucket: tokenBuckets.removeAll { $0.lastSeen <= cutoff }
    case .slidingWindow: slidingWindows.removeAll { $0.lastSeen <= cutoff }
    }
  }

  /// The current statistics.
  public func layThongKe() -> ThongKeGioiHan {
    let (allowed, rejected, clients) =
      switch cheDo {
      case .tokenBucket: tokenBuckets.statistics()
      case .slidingWindow: slidingWindows.statistics()
      }
    let total = allowed + rejected
    return ThongKeGioiHan(
      tyLeTuChoi: total == 0 ? 0 : Double(rejected) / Double(total),
      requestsTotal: total,
      allowed: allowed,
      rejected: rejected,
      clients: clients
    )
  }

  /// Sliding-window entries stored for a client (live and not yet reclaimed), for tests.
  package func trackedEntries(_ clientID: String) -> (live: Int, stored: Int) {
    slidingWindows.peek(ClientKey(clientID)) { $0?.trackedSlots ?? (0, 0) }
  }

  // MARK: Internals

  /// A client id with its hash computed once: it places the id in its store's table (and
  /// picks a sliding window's shard). The hash is Swift's per-process seeded SipHash, so
  /// client ids chosen by a peer cannot be made to collide on purpose.
  struct ClientKey {
    let id: String
    let hash: Int

    init(_ id: String) {
      self.id = id
      self.hash = id.hashValue
    }
  }

  /// `read` of `clientID`'s allowance as of `now`, without changing the stored one.
  ///
  /// `read` may run under a lock: a sliding window's log is shared with its store.
  private func peek<S: ClientStore, R: Sendable>(
    _ store: S,
    _ clientID: String,
    _ read: (S.Allowance, Int64, LimitParameters) -> R
  ) -> R {
    let now = clock.nowNanoseconds()
    let limits = self.limits
    return store.peek(ClientKey(clientID)) { stored in
      var client = stored ?? S.Allowance(now: now, limits)
      client.advance(to: now, limits)
      return read(client, now, limits)
    }
  }

  private func decideMany<S: ClientStore>(
    in store: S,
    _ clientID: String,
    count: Int
  ) -> (allowed: Int, retryAfter: Duration?) {
    update(store, clientID) { client, now, limits in
      var allowed = 0
      while allowed < count, client.take(1, now: now, limits) { allowed += 1 }
      let retryAfter = allowed < count ? client.retryAfter(cost: 1, now: now, limits) : 0
      return ((allowed, retryAfter.map { .nanoseconds($0) }), allowed, max(count - allowed, 0))
    }
  }

  @inline(__always)
  private func decide<S: ClientStore>(
    in store: S,
    _ clientID: String,
    cost rawCost: Int,
    detailed: Bool
  ) -> QuyetDinh {
    let cost = max(rawCost, 0)
    return update(store, clientID) { client, now, limits in
      let allowed = client.take(cost, now: now, limits)
      let decision =
        detailed
        ? QuyetDinh(
          choPhep: allowed,
          conLai: client.remaining(limits),
          retryAfter: allowed
            ? .zero : client.retryAfter(cost: cost, now: now, limits).map { .nanoseconds($0) }
        )
        : QuyetDinh(choPhep: allowed, conLai: 0, retryAfter: nil)
      return (decision, allowed ? 1 : 0, allowed ? 0 : 1)
    }
  }

  /// Runs `body` on `clientID`'s allowance brought up to now (a new client starts full), and
  /// counts the decisions `body` reports as allowed and rejected. `body` may run more than once
  /// (see ``ClientStore/update(_:new:_:)``).
  @inline(__always)
  private func update<S: ClientStore, R: Sendable>(
    _ store: S,
    _ clientID: String,
    _ body: (inout S.Allowance, _ now: Int64, LimitParameters) -> (result: R, allowed: Int, rejected: Int)
  ) -> R {
    let now = clock.nowNanoseconds()
    let limits = self.limits
    return store.update(ClientKey(clientID), new: { S.Allowance(now: now, limits) }) { client in
      client.advance(to: now, limits)
      return body(&client, now, limits)
    }
  }
}
