/// A clock reduced to what the components need: "how long since I was created" and "sleep until
/// that offset", both in `Duration`.
///
/// Components take `some Clock<Duration>` so that tests can pass a test clock and advance time
/// by hand. Keeping the concrete clock behind two closures lets a non-generic type store it, and
/// measuring every instant as an offset from one origin turns instants into plain numbers that
/// can be stored, compared and subtracted without knowing the clock's `Instant` type.
struct InjectedClock: Sendable {
  /// Time elapsed since this value was created.
  let now: @Sendable () -> Duration
  /// Suspends until `now()` would return at least the given offset. Throws `CancellationError`.
  let sleepUntil: @Sendable (Duration) async throws -> Void

  init<C: Clock>(_ clock: C) where C.Duration == Duration {
    let origin = clock.now
    self.now = { origin.duration(to: clock.now) }
    self.sleepUntil = { offset in
      try await clock.sleep(until: origin.advanced(by: offset), tolerance: nil)
    }
  }

  /// `now()` in whole nanoseconds, for hot paths that keep time as an integer.
  @inline(__always)
  func nowNanoseconds() -> Int64 {
    now().nanoseconds
  }
}

extension Duration {
  /// The duration in whole nanoseconds, saturating at `Int64.max`.
  var nanoseconds: Int64 {
    let (seconds, attoseconds) = components
    let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
    if overflow { return seconds < 0 ? .min : .max }
    let (sum, overflow2) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000)
    if overflow2 { return .max }
    return sum
  }

  /// The duration in seconds as a `Double`, the unit of the seed's statistics.
  var seconds: Double {
    let (seconds, attoseconds) = components
    return Double(seconds) + Double(attoseconds) * 1e-18
  }
}
