/// The syllables of a Vietnamese text, one space-separated word per element, produced as they
/// are iterated.
///
/// Each element keeps the single space that follows it, so the elements concatenate back into
/// the text with single spaces; runs of spaces count as one and leading or trailing spaces
/// give no element. Words are split on the space byte of the text's UTF-8, which never occurs
/// inside a multi-byte character, so splitting costs no Unicode analysis and a stream of a
/// million syllables holds one copy of its text rather than an array of its tokens.
public struct Syllables: Sequence, Sendable {
  private let bytes: [UInt8]

  public init(_ text: String) {
    bytes = Array(text.utf8)
  }

  public func makeIterator() -> Iterator {
    Iterator(bytes: bytes)
  }

  public struct Iterator: IteratorProtocol {
    private let bytes: [UInt8]
    private var position = 0

    init(bytes: [UInt8]) {
      self.bytes = bytes
    }

    public mutating func next() -> String? {
      let space = UInt8(ascii: " ")
      let end = bytes.count
      while position < end && bytes[position] == space { position += 1 }
      guard position < end else { return nil }
      let start = position
      while position < end && bytes[position] != space { position += 1 }
      let wordEnd = position
      while position < end && bytes[position] == space { position += 1 }
      // A word followed by another keeps one space; the last keeps none.
      let tokenEnd = position < end ? wordEnd + 1 : wordEnd
      return String(decoding: bytes[start..<tokenEnd], as: UTF8.self)
    }
  }
}
