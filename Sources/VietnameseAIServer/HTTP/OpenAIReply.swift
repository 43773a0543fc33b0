import FoundationEssentials
import VietnameseAI

/// The JSON of one chat or text completion, as OpenAI's API writes it: the chunks of a
/// streamed reply (a role chunk for chat, content chunks, a chunk with the finish reason, an
/// optional usage chunk) or the reply in one piece. Every chunk of a reply shares its `id`,
/// `created` and `model`.
struct OpenAIReply: Sendable {
  enum Kind: Sendable {
    case chat
    case completion
  }

  /// How a completion ended, for a reply in one piece.
  enum Outcome: Sendable {
    case finished(text: String, reason: CompletionCutter.FinishReason, completionTokens: Int)
    case failed(ServingError)
  }

  let kind: Kind
  let promptTokens: Int
  /// `"id":...,"object":...,"created":...,"model":...`, shared by every chunk.
  private let header: String
  /// The same for the reply in one piece, whose object differs.
  private let wholeHeader: String

  init(kind: Kind, model: String, promptTokens: Int) {
    self.kind = kind
    self.promptTokens = promptTokens
    let id = (kind == .chat ? "chatcmpl-" : "cmpl-") + Self.randomID()
    let created = Int(Date().timeIntervalSince1970)
    func makeHeader(_ object: String) -> String {
      "\"id\":\"\(id)\",\"object\":\"\(object)\",\"created\":\(created),\"model\":\(SSEEvent.jsonString(model))"
    }
    header = makeHeader(kind == .chat ? "chat.completion.chunk" : "text_completion")
    wholeHeader = makeHeader(kind == .chat ? "chat.completion" : "text_completion")
  }

  private static func randomID() -> String {
    var generator = SystemRandomNumberGenerator()
    let digits = Array("0123456789abcdef")
    return String((0..<24).map { _ in digits[Int(generator.next() % 16)] })
  }

  private func event(_ choices: String, extra: String = "") -> String {
    "data: {\(header),\"choices\":[\(choices)]\(extra)}\n\n"
  }

  /// The chunk that opens a chat reply: the assistant's role and empty content.
  func firstChunk() -> String? {
    guard kind == .chat else { return nil }
    return event(
      "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}"
    )
  }

  func chunk(text: String) -> String {
    switch kind {
    case .chat:
      event(
        "{\"index\":0,\"delta\":{\"content\":\(SSEEvent.jsonString(text))},\"logprobs\":null,\"finish_reason\":null}"
      )
    case .completion:
      event("{\"index\":0,\"text\":\(SSEEvent.jsonString(text)),\"logprobs\":null,\"finish_reason\":null}")
    }
  }

  func finishChunk(_ reason: CompletionCutter.FinishReason) -> String {
    switch kind {
    case .chat:
      event("{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"\(reason.rawValue)\"}")
    case .completion:
      event("{\"index\":0,\"text\":\"\",\"logprobs\":null,\"finish_reason\":\"\(reason.rawValue)\"}")
    }
  }

  func usageChunk(completionTokens: Int) -> String {
    event("", extra: ",\"usage\":\(usage(completionTokens: completionTokens))")
  }

  private func usage(completionTokens: Int) -> String {
    "{\"prompt_tokens\":\(promptTokens),\"completion_tokens\":\(completionTokens),\"total_tokens\":\(promptTokens + completionTokens)}"
  }

  /// The error event of a stream that failed after it started.
  func errorEvent(_ failure: HTTPFailure) -> String {
    "data: \(failure.openAIJSON)\n\n"
  }

  /// The reply in one piece (`stream` false).
  func whole(_ outcome: Outcome) -> String {
    guard case .finished(let text, let reason, let completionTokens) = outcome else { return "" }
    let choice =
      switch kind {
      case .chat:
        "{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\(SSEEvent.jsonString(text))},\"logprobs\":null,\"finish_reason\":\"\(reason.rawValue)\"}"
      case .completion:
        "{\"index\":0,\"text\":\(SSEEvent.jsonString(text)),\"logprobs\":null,\"finish_reason\":\"\(reason.rawValue)\"}"
      }
    return "{\(wholeHeader),\"choices\":[\(choice)],\"usage\":\(usage(completionTokens: completionTokens))}"
  }
}
