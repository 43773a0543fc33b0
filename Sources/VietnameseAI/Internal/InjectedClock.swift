#if canImport(Glibc)
  import Glibc
#endif

/// A clock reduced to what the components need: "how long since I was created" and "sleep until
/// that offset", with offsets as integer nanoseconds.
///
/// Components take `some Clock<Duration>` so that tests can pass a test clock and advance time
/// by hand. Measuring every instant as an offset from one origin turns instants into plain
/// integers that can be stored, compared and subtracted without knowing the clock's `Instant`
/// type, and lets a non-generic type store any clock.
///
/// The system's `ContinuousClock` gets a fast path on Linux: a direct `clock_gettime` of the
/// same clock (`CLOCK_BOOTTIME`), with no closure call. Besides being cheaper, it avoids the
/// closure context's reference count, which every thread would otherwise bump on every read —
/// a cache line bouncing between cores on the rate limiter's hot path.
///
/// A component that can do with a few milliseconds' resolution may ask for Linux's coarse
/// clock instead (`CLOCK_MONOTONIC_COARSE`, the time of the last scheduler tick), which is
/// read without the timekeeping arithmetic of a precise read.
struct InjectedClock: Sendable {
  private enum Source: Sendable {
    /// `CLOCK_BOOTTIME`, or `CLOCK_MONOTONIC_COARSE` if `coarse`.
    case system(coarse: Bool, originNanoseconds: Int64)
    case custom(now: @Sendable () -> Duration, sleepUntil: @Sendable (Duration) async throws -> Void)
  }

  private let source: Source

  /// - Parameters:
  ///   - coarseWithin: For the system clock: read the coarse clock if its resolution is at
  ///     most this; `nil` always reads the precise one. The coarse clock does not count time
  ///     the machine spends suspended.
  init<C: Clock>(_ clock: C, coarseWithin tolerance: Duration? = nil) where C.Duration == Duration {
    #if canImport(Glibc)
      if C.self == ContinuousClock.self {
        var coarse = false
        if let tolerance {
          var resolution = timespec()
          coarse =
            clock_getres(CLOCK_MONOTONIC_COARSE, &resolution) == 0
            && Self.nanoseconds(resolution) <= tolerance.nanoseconds
        }
        source = .system(coarse: coarse, originNanoseconds: Self.systemNanoseconds(coarse: coarse))
        return
      }
    #endif
    let origin = clock.now
    source = .custom(
      now: { origin.duration(to: clock.now) },
      sleepUntil: { offset in
        // An instant that has come already must not suspend: some clocks (test clocks among
        // them) only wake sleepers on their next tick, even for a deadline equal to now.
        if origin.duration(to: clock.now) >= offset {
          try Task.checkCancellation()
          return
        }
        try await clock.sleep(until: origin.advanced(by: offset), tolerance: nil)
      }
    )
  }

  /// Nanoseconds since this value was created.
  @inline(__always)
  func nowNanoseconds() -> Int64 {
    switch source {
    case .system(let coarse, let origin):
      return Self.systemNanoseconds(coarse: coarse) &- origin
    case .custom(let now, _):
      return now().nanoseconds
    }
  }

  /// Whether readings come from the coarse clock.
  var isCoarse: Bool {
    if case .system(coarse: true, _) = source { true } else { false }
  }

  /// Suspends until `nowNanoseconds()` would return at least `offset`.
  ///
  /// - Throws: `CancellationError` if the task is cancelled first.
  func sleep(untilNanoseconds offset: Int64) async throws {
    switch source {
    case .system:
      let remaining = offset &- nowNanoseconds()
      if remaining > 0 {
        try await ContinuousClock().sleep(for: .nanoseconds(remaining))
      } else {
        try Task.checkCancellation()
      }
    case .custom(_, let sleepUntil):
      try await sleepUntil(.nanoseconds(offset))
    }
  }

  @inline(__always)
  private static func systemNanoseconds(coarse: Bool) -> Int64 {
    #if canImport(Glibc)
      var time = timespec()
      clock_gettime(coarse ? CLOCK_MONOTONIC_COARSE : CLOCK_BOOTTIME, &time)
      return nanoseconds(time)
    #else
      return 0
    #endif
  }

  #if canImport(Glibc)
    @inline(__always)
    private static func nanoseconds(_ time: timespec) -> Int64 {
      Int64(time.tv_sec) &* 1_000_000_000 &+ Int64(time.tv_nsec)
    }
  #endif
}

extension Duration {
  /// The duration in whole nanoseconds, saturating at the bounds of `Int64`.
  var nanoseconds: Int64 {
    let (seconds, attoseconds) = components
    let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
    if overflow { return seconds < 0 ? .min : .max }
    let (sum, overflow2) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000)
    if overflow2 { return seconds < 0 ? .min : .max }
    return sum
  }
}
