/// A token generator: a function from a prompt to the tokens of the answer.
///
/// ``MayChuStream`` is built over one; a server that offers several generators under names
/// keeps them as values of this type and runs them all through one ``MayChuStream``.
public struct TokenGenerator: Sendable {
  let pump: MayChuStream.Pump
  /// For a generator that returns a plain sequence: its tokens for a prompt, for a front end
  /// that pulls them itself in bursts (a network server on its event loop) instead of running
  /// a task per stream. `nil` for an asynchronous generator.
  package let makeTokens: (@Sendable (String) throws -> AnyIterator<String>)?

  /// A generator that returns its tokens as a plain sequence. Cancellation is checked between
  /// tokens.
  public init<S: Sequence & SendableMetatype>(
    _ hamSinh: @escaping @Sendable (String) throws -> S
  ) where S.Element == String {
    makeTokens = { prompt in AnyIterator(try hamSinh(prompt).makeIterator()) }
    pump = { prompt, emit in
      for token in try hamSinh(prompt) {
        try Task.checkCancellation()
        try await emit(token)
      }
    }
  }

  /// A generator whose tokens arrive asynchronously, as from a real model. It is cancelled
  /// when its stream ends early.
  public init<S: AsyncSequence & SendableMetatype>(
    _ hamSinh: @escaping @Sendable (String) async throws -> S
  ) where S.Element == String {
    makeTokens = nil
    pump = { prompt, emit in
      for try await token in try await hamSinh(prompt) {
        try await emit(token)
      }
    }
  }
}
