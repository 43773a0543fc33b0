import Foundation
import TestSupport
import Testing
import VietnameseAI
import VietnameseAIClient
import VietnameseAIServer

/// Who may do what over HTTP: auth, rate limits, deadlines, capacity.
@Suite("HTTP: admission")
struct HTTPAdmissionTests {
  static let chat = #"{"model":"syllables","messages":[{"role":"user","content":"một hai"}]}"#

  @Test("with tokens, a request needs its bearer; its client id is the rate limit's key")
  func bearer() async throws {
    try await OpenAIEndpointTests.with({
      $0.authTokens = ["secret-1": "alice"]
      $0.rateLimit.goiY = 2
      $0.rateLimit.cuaSo = .seconds(3600)
    }) { server in
      let missing = try await server.http("POST", "/v1/chat/completions", json: Self.chat)
      #expect(missing.status == 401 && missing.headers["www-authenticate"] == "Bearer")
      let wrong = try await server.http(
        "POST",
        "/v1/chat/completions",
        headers: [("Authorization", "Bearer nope")],
        json: Self.chat
      )
      #expect(wrong.status == 401)
      // alice's allowance is 2, whatever id she claims.
      for claimed in ["a", "b"] {
        let ok = try await server.http(
          "POST",
          "/v1/chat/completions",
          headers: [("Authorization", "Bearer secret-1"), ("X-Client-ID", claimed)],
          json: Self.chat
        )
        #expect(ok.status == 200)
      }
      let limited = try await server.http(
        "POST",
        "/v1/chat/completions",
        headers: [("Authorization", "Bearer secret-1"), ("X-Client-ID", "c")],
        json: Self.chat
      )
      #expect(limited.status == 429)
    }
  }

  @Test("a rate-limited request is 429 with Retry-After in whole seconds and the IETF headers")
  func rateLimited() async throws {
    try await OpenAIEndpointTests.with({
      $0.rateLimit.goiY = 1
      $0.rateLimit.cuaSo = .seconds(100)
    }) { server in
      let start = ContinuousClock.now
      let headers = [("X-Client-ID", "limited")]
      let first = try await server.http(
        "POST",
        "/v2/models/echo/infer",
        headers: headers,
        json: Self.infer(1)
      )
      #expect(first.status == 200)
      let second = try await server.http(
        "POST",
        "/v2/models/echo/infer",
        headers: headers,
        json: Self.infer(1)
      )
      #expect(second.status == 429)
      // The bucket refills while the test runs (slowly under a sanitizer): the wait is the
      // window less the time since the first request, rounded up.
      let elapsed = Int((ContinuousClock.now - start).components.seconds)
      let retry = Int(second.headers["retry-after"] ?? "") ?? 0
      #expect(retry >= 99 - elapsed && retry <= 100, "Retry-After \(retry) after \(elapsed) s")
      #expect(second.headers["ratelimit-policy"] == "\"default\";q=1;w=100")
      #expect(second.headers["ratelimit"] == "\"default\";r=0;t=\(retry)")
      // Another client is not affected; a batch of 3 costs 3.
      let other = try await server.http(
        "POST",
        "/v2/models/echo/infer",
        headers: [("X-Client-ID", "other")],
        json: Self.infer(3)
      )
      #expect(other.status == 400, "a batch of 3 can never pass a burst of 1")
    }
  }

  static func infer(_ count: Int) -> String {
    let data = (0..<count).map { "\"x\($0)\"" }.joined(separator: ",")
    return #"{"inputs":[{"name":"T","shape":["# + "\(count)" + #"],"datatype":"BYTES","data":["# + data
      + "]}]}"
  }

  @Test("a deadline from X-Request-Timeout or the body is carried to the batcher: 504 once it passes")
  func deadlines() async throws {
    let gate = Gate()
    try await OpenAIEndpointTests.with(models: [gatedModel(gate: gate)]) { server in
      let header = try await server.http(
        "POST",
        "/v2/models/gated/infer",
        headers: [("X-Request-Timeout", "0.05")],
        json: Self.infer(1)
      )
      #expect(header.status == 504)
      let body =
        #"{"parameters":{"timeout":50000},"inputs":[{"name":"T","shape":[1],"datatype":"BYTES","data":["x"]}]}"#
      let parameter = try await server.http("POST", "/v2/models/gated/infer", json: body)
      #expect(parameter.status == 504)
      let bad = try await server.http(
        "POST",
        "/v2/models/gated/infer",
        headers: [("X-Request-Timeout", "soon")],
        json: Self.infer(1)
      )
      #expect(bad.status == 400)
      gate.open()
    }
  }

  @Test("a full queue and too many streams are 503 with Retry-After")
  func capacity() async throws {
    let gate = Gate()
    try await OpenAIEndpointTests.with(
      { $0.streaming.toiDaClient = 1 },
      models: [gatedModel(gate: gate, toiDaCho: 1)]
    ) { server in
      // One request holds the model, one fills the queue of 1, the third is refused.
      let holding = try await HTTPConnection.connect(port: server.httpPort!)
      try await holding.send("POST", "/v2/models/gated/infer", body: Array(Self.infer(1).utf8))
      try await eventually("the first request reaches the model") { gate.entered == 1 }
      let queued = try await HTTPConnection.connect(port: server.httpPort!)
      try await queued.send("POST", "/v2/models/gated/infer", body: Array(Self.infer(1).utf8))
      try await eventually("the second request waits in the queue") {
        (try? server.statistics().batch["queue_size"]) == 1
      }
      let full = try await server.http("POST", "/v2/models/gated/infer", json: Self.infer(1))
      #expect(full.status == 503 && full.headers["retry-after"] == "1")
      // One stream holds the only slot.
      let streaming = try await HTTPConnection.connect(port: server.httpPort!)
      try await streaming.send(
        "POST",
        "/v1/stream",
        body: Array(#"{"prompt":"x","model":"endless"}"#.utf8)
      )
      try await streaming.waitFor("data: ")
      let refused = try await server.http("POST", "/v1/stream", json: #"{"prompt":"x","model":"endless"}"#)
      #expect(refused.status == 503 && refused.headers["retry-after"] == "1")
      gate.open()
      #expect(try await holding.response().status == 200)
      #expect(try await queued.response().status == 200)
      await streaming.close()
      await holding.close()
      await queued.close()
    }
  }
}
