public import Testing
@_spi(Locking) import VietnameseAIConcurrency

/// Waits until `condition` holds, polling; records an issue and throws after `timeout`.
/// The condition may itself wait (for a network round trip, say).
///
/// The bound is generous on purpose: it only matters when the code under test is broken, and
/// a busy two-core machine must never make a correct test fail.
public func eventually(
  _ what: String,
  timeout: Duration = .seconds(60),
  sourceLocation: SourceLocation = #_sourceLocation,
  _ condition: () async -> Bool
) async throws {
  let start = ContinuousClock.now
  var pause = Duration.milliseconds(1)
  while await !condition() {
    if ContinuousClock.now - start > timeout {
      Issue.record("timed out waiting for: \(what)", sourceLocation: sourceLocation)
      throw TimedOut()
    }
    // Polling interval of a wait on real progress, not a timing assumption: from 1 ms, so
    // that quick waits stay quick, up to 20 ms, so that many tests polling at once (each look
    // may encode statistics or decode frames) leave the machine to the code under test.
    try await Task.sleep(for: pause)
    pause = min(pause * 2, .milliseconds(20))
  }
}

public struct TimedOut: Error {}

/// A barrier that model calls wait on until the test opens it.
public final class Gate: Sendable {
  public init() {}

  private struct State {
    var open = false
    var waiters: [CheckedContinuation<Void, Never>] = []
    var entered = 0
  }
  private let state = Locked(State())

  /// How many callers reached `wait()` so far.
  public var entered: Int { state.withLock { $0.entered } }

  public func wait() async {
    await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
      let resumeNow = state.withLock { state -> Bool in
        state.entered += 1
        if state.open { return true }
        state.waiters.append(c)
        return false
      }
      if resumeNow { c.resume() }
    }
  }

  public func open() {
    let waiters = state.withLock { state in
      state.open = true
      defer { state.waiters.removeAll() }
      return state.waiters
    }
    for w in waiters { w.resume() }
  }
}
