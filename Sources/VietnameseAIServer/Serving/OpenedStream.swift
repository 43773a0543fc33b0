import VietnameseAI

/// A stream the serving core admitted, in the form the front door asked for.
enum OpenedStream {
  /// The generator runs as a task and hands each token to the door's callback.
  case task(PhienStream)
  /// A plain-sequence generator whose tokens the door pulls itself, where it writes them: no
  /// task and no hand-off between threads per token. The door then owns the pacing and the
  /// limit.
  case pulled(PulledTokens)
}

/// The tokens of a stream a front door pulls, with the rules the door must apply to them.
struct PulledTokens {
  /// The stream's hold on a client slot; the door reports tokens and the end through it.
  let slot: StreamSlot
  let tokens: AnyIterator<String>
  /// The least time between two tokens; zero for none.
  let pace: Duration
  /// When the stream must end, counted from its start, and the error it then ends with: the
  /// server's stream timeout or the request's deadline, whichever is shorter.
  let limit: (after: Duration, error: VietnameseAIError)?
}
