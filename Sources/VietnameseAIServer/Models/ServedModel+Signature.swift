extension ServedModel {
  /// What a model takes and gives.
  public struct Signature: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
      /// Any bytes.
      case bytes
      /// UTF-8 text.
      case text
      /// A vector of this many floats, as little-endian binary32 values.
      case vector(dimensions: Int)
    }

    public var input: Kind
    public var output: Kind

    public init(input: Kind, output: Kind) {
      self.input = input
      self.output = output
    }
  }
}
