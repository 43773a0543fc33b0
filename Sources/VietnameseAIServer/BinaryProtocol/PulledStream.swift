import NIOCore
import VietnameseAI

/// One stream whose tokens its connection pulls from a plain-sequence generator, on its event
/// loop (see ``PulledStreamScheduler``).
///
/// Confined to the connection's event loop.
final class PulledStream {
  /// The request it answers.
  let id: UInt32
  private let source: PulledTokens
  /// A token taken ahead by ``hasMore``.
  private var lookahead: String?
  /// Ends a paced stream's wait for its next token.
  var paceTimer: Scheduled<Void>?
  /// Ends the stream at its time limit.
  var limitTimer: Scheduled<Void>?
  /// Set once the stream has stopped; a stream still queued for a turn is then skipped.
  private(set) var isStopped = false

  /// The least time between two tokens, converted once; `nil` for an unpaced stream.
  private let pacing: TimeAmount?

  init(id: UInt32, source: PulledTokens) {
    self.id = id
    self.source = source
    self.pacing = source.pace > .zero ? TimeAmount(source.pace) : nil
  }

  var isPaced: Bool { pacing != nil }
  var pace: TimeAmount { pacing ?? .zero }
  var limit: (after: Duration, error: VietnameseAIError)? { source.limit }

  /// The next token, or `nil` once the generator has no more.
  func next() -> String? {
    if let token = lookahead {
      lookahead = nil
      return token
    }
    return source.tokens.next()
  }

  /// Whether the generator has another token, taking it ahead if needed: a paced stream
  /// ends right after its last token instead of one pause later.
  var hasMore: Bool {
    if lookahead == nil { lookahead = source.tokens.next() }
    return lookahead != nil
  }

  /// Counts tokens handed to the client (once per burst, not per token).
  func delivered(_ count: Int) {
    source.slot.delivered(count)
  }

  /// Stops the timers; the stream gives no more tokens.
  func stop() {
    isStopped = true
    paceTimer?.cancel()
    paceTimer = nil
    limitTimer?.cancel()
    limitTimer = nil
  }

  /// Stops the stream and frees its slot.
  ///
  /// - Returns: What to tell the client (a generator's own error is reported as the stream
  ///   server's), or `nil` if the stream had ended already.
  func end(_ result: Result<Void, any Error>) -> Result<Void, any Error>? {
    stop()
    return source.slot.finish(result)
  }
}

@available(*, unavailable)
extension PulledStream: Sendable {}
