public import VietnameseAI

/// A token generator the server offers under a name, for `STREAM_OPEN`.
///
/// Every generator runs through the server's one ``MayChuStream``, so the cap on concurrent
/// streams, the per-stream timeout, the pacing and the statistics cover all of them.
public struct ServedGenerator: Sendable {
  /// The name clients ask for; a `STREAM_OPEN` with an empty name gets the server's first
  /// generator.
  public var name: String
  public var generator: TokenGenerator

  public init(name: String, generator: TokenGenerator) {
    self.name = name
    self.generator = generator
  }
}
