/// How chat messages become a generator's prompt, the one rule of this server: a single user
/// message is its content as it is; any other conversation is one `role: content` line per
/// message, then `assistant:`, the turn the generator writes.
///
/// A generator with a chat template of its own (a real LLM behind a worker) sees the same
/// string; the rule keeps the built-in generators' output readable for the common case.
enum ChatPrompt {
  static func prompt(of messages: [OpenAIRequests.ChatMessage]) -> String {
    if messages.count == 1, messages[0].role == "user" { return messages[0].content?.text ?? "" }
    var lines = messages.map { "\($0.role): \($0.content?.text ?? "")" }
    lines.append("assistant:")
    return lines.joined(separator: "\n")
  }
}
