import Foundation
import Synchronization
import Testing
@_spi(Locking) import VietnameseAIConcurrency

@testable import VietnameseAI

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
  @discardableResult func increment(by amount: Int = 1) -> Int {
    value.wrappingAdd(amount, ordering: .relaxed).newValue
  }
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
