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
/// Client state is split over 64 shards, each behind its own lock, so threads deciding for
/// different clients rarely meet; there is no global lock on the decision path.
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

  static let shardCount = 64
  /// Sliding-window slots per window.
  static let slotsPerWindow: Int64 = 64

  private let shards: [Shard]
  private let clock: InjectedClock
  private let windowNanos: Int64
  private let slotNanos: Int64
  /// Token-bucket refill in tokens per nanosecond.
  private let refillPerNano: Double

  /// Creates a rate limiter.
  ///
  /// - Parameters:
  ///   - goiY: Requests per window, at least 1 (default 100).
  ///   - cuaSo: Window length, more than zero (default 60 s).
  ///   - kichThuocBurst: Bucket capacity, at least 1 (default `goiY`). Token bucket only.
  ///   - cheDo: The algorithm (default token bucket).
  ///   - clock: Where time comes from; tests pass a test clock.
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
    self.clock = InjectedClock(clock)
    self.windowNanos = cuaSo.nanoseconds
    self.slotNanos = max(windowNanos / Self.slotsPerWindow, 1)
    self.refillPerNano = Double(goiY) / Double(windowNanos)
    self.shards = (0..<Self.shardCount).map { _ in Shard() }
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
    decide(clientID, cost: cost, detailed: false).choPhep
  }

  /// Like ``choPhep(_:cost:)``, with what is left and, when rejected, the retry-after.
  public func kiemTra(_ clientID: String, cost: Int = 1) -> QuyetDinh {
    decide(clientID, cost: cost, detailed: true)
  }

  /// How long until a request of `cost` by `clientID` would be allowed: zero if it would be
  /// now, `nil` if never (the cost exceeds the capacity). Takes nothing.
  public func thoiGianCho(_ clientID: String, cost: Int = 1) -> Duration? {
    let key = ClientKey(clientID)
    let now = clock.nowNanoseconds()
    return shard(for: key).state.withLock { shard in
      var client = shard.clients.value(key: key.id, hash: key.hash) ?? fresh(now: now)
      advance(&client, to: now)
      return retryAfter(client, cost: max(cost, 0), now: now).map { .nanoseconds($0) }
    }
  }

  /// Requests of cost 1 `clientID` could make right now. Takes nothing.
  public func layConLai(_ clientID: String) -> Int {
    let key = ClientKey(clientID)
    let now = clock.nowNanoseconds()
    return shard(for: key).state.withLock { shard in
      var client = shard.clients.value(key: key.id, hash: key.hash) ?? fresh(now: now)
      advance(&client, to: now)
      return remaining(client)
    }
  }

  /// Forgets `clientID`: its next request starts from a full allowance.
  public func reset(_ clientID: String) {
    let key = ClientKey(clientID)
    shard(for: key).state.withLock { _ = $0.clients.remove(key: key.id, hash: key.hash) }
  }

  /// Forgets every client that made no request for `timeout` (default 300 s).
  ///
  /// Call it periodically to bound memory when client ids come and go. A forgotten client
  /// starts again from a full allowance, so use a timeout at least as long as ``cuaSo``.
  ///
  /// - Returns: How many clients were removed.
  @discardableResult
  public func xoaClientKhongHoatDong(timeout: Duration = .seconds(300)) -> Int {
    let now = clock.nowNanoseconds()
    let cutoff = now - timeout.nanoseconds
    var removed = 0
    for shard in shards {
      removed += shard.state.withLock { shard in
        shard.clients.removeAll { $0.lastSeen <= cutoff }
      }
    }
    return removed
  }

  /// The current statistics, summed over all shards.
  public func layThongKe() -> ThongKeGioiHan {
    var allowed = 0
    var rejected = 0
    var clients = 0
    for shard in shards {
      shard.state.withLock { shard in
        allowed += shard.allowed
        rejected += shard.rejected
        clients += shard.clients.count
      }
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
    let key = ClientKey(clientID)
    return shard(for: key).state.withLock { shard in
      guard let client = shard.clients.value(key: key.id, hash: key.hash) else { return (0, 0) }
      return (client.slots.count - client.slotsHead, client.slots.count)
    }
  }

  // MARK: Internals

  /// A client id with its hash computed once: it picks the shard and places the id in the
  /// shard's table. The hash is Swift's per-process seeded SipHash, so client ids chosen by a
  /// peer cannot be made to collide on purpose.
  struct ClientKey {
    let id: String
    let hash: Int

    init(_ id: String) {
      self.id = id
      self.hash = id.hashValue
    }
  }

  /// One client's allowance.
  struct ClientState {
    /// Token bucket: tokens left at `lastSeen`.
    var tokens: Double
    /// The last time the client was seen (and, for the bucket, refilled).
    var lastSeen: Int64
    /// Sliding window: admissions per slot, oldest first, each stamped with its slot's end.
    var slots: [Slot] = []
    var slotsHead = 0
    /// Sliding window: admissions inside the window.
    var inWindow = 0
  }

  struct Slot {
    var end: Int64
    var count: Int
  }

  struct ShardState {
    var clients = ClientTable(empty: ClientState(tokens: 0, lastSeen: 0))
    var allowed = 0
    var rejected = 0
  }

  final class Shard: Sendable {
    let state = Locked(ShardState())
    // Keeps neighbouring shards' locks off one cache line, so that two cores working on two
    // shards do not invalidate each other's line on every lock.
    private let padding: (Int64, Int64, Int64, Int64, Int64, Int64, Int64, Int64) = (0, 0, 0, 0, 0, 0, 0, 0)
  }

  @inline(__always)
  private func shard(for key: ClientKey) -> Shard {
    shards[Int(truncatingIfNeeded: UInt(bitPattern: key.hash) &>> 7) & (Self.shardCount - 1)]
  }

  private func fresh(now: Int64) -> ClientState {
    ClientState(tokens: Double(kichThuocBurst), lastSeen: now)
  }

  private func decide(_ clientID: String, cost rawCost: Int, detailed: Bool) -> QuyetDinh {
    let key = ClientKey(clientID)
    let cost = max(rawCost, 0)
    let now = clock.nowNanoseconds()
    let fresh = fresh(now: now)
    return shard(for: key).state.withLock { shard in
      // One table lookup, which inserts a new client and mutates in place.
      let decision = shard.clients.update(key: key.id, hash: key.hash, default: fresh) { client in
        decide(&client, cost: cost, now: now, detailed: detailed)
      }
      if decision.choPhep { shard.allowed += 1 } else { shard.rejected += 1 }
      return decision
    }
  }

  @inline(__always)
  private func decide(_ client: inout ClientState, cost: Int, now: Int64, detailed: Bool) -> QuyetDinh {
    advance(&client, to: now)
    let allowed: Bool
    switch cheDo {
    case .tokenBucket:
      allowed = client.tokens >= Double(cost)
      if allowed { client.tokens -= Double(cost) }
    case .slidingWindow:
      allowed = client.inWindow + cost <= goiY
      if allowed && cost > 0 { record(cost, in: &client, now: now) }
    }
    guard detailed else { return QuyetDinh(choPhep: allowed, conLai: 0, retryAfter: nil) }
    return QuyetDinh(
      choPhep: allowed,
      conLai: remaining(client),
      retryAfter: allowed ? .zero : retryAfter(client, cost: cost, now: now).map { .nanoseconds($0) }
    )
  }

  /// Brings a client's allowance up to `now`: refills the bucket, expires old slots.
  @inline(__always)
  private func advance(_ client: inout ClientState, to now: Int64) {
    let elapsed = now - client.lastSeen
    switch cheDo {
    case .tokenBucket:
      if elapsed > 0 {
        client.tokens = min(Double(kichThuocBurst), client.tokens + Double(elapsed) * refillPerNano)
      }
    case .slidingWindow:
      // A slot counts while now < end + window; drop the ones that stopped counting.
      while client.slotsHead < client.slots.count,
        client.slots[client.slotsHead].end + windowNanos <= now
      {
        client.inWindow -= client.slots[client.slotsHead].count
        client.slotsHead += 1
      }
      if client.slotsHead == client.slots.count {
        client.slots.removeAll(keepingCapacity: true)
        client.slotsHead = 0
      } else if client.slotsHead >= 16 && client.slotsHead * 2 >= client.slots.count {
        // Amortised O(1): the expired prefix is dropped once it is half the array.
        client.slots.removeFirst(client.slotsHead)
        client.slotsHead = 0
      }
    }
    if now > client.lastSeen { client.lastSeen = now }
  }

  /// Remembers `cost` admissions at `now` in the sliding window.
  private func record(_ cost: Int, in client: inout ClientState, now: Int64) {
    let end = (now / slotNanos + 1) * slotNanos
    client.inWindow += cost
    if client.slotsHead < client.slots.count, client.slots[client.slots.count - 1].end == end {
      client.slots[client.slots.count - 1].count += cost
      return
    }
    client.slots.append(Slot(end: end, count: cost))
  }

  private func remaining(_ client: ClientState) -> Int {
    switch cheDo {
    case .tokenBucket: return Int(client.tokens.rounded(.down))
    case .slidingWindow: return goiY - client.inWindow
    }
  }

  /// Nanoseconds until `cost` would be allowed; `nil` if never.
  private func retryAfter(_ client: ClientState, cost: Int, now: Int64) -> Int64? {
    switch cheDo {
    case .tokenBucket:
      if Double(cost) > Double(kichThuocBurst) { return nil }
      let missing = Double(cost) - client.tokens
      if missing <= 0 { return 0 }
      return Int64((missing / refillPerNano).rounded(.up))
    case .slidingWindow:
      if cost > goiY { return nil }
      var mustFree = client.inWindow + cost - goiY
      if mustFree <= 0 { return 0 }
      var index = client.slotsHead
      while index < client.slots.count {
        mustFree -= client.slots[index].count
        if mustFree <= 0 { return max(client.slots[index].end + windowNanos - now, 0) }
        index += 1
      }
      return nil  // unreachable while inWindow equals the sum of the live slots
    }
  }
}
