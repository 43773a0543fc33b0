import Synchronization

/// What one stream did, for an observer that exports metrics (see
/// ``MayChuStream/observe(_:)``): reported once, when the stream ends.
package struct StreamReport: Sendable {
  /// How the stream ended.
  package enum Outcome: Sendable {
    case done
    case failed
    case timedOut
    case cancelled
  }

  package var outcome: Outcome
  /// From admission to the end, in nanoseconds.
  package var durationNanoseconds: Int64
  /// From admission to the first token, in nanoseconds; `nil` if none came.
  package var firstTokenNanoseconds: Int64?
  /// Tokens handed to the consumer.
  package var tokens: Int
}

/// A stream's tokens so far, counted by whoever delivers them.
final class StreamProgress: Sendable {
  private let tokens = Atomic<Int>(0)
  /// Nanoseconds from admission to the first token; -1 until it came.
  private let firstToken = Atomic<Int64>(-1)

  func delivered(_ count: Int) {
    tokens.add(count, ordering: .relaxed)
  }

  func firstToken(after nanoseconds: Int64) {
    firstToken.store(nanoseconds, ordering: .relaxed)
  }

  var count: Int { tokens.load(ordering: .relaxed) }
  var firstTokenNanoseconds: Int64? {
    let value = firstToken.load(ordering: .relaxed)
    return value < 0 ? nil : value
  }
}
