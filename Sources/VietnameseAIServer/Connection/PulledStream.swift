import NIOCore
import VietnameseAI

/// A stream whose generator returns a plain sequence, pulled by its connection's event loop.
///
/// The connection takes a burst of tokens from it per turn and encodes them straight into
/// its outgoing buffer: no task, no lock and no hand-off between threads per token. Turns
/// come after each poll for I/O (see ``PollYield``), so a stream never keeps its connection
/// from reading. A paced stream gives one token per turn and waits on a timer of its loop
/// for the next.
///
/// Confined to the connection's event loop.
final class PulledStream {
  /// Tokens one stream gives per turn when unpaced: enough to amortise the turn, few enough
  /// that a hundred streams on one connection take turns fairly.
  static let tokensPerTurn = 64

  private var tokens: AnyIterator<String>
  /// A token taken ahead by ``hasMore``.
  private var lookahead: String?
  let slot: StreamSlot
  /// When the next token is due; `nil` for an unpaced stream.
  private let pace: TimeAmount?
  /// Ends a paced stream's wait for its next token.
  var paceTimer: Scheduled<Void>?
  /// Ends the stream when it outlives the server's stream timeout.
  var timeoutTimer: Scheduled<Void>?

  init(tokens: AnyIterator<String>, slot: StreamSlot, pace: Duration) {
    self.tokens = tokens
    self.slot = slot
    self.pace = pace > .zero ? TimeAmount(pace) : nil
  }

  var isPaced: Bool { pace != nil }

  /// The delay before a paced stream's next token.
  var delay: TimeAmount { pace ?? .zero }

  /// The most tokens this stream gives in one turn.
  var tokensThisTurn: Int { pace == nil ? Self.tokensPerTurn : 1 }

  /// The next token, or `nil` once the generator has no more.
  func next() -> String? {
    if let token = lookahead {
      lookahead = nil
      return token
    }
    return tokens.next()
  }

  /// Whether the generator has another token, taking it ahead if needed: a paced stream
  /// ends right after its last token instead of one pause later.
  var hasMore: Bool {
    if lookahead == nil { lookahead = tokens.next() }
    return lookahead != nil
  }

  /// Stops the timers; the stream gives no more tokens.
  func stop() {
    paceTimer?.cancel()
    paceTimer = nil
    timeoutTimer?.cancel()
    timeoutTimer = nil
  }
}

@available(*, unavailable)
extension PulledStream: Sendable {}
