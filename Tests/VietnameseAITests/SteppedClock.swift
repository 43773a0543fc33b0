@_spi(Locking) import VietnameseAIConcurrency

/// A clock that moves only when a test advances it, waking the sleeps whose deadlines it
/// reaches in order of deadline, with time for the woken tasks to run after each.
///
/// It stands in for swift-clocks' `TestClock`, whose sleep compares the deadline with the
/// time first and registers afterwards: a sleep that begins just after an advance landed
/// exactly on its deadline then waits for an advance that never comes, and the test hangs. A
/// timer task of the batcher, scheduled a moment late on a busy machine, did. Here the check
/// and the registration are one step, and a deadline that has come returns at once.
final class SteppedClock: Clock, Sendable {
  typealias Instant = ManualClock.Instant

  private struct Sleeper {
    var id: UInt64
    var deadline: Instant
    var continuation: CheckedContinuation<Void, any Error>
  }

  private struct State {
    var now = Instant(offset: .zero)
    var sleepers: [Sleeper] = []
    var nextID: UInt64 = 0
  }

  private let state = Locked(State())

  var now: Instant { state.withLock { $0.now } }
  var minimumResolution: Duration { .zero }

  func sleep(until deadline: Instant, tolerance: Duration?) async throws {
    try Task.checkCancellation()
    let id = state.withLock { state in
      state.nextID += 1
      return state.nextID
    }
    try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        enum Now { case due, cancelled, waiting }
        let now = state.withLock { state -> Now in
          if Task.isCancelled { return .cancelled }
          if deadline <= state.now { return .due }
          state.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: continuation))
          return .waiting
        }
        switch now {
        case .due: continuation.resume()
        case .cancelled: continuation.resume(throwing: CancellationError())
        case .waiting: break
        }
      }
    } onCancel: {
      let sleeper = state.withLock { state -> Sleeper? in
        guard let index = state.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
        return state.sleepers.remove(at: index)
      }
      sleeper?.continuation.resume(throwing: CancellationError())
    }
  }

  /// Moves the clock forward by `duration`, stopping at each deadline on the way.
  func advance(by duration: Duration) async {
    let target = now.advanced(by: duration)
    while true {
      await Self.letOthersRun()
      let woken = state.withLock { state -> Sleeper? in
        let next = state.sleepers.indices.min { state.sleepers[$0].deadline < state.sleepers[$1].deadline }
        guard let next, state.sleepers[next].deadline <= target else {
          if state.now < target { state.now = target }
          return nil
        }
        let sleeper = state.sleepers.remove(at: next)
        if state.now < sleeper.deadline { state.now = sleeper.deadline }
        return sleeper
      }
      guard let woken else { break }
      woken.continuation.resume()
    }
    await Self.letOthersRun()
  }

  /// Gives the tasks that just woke, and those they wake, a chance to run.
  private static func letOthersRun() async {
    for _ in 0..<20 {
      await Task.detached(priority: .background) { await Task.yield() }.value
    }
  }
}
