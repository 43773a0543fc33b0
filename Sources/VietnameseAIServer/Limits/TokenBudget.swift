/// One client's token allowance: `limit` tokens per `window`, as LLM APIs enforce tokens per
/// minute. GCRA with debt: tokens a stream generated are charged whatever the allowance says,
/// and a client over it may not open a stream until the debt is repaid. The same arithmetic
/// as ``RedisGCRA``'s mode `all`, on this server's clock.
struct TokenBudget: Sendable, Equatable {
  /// The theoretical arrival time of the next token, in nanoseconds of the caller's clock.
  private(set) var tat: Int64

  struct Parameters: Sendable {
    /// Nanoseconds the allowance takes to free one token.
    let emission: Int64
    /// The allowance's capacity, in nanoseconds of emission: `limit × emission`.
    let capacity: Int64

    init(limit: Int, window: Duration) {
      let (seconds, attoseconds) = window.components
      let window = max(seconds &* 1_000_000_000 &+ attoseconds / 1_000_000_000, 1)
      emission = max(window / Int64(max(limit, 1)), 1)
      capacity = emission * Int64(max(limit, 1))
    }
  }

  init(now: Int64) {
    tat = now
  }

  /// Opens a stream whose prompt costs `prompt` tokens: charges them and returns `nil` if at
  /// least one token is free now; otherwise charges nothing and returns how long until one is.
  mutating func open(prompt: Int, now: Int64, _ parameters: Parameters) -> Duration? {
    if let wait = retryAfter(now: now, parameters) { return wait }
    spend(prompt, now: now, parameters)
    return nil
  }

  /// Charges `tokens`, into debt if need be.
  mutating func spend(_ tokens: Int, now: Int64, _ parameters: Parameters) {
    tat = max(tat, now) &+ Int64(max(tokens, 0)) &* parameters.emission
  }

  /// How long until one token is free, or `nil` if one is now.
  func retryAfter(now: Int64, _ parameters: Parameters) -> Duration? {
    let wait = max(tat, now) - now - parameters.capacity + parameters.emission
    return wait > 0 ? .nanoseconds(wait) : nil
  }
}
