/// The bodies of the OpenAI-compatible endpoints, as far as this server reads them. Fields it
/// does not use (temperature, top_p, ...) are accepted and ignored, as vLLM and TGI do for
/// the ones they do not implement.
enum OpenAIRequests {
  struct StreamOptions: Decodable {
    var includeUsage: Bool?

    enum CodingKeys: String, CodingKey {
      case includeUsage = "include_usage"
    }
  }

  /// A field that takes a string or a list of strings (`stop`, `input`, `prompt`).
  struct Strings: Decodable {
    var values: [String]

    init(from decoder: any Decoder) throws {
      let container = try decoder.singleValueContainer()
      if container.decodeNil() {
        values = []
      } else if let one = try? container.decode(String.self) {
        values = [one]
      } else {
        values = try container.decode([String].self)
      }
    }
  }

  struct ChatMessage: Decodable {
    var role: String
    var content: Content?

    /// A message's content: a string, or a list of parts of which the text parts count.
    struct Content: Decodable {
      var text: String

      private struct Part: Decodable {
        var type: String
        var text: String?
      }

      init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) {
          self.text = text
        } else {
          let parts = try container.decode([Part].self)
          self.text = parts.compactMap { $0.type == "text" ? $0.text : nil }.joined()
        }
      }
    }
  }

  struct ChatCompletion: Decodable {
    var model: String
    var messages: [ChatMessage]
    var stream: Bool?
    var streamOptions: StreamOptions?
    var maxTokens: Int?
    var maxCompletionTokens: Int?
    var stop: Strings?
    var n: Int?
    /// Seconds; `X-Request-Timeout` wins.
    var timeout: Double?

    enum CodingKeys: String, CodingKey {
      case model, messages, stream, stop, n, timeout
      case streamOptions = "stream_options"
      case maxTokens = "max_tokens"
      case maxCompletionTokens = "max_completion_tokens"
    }
  }

  /// `prompt`: a string, or a list holding one string.
  struct Prompt: Decodable {
    var text: String

    init(from decoder: any Decoder) throws {
      let prompts = try Strings(from: decoder).values
      guard prompts.count == 1 else {
        throw DecodingError.dataCorrupted(
          DecodingError.Context(codingPath: decoder.codingPath, debugDescription: "one prompt per request")
        )
      }
      self.text = prompts[0]
    }
  }

  struct Completion: Decodable {
    var model: String
    var prompt: Prompt
    var stream: Bool?
    var streamOptions: StreamOptions?
    var maxTokens: Int?
    var stop: Strings?
    var n: Int?
    var echo: Bool?
    var timeout: Double?

    enum CodingKeys: String, CodingKey {
      case model, prompt, stream, stop, n, echo, timeout
      case streamOptions = "stream_options"
      case maxTokens = "max_tokens"
    }
  }

  struct Embedding: Decodable {
    var model: String
    var input: Strings
    var encodingFormat: String?
    var dimensions: Int?
    var timeout: Double?

    enum CodingKeys: String, CodingKey {
      case model, input, dimensions, timeout
      case encodingFormat = "encoding_format"
    }
  }

  /// The seed's own stream request: `{"prompt": ..., "model": ...}`.
  struct SeedStream: Decodable {
    var prompt: String
    var model: String?
    var timeout: Double?
  }
}
