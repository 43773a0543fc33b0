import Foundation
import Synchronization
import Testing

@testable import VietnameseAI

/// Waits until `condition` holds, polling; records an issue and throws after `timeout`.
///
/// The bound is generous on purpose: it only matters when the code under test is broken, and
/// a busy two-core machine must never make a correct test fail.
func eventually(
  _ what: String,
  timeout: Duration = .seconds(20),
  sourceLocation: SourceLocation = #_sourceLocation,
  _ condition: () -> Bool
) async throws {
  let start = ContinuousClock.now
  while !condition() {
    if ContinuousClock.now - start > timeout {
      Issue.record("timed out waiting for: \(what)", sourceLocation: sourceLocation)
      throw TimedOut()
    }
    // Polling interval of a wait on real progress, not a timing assumption.
    try await Task.sleep(for: .milliseconds(1))
  }
}

struct TimedOut: Error {}

/// A barrier that model calls wait on until the test opens it.
final class Gate: Sendable {
  private struct State {
    var open = false
    var waiters: [CheckedContinuation<Void, Never>] = []
    var entered = 0
  }
  private let state = Locked(State())

  /// How many callers reached `wait()` so far.
  var entered: Int { state.withLock { $0.entered } }

  func wait() async {
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

  func open() {
    let waiters = state.withLock { state in
      state.open = true
      defer { state.waiters.removeAll() }
      return state.waiters
    }
    for w in waiters { w.resume() }
  }
}

/// A thread-safe log of values, for recording what a model or generator saw.
final class Recorder<Value: Sendable>: Sendable {
  private let values = Locked<[Value]>([])
  func append(_ value: Value) { values.withLock { $0.append(value) } }
  func append(contentsOf more: [Value]) { values.withLock { $0.append(contentsOf: more) } }
  var all: [Value] { values.withLock { $0 } }
  var count: Int { values.withLock { $0.count } }
}

/// A counter shared between tasks.
final class Counter: Sendable {
  private let value = Atomic<Int>(0)
  @discardableResult func increment() -> Int { value.wrappingAdd(1, ordering: .relaxed).newValue }
  func decrement() { value.wrappingSubtract(1, ordering: .relaxed) }
  var current: Int { value.load(ordering: .relaxed) }
}

/// Expects `body` to throw a ``VietnameseAIError`` with `code`.
func expectError<T>(
  _ code: VietnameseAIError.Code,
  sourceLocation: SourceLocation = #_sourceLocation,
  _ body: () async throws -> T
) async {
  do {
    _ = try await body()
    Issue.record("expected \(code), got a result", sourceLocation: sourceLocation)
  } catch let error as VietnameseAIError {
    #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
  } catch {
    Issue.record("expected \(code), got \(error)", sourceLocation: sourceLocation)
  }
}

/// Expects `body` to throw `CancellationError`.
func expectCancellation<T>(sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> T)
  async
{
  do {
    _ = try await body()
    Issue.record("expected CancellationError, got a result", sourceLocation: sourceLocation)
  } catch is CancellationError {
  } catch {
    Issue.record("expected CancellationError, got \(error)", sourceLocation: sourceLocation)
  }
}

/// The keys of an encoded value's top-level JSON object.
func jsonKeys(_ value: some Encodable) throws -> Set<String> {
  let data = try JSONEncoder().encode(value)
  let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
  return Set(object.keys)
}

/// A clock that moves only when told, synchronously.
///
/// For code that reads the time but never sleeps (the rate limiter), this is much faster than
/// a test clock that yields to other tasks on every advance. Its `sleep` waits (by polling
/// with yields) until the clock is advanced past the deadline.
final class ManualClock: Clock, Sendable {
  struct Instant: InstantProtocol {
    var offset: Duration
    func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
    func duration(to other: Instant) -> Duration { other.offset - offset }
    static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
  }

  private let current = Locked(Instant(offset: .zero))
  var now: Instant { current.withLock { $0 } }
  var minimumResolution: Duration { .nanoseconds(1) }

  func advance(by duration: Duration) {
    current.withLock { $0 = $0.advanced(by: duration) }
  }

  func sleep(until deadline: Instant, tolerance: Duration?) async throws {
    while now < deadline {
      try Task.checkCancellation()
      await Task.yield()
    }
  }
}

/// Every element of `sequence`, in order.
func collect<S: AsyncSequence>(_ sequence: S) async throws -> [S.Element] {
  var elements: [S.Element] = []
  for try await element in sequence { elements.append(element) }
  return elements
}
