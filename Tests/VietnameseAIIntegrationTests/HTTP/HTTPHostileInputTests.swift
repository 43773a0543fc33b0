import Foundation
import TestSupport
import Testing
import VietnameseAI
import VietnameseAIClient
import VietnameseAIServer

/// What the HTTP door does with input no well-behaved client sends.
@Suite("HTTP: hostile input")
struct HTTPHostileInputTests {
  @Test("a body above the limit is 413")
  func bodyLimit() async throws {
    try await OpenAIEndpointTests.with({ $0.http?.maxBodySize = 4096 }) { server in
      let big = #"{"model":"embed","input":""# + String(repeating: "a", count: 10_000) + "\"}"
      let response = try await server.http("POST", "/v1/embeddings", json: big)
      #expect(response.status == 413)
      let infer = try await server.http("POST", "/v2/models/echo/infer", json: big)
      #expect(infer.status == 413)
    }
  }

  @Test("headers that never end are cut off by the header timeout")
  func slowHeaders() async throws {
    // Long enough that a prompt request's headers arrive in time on a busy machine under
    // TSan; the slow ones below never finish, so the timeout still cuts them off.
    try await OpenAIEndpointTests.with({ $0.http?.headerTimeout = .seconds(2) }) { server in
      let connection = try await HTTPConnection.connect(port: server.httpPort!)
      try await connection.send("GET /v1/models HTTP/1.1\r\nHost: x\r\n")
      for _ in 0..<3 {
        try? await connection.send("X-Slow: 1\r\n")
        try await Task.sleep(for: .milliseconds(50))
      }
      try await connection.waitUntilClosed()
      // A connection idle between requests is closed the same way; a prompt one is served.
      #expect(try await server.http("GET", "/v2/health/live").status == 200)
    }
  }

  @Test("bytes that are not HTTP get 400 and a close")
  func garbage() async throws {
    try await OpenAIEndpointTests.with { server in
      let connection = try await HTTPConnection.connect(port: server.httpPort!)
      try await connection.send([0x16, 0x03, 0x01, 0x00, 0xFF] + Array("\r\n\r\n".utf8))
      try await connection.waitUntilClosed()
      #expect(connection.receivedText.isEmpty || connection.receivedText.hasPrefix("HTTP/1.1 400"))
    }
  }

  @Test(
    "wrongly typed JSON in every endpoint is a 400 that names the field",
    arguments: [
      ("/v1/chat/completions", #"{"model":1,"messages":[]}"#, "model"),
      ("/v1/completions", #"{"model":"essay","prompt":["a","b"]}"#, "prompt"),
      ("/v1/embeddings", #"{"model":"embed","input":[1,2]}"#, "input"),
      ("/v1/stream", #"{"prompt":7}"#, "prompt"),
      ("/v2/models/echo/infer", #"{"inputs":[{"name":"x"}]}"#, "inputs"),
    ]
  )
  func wrongTypes(path: String, body: String, field: String) async throws {
    try await OpenAIEndpointTests.with { server in
      let response = try await server.http("POST", path, json: body)
      #expect(response.status == 400)
      #expect(try response.errorMessage().contains(field), "\(response.text)")
    }
  }

  @Test("connections above --max-connections get 503 and a close; the others are served")
  func tooManyConnections() async throws {
    try await OpenAIEndpointTests.with({ $0.maxConnections = 2 }) { server in
      let first = try await HTTPConnection.connect(port: server.httpPort!)
      let second = try await HTTPConnection.connect(port: server.httpPort!)
      try await first.send("GET", "/v2/health/live")
      #expect(try await first.response().status == 200)
      try await second.send("GET", "/v2/health/live")
      #expect(try await second.response().status == 200)
      let third = try await HTTPConnection.connect(port: server.httpPort!)
      try await third.send("GET", "/v2/health/live")
      let refused = try await third.response()
      #expect(refused.status == 503 && refused.headers["connection"] == "close")
      #expect(refused.headers["retry-after"] == "1")
      let error = try refused.json()["error"] as? [String: Any]
      #expect(error?["code"] as? String == "UNAVAILABLE", "one code, one status: the README's table")
      try await third.waitUntilClosed()
      await first.close()
      try await eventually("a slot is free again") {
        guard let again = try? await HTTPConnection.connect(port: server.httpPort!) else { return false }
        defer { Task { await again.close() } }
        try? await again.send("GET", "/v2/health/live")
        return (try? await again.response().status) == 200
      }
      await second.close()
    }
  }
}
