import Foundation
import TestSupport
import Testing
import VietnameseAI
import VietnameseAIClient
import VietnameseAIServer

/// The OpenAI-compatible endpoints and the seed's SSE, over loopback.
@Suite("HTTP: OpenAI-compatible API")
struct OpenAIEndpointTests {
  static var models: [ServedModel] { TestServer.builtinModels + [BuiltinModels.embedding()] }

  static func with(
    _ adjust: (inout RPCServer.Configuration) -> Void = { _ in },
    generators: [ServedGenerator] = [BuiltinModels.essay, BuiltinModels.syllables, TestServer.endless],
    models: [ServedModel] = OpenAIEndpointTests.models,
    _ body: (TestServer) async throws -> Void
  ) async throws {
    try await TestServer.with(
      configuration: TestServer.httpConfiguration(adjust),
      models: models,
      generators: generators,
      body
    )
  }

  @Test("/v1/models lists every model and generator")
  func models() async throws {
    try await Self.with { server in
      let response = try await server.http("GET", "/v1/models")
      let data = try response.json()["data"] as? [[String: Any]] ?? []
      #expect(response.status == 200)
      #expect(
        Set(data.compactMap { $0["id"] as? String }) == [
          "echo", "sim", "embed", "essay", "syllables", "endless",
        ]
      )
      #expect(data.allSatisfy { $0["object"] as? String == "model" })
    }
  }

  @Test("a streamed chat is a role chunk, deltas, a finish chunk, usage, then [DONE], with SSE headers")
  func chatStream() async throws {
    try await Self.with { server in
      let response = try await server.http(
        "POST",
        "/v1/chat/completions",
        json:
          #"{"model":"syllables","messages":[{"role":"user","content":"một hai ba"}],"stream":true,"stream_options":{"include_usage":true}}"#
      )
      #expect(response.status == 200)
      #expect(response.headers["content-type"] == "text/event-stream")
      #expect(response.headers["cache-control"] == "no-cache")
      #expect(response.headers["x-accel-buffering"] == "no")
      let events = response.events
      #expect(events.last == "[DONE]")
      let chunks = try events.dropLast().map {
        try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
      }
      let choices = chunks.map { ($0["choices"] as? [[String: Any]])?.first }
      let deltas = choices.compactMap { $0?["delta"] as? [String: Any] }
      #expect(deltas.first?["role"] as? String == "assistant")
      #expect(deltas.compactMap { $0["content"] as? String }.joined() == "một hai ba")
      #expect(choices.compactMap { $0?["finish_reason"] as? String } == ["stop"])
      let usage = chunks.last?["usage"] as? [String: Int]
      #expect(usage == ["prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6])
      #expect(Set(chunks.compactMap { $0["id"] as? String }).count == 1)
    }
  }

  @Test("max_tokens ends a reply with length; a stop sequence ends it before the sequence")
  func limits() async throws {
    try await Self.with { server in
      let long = try await server.http(
        "POST",
        "/v1/chat/completions",
        json: #"{"model":"essay","messages":[{"role":"user","content":"AI"}],"max_tokens":3}"#
      )
      let choice = (try long.json()["choices"] as? [[String: Any]])?.first
      #expect((choice?["message"] as? [String: Any])?["content"] as? String == "Bài luận: AI\n\nTrí ")
      #expect(choice?["finish_reason"] as? String == "length")
      let stopped = try await server.http(
        "POST",
        "/v1/completions",
        json: #"{"model":"syllables","prompt":"một hai ba bốn","stop":"ba","max_tokens":100}"#
      )
      let text = (try stopped.json()["choices"] as? [[String: Any]])?.first
      #expect(text?["text"] as? String == "một hai ")
      #expect(text?["finish_reason"] as? String == "stop")
    }
  }

  @Test("/v1/stream answers exactly what MayChuStream.sinhSSE yields")
  func seedStream() async throws {
    let prompt = "xin \"chào\"\nthế giới"
    let local = MayChuStream(
      hamSinh: { (prompt: String) in BuiltinModels.syllables(of: prompt) },
      tocDoToken: .zero
    )
    var expected = ""
    for try await event in local.sinhSSE(prompt) { expected += event }
    try await Self.with { server in
      let body = try JSONSerialization.data(withJSONObject: ["prompt": prompt, "model": "syllables"])
      let response = try await server.http("POST", "/v1/stream", json: String(decoding: body, as: UTF8.self))
      #expect(response.status == 200)
      #expect(response.text == expected)
    }
  }

  @Test("embeddings in float and base64 agree, and are the model's vectors")
  func embeddings() async throws {
    try await Self.with { server in
      let floats = try await server.http(
        "POST",
        "/v1/embeddings",
        json: #"{"model":"embed","input":["xin chào","batching"]}"#
      )
      let data = try floats.json()["data"] as? [[String: Any]] ?? []
      let vectors = data.map { ($0["embedding"] as? [Double] ?? []).map(Float.init) }
      #expect(vectors.count == 2 && vectors.allSatisfy { $0.count == 64 })
      let encoded = try await server.http(
        "POST",
        "/v1/embeddings",
        json: #"{"model":"embed","input":"xin chào","encoding_format":"base64"}"#
      )
      let text = (try encoded.json()["data"] as? [[String: Any]])?.first?["embedding"] as? String ?? ""
      let bytes = Data(base64Encoded: text) ?? Data()
      let decoded = stride(from: 0, to: bytes.count, by: 4).map { offset in
        Float(
          bitPattern: bytes[offset..<offset + 4].enumerated().reduce(UInt32(0)) {
            $0 | UInt32($1.element) << (8 * $1.offset)
          }
        )
      }
      #expect(decoded == vectors.first)
    }
  }

  @Test(
    "errors come before the stream with their status and OpenAI's error body",
    arguments: [
      (#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#, 404, "not_found_error"),
      (#"{"model":"essay","messages":[]}"#, 400, "invalid_request_error"),
      (#"{"model":"essay","messages":"x"}"#, 400, "invalid_request_error"),
      (#"{"model":"essay","messages":[{"role":"user","content":"x"}],"n":2}"#, 400, "invalid_request_error"),
      (
        #"{"model":"essay","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#, 400,
        "invalid_request_error"
      ),
      ("{not json", 400, "invalid_request_error"),
    ]
  )
  func errors(body: String, status: Int, type: String) async throws {
    try await Self.with { server in
      let response = try await server.http("POST", "/v1/chat/completions", json: body)
      #expect(response.status == status)
      let error = try response.json()["error"] as? [String: Any]
      #expect(error?["type"] as? String == type)
      let message = error?["message"] as? String ?? ""
      #expect(!message.isEmpty)
      #expect(error?.keys.contains("param") == true && error?.keys.contains("code") == true)
    }
  }

  @Test("embedding with a model that gives no vectors is 400; an unknown one 404")
  func embeddingErrors() async throws {
    try await Self.with { server in
      let text = try await server.http("POST", "/v1/embeddings", json: #"{"model":"echo","input":"x"}"#)
      #expect(text.status == 400)
      let unknown = try await server.http("POST", "/v1/embeddings", json: #"{"model":"nope","input":"x"}"#)
      #expect(unknown.status == 404)
    }
  }

  @Test("a stream that fails after it started ends with one error event, then [DONE]")
  func midStreamError() async throws {
    let failing = ServedGenerator(
      name: "failing",
      generator: TokenGenerator { (_: String) in FailingTokens() }
    )
    try await Self.with(generators: [failing]) { server in
      let chat = try await server.http(
        "POST",
        "/v1/chat/completions",
        json: #"{"model":"failing","messages":[{"role":"user","content":"x"}],"stream":true}"#
      )
      #expect(chat.status == 200)
      #expect(chat.events.last == "[DONE]")
      let error = chat.events.dropLast().last ?? ""
      #expect(error.hasPrefix(#"{"error":{"message":"#) && error.contains("INTERNAL"))
      #expect(chat.events.filter { $0.contains("\"content\":\"a \"") }.count == 1)
      let seed = try await server.http("POST", "/v1/stream", json: #"{"prompt":"x"}"#)
      #expect(seed.events.count == 4)
      #expect(seed.events[2].hasPrefix(#"{"error": "#))
      #expect(seed.events[3] == "[DONE]")
    }
  }

  /// Two tokens, then a failure.
  struct FailingTokens: AsyncSequence {
    typealias Element = String
    struct Broken: Error {}
    struct AsyncIterator: AsyncIteratorProtocol {
      var count = 0
      mutating func next() async throws -> String? {
        count += 1
        if count > 2 { throw Broken() }
        return count == 1 ? "a " : "b "
      }
    }
    func makeAsyncIterator() -> AsyncIterator { AsyncIterator() }
  }
}
