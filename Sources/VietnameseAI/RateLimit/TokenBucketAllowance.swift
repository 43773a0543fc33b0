/// A token bucket: holds at most the capacity, refills continuously at `goiY` per window.
struct TokenBucketAllowance: ClientAllowance {
  /// Tokens left at `lastSeen`.
  var tokens: Double
  var lastSeen: Int64

  init(now: Int64, _ limits: LimitParameters) {
    tokens = limits.capacity
    lastSeen = now
  }

  private init(tokens: Double, lastSeen: Int64) {
    self.tokens = tokens
    self.lastSeen = lastSeen
  }

  static var placeholder: Self { Self(tokens: 0, lastSeen: 0) }

  @inline(__always)
  mutating func advance(to now: Int64, _ limits: LimitParameters) {
    let elapsed = now - lastSeen
    if elapsed > 0 {
      tokens = min(limits.capacity, tokens + Double(elapsed) * limits.refillPerNano)
      lastSeen = now
    }
  }

  @inline(__always)
  mutating func take(_ cost: Int, now: Int64, _ limits: LimitParameters) -> Bool {
    guard tokens >= Double(cost) else { return false }
    tokens -= Double(cost)
    return true
  }

  func remaining(_ limits: LimitParameters) -> Int {
    Int(tokens.rounded(.down))
  }

  func retryAfter(cost: Int, now: Int64, _ limits: LimitParameters) -> Int64? {
    if Double(cost) > limits.capacity { return nil }
    let missing = Double(cost) - tokens
    if missing <= 0 { return 0 }
    return Int64((missing / limits.refillPerNano).rounded(.up))
  }

  @inline(__always)
  static func withTable<R>(
    in shard: inout BoGioiHanTocDo.ShardState,
    _ body: (inout ClientTable<Self>) -> R
  ) -> R {
    body(&shard.buckets)
  }
}
