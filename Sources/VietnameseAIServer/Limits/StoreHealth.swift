import Logging
import Synchronization
@_spi(Locking) import VietnameseAIConcurrency

/// Whether the store shared limits live in can be reached, as the limits that use it saw it:
/// one log line when it goes away and one when it is back, counts for the metrics, and at
/// most one probe per ``probeInterval`` while it is away, so that shared limiting resumes
/// without a restart.
final class StoreHealth: Sendable {
  let location: String
  /// What the limits do while the store is away.
  let policy: RPCServer.Configuration.SharedRateLimit.Policy
  private let logger: Logger
  private let probeInterval: Duration
  private let down = Atomic<Bool>(false)
  private let state = Locked(State())

  private struct State {
    var nextProbe = ContinuousClock.Instant.now
    var probing = false
    var calls = 0
    var failures = 0
  }

  init(
    location: String,
    policy: RPCServer.Configuration.SharedRateLimit.Policy,
    logger: Logger,
    probeInterval: Duration = .seconds(1)
  ) {
    self.location = location
    self.policy = policy
    self.logger = logger
    self.probeInterval = probeInterval
  }

  /// Whether the last call failed: decisions then follow ``policy`` without calling.
  var isAway: Bool { down.load(ordering: .relaxed) }

  /// Calls to the store, those that failed, and whether it is reachable now.
  func statistics() -> (calls: Int, failures: Int, up: Bool) {
    let (calls, failures) = state.withLock { ($0.calls, $0.failures) }
    return (calls, failures, !isAway)
  }

  /// Whether the caller should try the store now, while it is away; if so, it must report the
  /// outcome with `probe: true`.
  func probeDue() -> Bool {
    let now = ContinuousClock.now
    return state.withLock { state in
      guard !state.probing, now >= state.nextProbe else { return false }
      state.probing = true
      return true
    }
  }

  /// A call answered.
  func succeeded(probe: Bool = false) {
    state.withLock { state in
      state.calls += 1
      if probe { state.probing = false }
    }
    if down.exchange(false, ordering: .relaxed) {
      logger.notice("shared limit store reachable again", metadata: ["store": "\(location)"])
    }
  }

  /// A call failed with `error`.
  func failed(_ error: any Error, probe: Bool = false) {
    let next = ContinuousClock.now + probeInterval
    state.withLock { state in
      state.calls += 1
      state.failures += 1
      state.nextProbe = next
      if probe { state.probing = false }
    }
    if !down.exchange(true, ordering: .relaxed) {
      logger.error(
        "shared limit store unreachable",
        metadata: ["store": "\(location)", "error": "\(error)", "policy": "\(policy.rawValue)"]
      )
    }
  }

  /// The refusal while the store is away under policy `refuse`.
  var unreachable: LimitVerdict.Refusal {
    .storeUnreachable("the shared limit store at \(location) cannot be reached")
  }
}
