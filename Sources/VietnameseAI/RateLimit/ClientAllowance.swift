/// A limiter's parameters in the units its arithmetic uses, fixed when it is created.
struct LimitParameters: Sendable {
  /// Requests per window.
  let goiY: Int
  /// The token bucket's capacity.
  let capacity: Double
  /// The window, in nanoseconds.
  let windowNanos: Int64
  /// The sliding window's slot, in nanoseconds.
  let slotNanos: Int64
  /// The token bucket's refill, in tokens per nanosecond.
  let refillPerNano: Double
}

/// One client's allowance under one limiting algorithm.
///
/// Each algorithm keeps only the state it needs, so that the token bucket's allowance is 16
/// bytes (its entry in the client table, with the key, 32): with 100,000 clients the table
/// outgrows the caches, and its size is what a decision costs.
protocol ClientAllowance: SendableMetatype {
  /// A client seen for the first time at `now`, with its full allowance.
  init(now: Int64, _ limits: LimitParameters)

  /// The last time the client was seen.
  var lastSeen: Int64 { get }

  /// Brings the allowance up to `now`: refills, or forgets admissions that left the window.
  mutating func advance(to now: Int64, _ limits: LimitParameters)

  /// Takes `cost` (at least zero) if the allowance, already advanced to `now`, has it.
  mutating func take(_ cost: Int, now: Int64, _ limits: LimitParameters) -> Bool

  /// Requests of cost 1 that would be allowed now.
  func remaining(_ limits: LimitParameters) -> Int

  /// Nanoseconds until `cost` would be allowed: zero if now, `nil` if never.
  func retryAfter(cost: Int, now: Int64, _ limits: LimitParameters) -> Int64?
}
