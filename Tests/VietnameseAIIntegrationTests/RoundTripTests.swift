import Foundation
import NIOCore
import TestSupport
import Testing
import VietnameseAI
import VietnameseAIClient
import VietnameseAIServer

@Suite("Round trips through a live server")
struct RoundTripTests {
  @Test("predict on the echo model (bytes and text) and the simulated accelerator")
  func predict() async throws {
    try await TestServer.with { server in
      let client = try await server.connect()
      #expect(try await client.predict(model: "echo", input: "xin chào") == "xin chào")
      #expect(try await client.predict(model: "echo", input: [0, 255, 7]) == [0, 255, 7])
      #expect(try await client.predict(model: "echo", input: [UInt8]()) == [])
      #expect(try await client.predict(model: "sim", input: "xin chào", deadline: .seconds(30)) == "XIN CHÀO")
      await client.close()
    }
  }

  @Test("the completion API answers on the connection's loop, chains calls from there, and reports errors")
  func completionAPI() async throws {
    try await TestServer.with { server in
      let client = try await server.connect()
      let loop = client.eventLoop
      // 200 calls, each started from the previous one's completion, on the loop.
      let chained = loop.makePromise(of: Int.self)
      @Sendable func call(_ index: Int) {
        client.predict(model: "echo", input: ByteBuffer(string: "câu \(index)")) { result in
          guard loop.inEventLoop, case .success(let output) = result,
            String(buffer: output) == "câu \(index)"
          else { return chained.fail(RPCError(code: .internal, message: "call \(index): \(result)")) }
          if index == 199 { chained.succeed(index + 1) } else { call(index + 1) }
        }
      }
      loop.execute { call(0) }
      #expect(try await chained.futureResult.get() == 200)
      // From outside the loop, and errors: the server's, and one refused before sending.
      let unknown = loop.makePromise(of: RPCError.self)
      client.predict(model: "nope", input: ByteBuffer()) { result in
        if case .failure(let error) = result {
          unknown.succeed(error)
        } else {
          unknown.fail(CancellationError())
        }
      }
      #expect(try await unknown.futureResult.get().code == .unknownModel)
      let expired = loop.makePromise(of: RPCError.self)
      client.predict(model: "echo", input: ByteBuffer(), deadline: .zero) { result in
        if case .failure(let error) = result {
          expired.succeed(error)
        } else {
          expired.fail(CancellationError())
        }
      }
      #expect(try await expired.futureResult.get().code == .deadlineExceeded)
      await client.close()
    }
  }

  @Test("batch predict answers in the order of the inputs")
  func batchOrder() async throws {
    try await TestServer.with { server in
      let client = try await server.connect()
      let inputs = (0..<50).map { "câu số \($0)" }
      #expect(try await client.predictBatch(model: "sim", inputs: inputs) == inputs.map { $0.uppercased() })
      #expect(try await client.predictBatch(model: "echo", inputs: [String]()) == [])
      await client.close()
    }
  }

  @Test("many clients, many calls in flight each: every answer reaches its caller and batches form")
  func concurrentClients() async throws {
    try await TestServer.with { server in
      try await withThrowingTaskGroup(of: Void.self) { group in
        for clientIndex in 0..<6 {
          group.addTask {
            let client = try await server.connect(clientID: "client-\(clientIndex)")
            try await withThrowingTaskGroup(of: Void.self) { calls in
              for call in 0..<40 {
                calls.addTask {
                  let input = "khách \(clientIndex) lần \(call)"
                  let output = try await client.predict(model: "sim", input: input)
                  #expect(output == input.uppercased())
                }
              }
              try await calls.waitForAll()
            }
            await client.close()
          }
        }
        try await group.waitForAll()
      }
      let sim = try #require(try server.statistics().models["sim"])
      #expect(sim["completed"] == 240)
      #expect(sim["batch_size_tb"]! > 1, "240 concurrent calls should share batches: \(sim)")
    }
  }

  @Test("a stream delivers every token in order, then ends")
  func stream() async throws {
    try await TestServer.with { server in
      let client = try await server.connect()
      let prompt = "Trí tuệ nhân tạo đang thay đổi thế giới"
      var tokens: [String] = []
      for try await token in client.stream(prompt: prompt, model: "syllables") { tokens.append(token) }
      #expect(tokens == BuiltinModels.syllables(of: prompt))
      #expect(tokens.joined() == prompt)

      var essay = ""
      for try await token in client.stream(prompt: "Viết bài luận về AI") { essay += token }
      #expect(essay.hasPrefix("Bài luận: Viết bài luận về AI"))
      await client.close()
    }
  }

  @Test("compression: negotiated when both sides agree, large payloads survive it, and off works too")
  func compression() async throws {
    let large = String(repeating: "Trí tuệ nhân tạo ", count: 4000)
    try await TestServer.with { server in
      let zlib = try await server.connect(compression: true)
      #expect(zlib.compressionEnabled)
      #expect(try await zlib.predict(model: "echo", input: large) == large)
      #expect(try await zlib.predictBatch(model: "sim", inputs: [large, "a"]) == [large.uppercased(), "A"])
      let plain = try await server.connect(compression: false)
      #expect(!plain.compressionEnabled)
      #expect(try await plain.predict(model: "echo", input: large) == large)
      await zlib.close()
      await plain.close()
    }
    try await TestServer.with(configuration: TestServer.configuration { $0.allowsCompression = false }) {
      server in
      let client = try await server.connect(compression: true)
      #expect(!client.compressionEnabled)
      #expect(try await client.predict(model: "echo", input: large) == large)
      await client.close()
    }
  }

  @Test("stats carry the design's keys in every group")
  func statsKeys() async throws {
    try await TestServer.with { server in
      let client = try await server.connect()
      _ = try await client.predict(model: "echo", input: "x")
      let stats = try await client.stats()
      for key in ["latency_p50", "latency_p95", "batch_size_tb", "queue_size"] {
        #expect(stats.batch[key] != nil, "batch.\(key) in \(stats.json)")
      }
      for key in ["tong_stream", "client_hien_tai", "thoi_gian_tb"] {
        #expect(stats.stream[key] != nil, "stream.\(key) in \(stats.json)")
      }
      #expect(stats.rateLimit["ty_le_tu_choi"] != nil, "\(stats.json)")
      #expect(stats.batchModel == "echo")
      #expect(Set(stats.models.keys) == ["echo", "sim"])
      #expect(stats.batch["completed"] == 1)
      #expect(try await client.ping() > .zero)
      await client.close()
    }
  }

  @Test(
    "an unknown model or generator, an empty model name, and input a text model cannot take are request errors"
  )
  func requestErrors() async throws {
    try await TestServer.with { server in
      let client = try await server.connect()
      await expectRPCError(.unknownModel) { try await client.predict(model: "gpt", input: "x") }
      await expectRPCError(.invalidArgument) { try await client.predictBatch(model: "", inputs: ["x"]) }
      await expectRPCError(.invalidArgument) { try await client.predict(model: "", input: "x") }
      await expectRPCError(.unknownModel) {
        for try await _ in client.stream(prompt: "x", model: "nope") {}
      }
      await expectRPCError(.invalidArgument) { try await client.predict(model: "sim", input: [0xC3, 0x28]) }
      let huge = [UInt8](repeating: 1, count: 4 * 1024 * 1024 + 1)
      await expectRPCError(.frameTooLarge) { try await client.predict(model: "echo", input: huge) }
      // The connection is intact afterwards.
      #expect(try await client.predict(model: "echo", input: "vẫn ổn") == "vẫn ổn")
      await client.close()
    }
  }
}
