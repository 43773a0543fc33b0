/// Where a completion ends early: after `max_tokens` tokens, or before the first stop
/// sequence, whichever comes first. Text that may be the start of a stop sequence is held back
/// until the next token tells, so no part of a stop sequence is ever sent.
struct CompletionCutter {
  enum FinishReason: String {
    case stop
    case length
  }

  let maxTokens: Int?
  let stops: [[UInt8]]
  private(set) var tokens = 0
  private var held: [UInt8] = []

  init(maxTokens: Int?, stops: [String]) {
    self.maxTokens = maxTokens
    self.stops = stops.filter { !$0.isEmpty }.map { Array($0.utf8) }
  }

  /// Takes a token: the text to send now, and whether the completion ends here.
  mutating func accept(_ token: String) -> (text: String, finish: FinishReason?) {
    tokens += 1
    if stops.isEmpty {
      if let maxTokens, tokens >= maxTokens { return (token, .length) }
      return (token, nil)
    }
    held.append(contentsOf: token.utf8)
    if let cut = firstStop() {
      defer { held = [] }
      return (String(decoding: held[..<cut], as: UTF8.self), .stop)
    }
    if let maxTokens, tokens >= maxTokens { return (flush(), .length) }
    let keep = heldBack()
    let sendable = held.count - keep
    defer { held.removeFirst(sendable) }
    return (String(decoding: held[..<sendable], as: UTF8.self), nil)
  }

  /// The text still held back, when the generator ended by itself.
  mutating func flush() -> String {
    defer { held = [] }
    return String(decoding: held, as: UTF8.self)
  }

  /// Where the earliest stop sequence starts in the held text.
  private func firstStop() -> Int? {
    var earliest: Int?
    for stop in stops where stop.count <= held.count {
      var start = 0
      while start + stop.count <= held.count, start < (earliest ?? Int.max) {
        if held[start..<start + stop.count].elementsEqual(stop) {
          earliest = start
          break
        }
        start += 1
      }
    }
    return earliest
  }

  /// The longest end of the held text that is the beginning of a stop sequence.
  private func heldBack() -> Int {
    var longest = 0
    for stop in stops {
      var length = min(stop.count - 1, held.count)
      while length > longest {
        if held[(held.count - length)...].elementsEqual(stop[..<length]) {
          longest = length
          break
        }
        length -= 1
      }
    }
    return longest
  }
}
