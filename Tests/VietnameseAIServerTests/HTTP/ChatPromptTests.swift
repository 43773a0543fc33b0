import FoundationEssentials
import Testing

@testable import VietnameseAIServer

@Suite("Chat prompt")
struct ChatPromptTests {
  static func messages(_ json: String) throws -> [OpenAIRequests.ChatMessage] {
    try JSONDecoder().decode([OpenAIRequests.ChatMessage].self, from: Data(json.utf8))
  }

  @Test("a single user message is its content as it is")
  func single() throws {
    #expect(
      ChatPrompt.prompt(of: try Self.messages(#"[{"role":"user","content":"xin chào"}]"#)) == "xin chào"
    )
  }

  @Test("a conversation is one role: content line per message, then the assistant's turn")
  func conversation() throws {
    let messages = try Self.messages(
      #"[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url"}]}]"#
    )
    #expect(ChatPrompt.prompt(of: messages) == "system: be brief\nuser: hi\nassistant:")
  }
}
