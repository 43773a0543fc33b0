import Synchronization

/// A token bucket: holds at most the capacity, refills continuously at `goiY` per window.
struct TokenBucketAllowance: ClientAllowance {
  /// Tokens left at `lastSeen`.
  var tokens: Double
  var lastSeen: Int64

  init(now: Int64, _ limits: LimitParameters) {
    tokens = limits.capacity
    lastSeen = now
  }

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

  /// The bucket as the two words ``TokenBucketTable`` swaps in one compare-and-swap.
  @inline(__always)
  var packed: WordPair {
    WordPair(first: UInt(tokens.bitPattern), second: UInt(bitPattern: Int(lastSeen)))
  }

  @inline(__always)
  init(packed: WordPair) {
    tokens = Double(bitPattern: UInt64(packed.first))
    lastSeen = Int64(Int(bitPattern: packed.second))
  }
}
