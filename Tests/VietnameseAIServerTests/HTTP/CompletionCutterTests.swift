import Testing

@testable import VietnameseAIServer

/// Where a completion ends: max_tokens and stop sequences, on plain values.
@Suite("Completion cutter")
struct CompletionCutterTests {
  /// Feeds `tokens` and returns what would be sent and why it ended (`nil`: ran out).
  static func run(_ tokens: [String], maxTokens: Int? = nil, stops: [String] = []) -> (
    String, CompletionCutter.FinishReason?, Int
  ) {
    var cutter = CompletionCutter(maxTokens: maxTokens, stops: stops)
    var sent = ""
    for token in tokens {
      let (text, finish) = cutter.accept(token)
      sent += text
      if let finish { return (sent, finish, cutter.tokens) }
    }
    sent += cutter.flush()
    return (sent, nil, cutter.tokens)
  }

  @Test("without limits every token goes through as it comes")
  func passThrough() {
    let (text, finish, count) = Self.run(["một ", "hai ", "ba"])
    #expect(text == "một hai ba" && finish == nil && count == 3)
  }

  @Test("max_tokens ends the completion on its last token, with length")
  func maxTokens() {
    let (text, finish, count) = Self.run(["a ", "b ", "c ", "d"], maxTokens: 2)
    #expect(text == "a b " && finish == .length && count == 2)
  }

  @Test("a stop sequence inside a token cuts the text before it")
  func stopInsideToken() {
    let (text, finish, _) = Self.run(["một ", "hai ba ", "bốn"], stops: ["ba"])
    #expect(text == "một hai " && finish == .stop)
  }

  @Test("a stop sequence split across tokens is held back, never sent in part")
  func stopAcrossTokens() {
    var cutter = CompletionCutter(maxTokens: nil, stops: ["<end>"])
    #expect(cutter.accept("xin <e").text == "xin ")
    #expect(cutter.accept("n").text == "")
    let last = cutter.accept("d> rest")
    #expect(last.text == "" && last.finish == .stop)
  }

  @Test("held-back text that turns out not to stop is sent with the next token or at the end")
  func heldBackReleased() {
    var cutter = CompletionCutter(maxTokens: nil, stops: ["STOP"])
    #expect(cutter.accept("ST").text == "")
    #expect(cutter.accept("ART ").text == "START ")
    #expect(cutter.accept("ST").text == "")
    #expect(cutter.flush() == "ST")
  }

  @Test("the earliest of several stop sequences wins, in bytes of any script")
  func earliestStop() {
    let (text, finish, _) = Self.run(["Trí tuệ nhân tạo. Hết"], stops: ["Hết", "nhân"])
    #expect(text == "Trí tuệ " && finish == .stop)
  }

  @Test("max_tokens reached while text is held back sends that text")
  func maxTokensFlushesHeld() {
    let (text, finish, _) = Self.run(["a S", "T"], maxTokens: 2, stops: ["STOP"])
    #expect(text == "a ST" && finish == .length)
  }
}
