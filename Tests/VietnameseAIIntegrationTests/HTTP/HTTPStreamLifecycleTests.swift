import Foundation
import ServiceLifecycle
import TestSupport
import Testing
import VietnameseAI
import VietnameseAIClient
import VietnameseAIServer

/// SSE streams over time: keep-alives, clients that leave, clients that read slowly, draining.
@Suite("HTTP: stream lifecycle")
struct HTTPStreamLifecycleTests {
  /// `late`: waits at a gate before its first token, as a model in prefill does.
  static func late(_ gate: Gate) -> ServedGenerator {
    ServedGenerator(
      name: "late",
      generator: TokenGenerator { (_: String) async in
        LateTokens(gate: gate)
      }
    )
  }

  struct LateTokens: AsyncSequence {
    typealias Element = String
    let gate: Gate
    struct AsyncIterator: AsyncIteratorProtocol {
      let gate: Gate
      var count = 0
      mutating func next() async throws -> String? {
        if count == 0 { await gate.wait() }
        try Task.checkCancellation()
        count += 1
        return count <= 2 ? "t\(count) " : nil
      }
    }
    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(gate: gate) }
  }

  static func streams(_ server: TestServer) throws -> Double {
    try server.statistics().stream["client_hien_tai"] ?? -1
  }

  @Test("a response waiting for its first token sends ': keep-alive' comments, then the tokens")
  func keepAlive() async throws {
    let gate = Gate()
    try await OpenAIEndpointTests.with(
      { $0.http?.sseKeepAlive = .milliseconds(20) },
      generators: [Self.late(gate)]
    ) { server in
      let connection = try await HTTPConnection.connect(port: server.httpPort!)
      try await connection.send(
        "POST",
        "/v1/chat/completions",
        body: Array(#"{"model":"late","messages":[{"role":"user","content":"x"}],"stream":true}"#.utf8)
      )
      try await eventually("two keep-alive comments") {
        connection.receivedText.components(separatedBy: ": keep-alive\n\n").count > 2
      }
      #expect(!connection.receivedText.contains("\"content\":\"t1 \""))
      gate.open()
      let response = try await connection.response()
      #expect(response.events.last == "[DONE]")
      #expect(response.text.contains("\"content\":\"t1 \""))
      await connection.close()
    }
  }

  @Test("a client that leaves before its first token or mid-stream frees the stream's slot at once")
  func disconnects() async throws {
    let gate = Gate()
    try await OpenAIEndpointTests.with(generators: [Self.late(gate), TestServer.endless]) { server in
      let waiting = try await HTTPConnection.connect(port: server.httpPort!)
      try await waiting.send("POST", "/v1/stream", body: Array(#"{"prompt":"x","model":"late"}"#.utf8))
      try await eventually("the stream holds a slot") { (try? Self.streams(server)) == 1 }
      await waiting.close()
      try await eventually("the slot is free after the client left before its first token") {
        (try? Self.streams(server)) == 0
      }

      let reading = try await HTTPConnection.connect(port: server.httpPort!)
      try await reading.send(
        "POST",
        "/v1/chat/completions",
        body: Array(#"{"model":"endless","messages":[{"role":"user","content":"x"}],"stream":true}"#.utf8)
      )
      try await reading.waitFor("\"content\":\"3 \"")
      await reading.close()
      try await eventually("the slot is free after the client left mid-stream") {
        (try? Self.streams(server)) == 0
      }
      let metrics = try await server.http("GET", "/metrics").text
      #expect(metrics.contains("vai:num_streams_running 0.0"))
      #expect(metrics.contains("vai:streams_total{outcome=\"cancelled\"} 2"))
      gate.open()
    }
  }

  @Test("a client that stops reading stalls its generator: the server's buffer stays bounded")
  func slowReader() async throws {
    try await OpenAIEndpointTests.with(generators: [TestServer.counter]) { server in
      let stalled = try await HTTPConnection.connect(port: server.httpPort!, reading: false)
      try await stalled.send("POST", "/v1/stream", body: Array(#"{"prompt":"x"}"#.utf8))
      let stalledAt = try await server.tokensSentOnceStalled()
      // Each token is a ~20-byte event: the kernel's buffers plus the channel's, a few MB.
      #expect(stalledAt < 1_000_000, "\(stalledAt) tokens sent to a client that reads nothing")
      try await Task.sleep(for: .seconds(1))
      let later = try #require(try server.statistics().stream["tokens_sent"])
      #expect(later < 1_000_000, "\(later) tokens, \(stalledAt) at the stall")
      // Others are served meanwhile.
      #expect(try await server.http("GET", "/v2/health/ready").status == 200)
      try await stalled.startReading()
      try await eventually("the stream resumes") {
        (try? server.statistics().stream["tokens_sent"]) ?? 0 > later + 10_000
      }
      await stalled.close()
      try await eventually("the stream ended with its connection") {
        (try? Self.streams(server)) == 0
      }
    }
  }
}

extension HTTPStreamLifecycleTests {
  @Test(
    "graceful shutdown: open streams and infers run to their end, idle connections close, then run() returns"
  )
  func drain() async throws {
    let gate = Gate()
    let modelGate = Gate()
    let server = RPCServer(
      configuration: TestServer.httpConfiguration(),
      models: [gatedModel(gate: modelGate)],
      generators: [Self.late(gate)],
      logger: TestServer.quietLogger
    )
    let services = ServiceGroup(services: [server], logger: TestServer.quietLogger)
    let running = Task { try await services.run() }
    let port = try await server.httpListeningAddress().port
    let stream = try await HTTPConnection.connect(port: port)
    try await stream.send("POST", "/v1/stream", body: Array(#"{"prompt":"x","model":"late"}"#.utf8))
    let infer = try await HTTPConnection.connect(port: port)
    try await infer.send(
      "POST",
      "/v2/models/gated/infer",
      body: Array(#"{"inputs":[{"name":"TEXT","shape":[1],"datatype":"BYTES","data":["ở lại"]}]}"#.utf8)
    )
    let idle = try await HTTPConnection.connect(port: port)
    try await idle.send("GET", "/health")
    #expect(try await idle.response().status == 200)
    try await eventually("the stream and the infer are in the server") {
      let stats = try? ServerStatistics.decode(server.statisticsJSON())
      return stats?.stream["client_hien_tai"] == 1 && modelGate.entered == 1
    }

    await services.triggerGracefulShutdown()
    try await idle.waitUntilClosed()
    gate.open()
    modelGate.open()
    let streamed = try await stream.response()
    #expect(streamed.events == [#"{"token": "t1 "}"#, #"{"token": "t2 "}"#, "[DONE]"])
    let inferred = try await infer.response()
    #expect(inferred.status == 200 && inferred.text.contains("ở lại"))
    try await running.value
    for connection in [stream, infer, idle] { await connection.close() }
  }
}
