import NIOCore
import NIOPosix
import TestSupport
import Testing
import VietnameseAI
import VietnameseAIClient
import VietnameseAIServer
import VietnameseAIWire

extension UnderLoad {
  /// Generators that return a plain sequence are pulled on the connection's event loop; these
  /// tests hold that path to the same rules as streams that run as tasks.
  @Suite("Streams pulled on the event loop")
  struct PulledStreamTests {
    @Test("pacing holds tokens apart")
    func pacing() async throws {
      let configuration = TestServer.configuration { $0.streaming.tocDoToken = .milliseconds(30) }
      try await TestServer.with(configuration: configuration) { server in
        let client = try await server.connect()
        let clock = ContinuousClock()
        let start = clock.now
        var arrivals: [Duration] = []
        for try await _ in client.stream(prompt: "một hai ba bốn", model: "syllables") {
          arrivals.append(clock.now - start)
        }
        #expect(arrivals.count == 4)
        // Three pauses of 30 ms at least between the request and the last token. Counted from
        // the request, not from the first token, whose own delivery may be late: a lower bound
        // only, so a busy machine cannot fail it.
        #expect(arrivals[3] >= .milliseconds(90), "\(arrivals)")
        #expect(try server.statistics().stream["tokens_sent"] == 4)
        await client.close()
      }
    }

    @Test("a paced stream ends right after its last token, not one pause later", .timeLimit(.minutes(3)))
    func pacedEnd() async throws {
      let configuration = TestServer.configuration { $0.streaming.tocDoToken = .seconds(120) }
      try await TestServer.with(configuration: configuration) { server in
        let client = try await server.connect()
        var tokens: [String] = []
        // Waiting a pause after the only token would take two minutes and hit the time limit.
        for try await token in client.stream(prompt: "một", model: "syllables") { tokens.append(token) }
        #expect(tokens == ["một"])
        await client.close()
      }
    }

    @Test("a stream that outlives the server's stream timeout fails DEADLINE_EXCEEDED and frees its slot")
    func streamTimeout() async throws {
      let configuration = TestServer.configuration {
        $0.streaming.timeout = .milliseconds(200)
        $0.streaming.tocDoToken = .milliseconds(5)
      }
      try await TestServer.with(configuration: configuration, generators: [TestServer.counter]) { server in
        let client = try await server.connect()
        var received = 0
        let error = await expectRPCError(.deadlineExceeded) {
          for try await _ in client.stream(prompt: "") { received += 1 }
        }
        #expect(error?.message.contains("timeout") == true, "\(String(describing: error))")
        #expect(received > 0)
        let stream = try server.statistics().stream
        #expect(stream["timeouts"] == 1 && stream["client_hien_tai"] == 0, "\(stream)")
        #expect(stream["tokens_sent"] == Double(received), "\(stream)")
        await client.close()
      }
    }

    @Test("a request deadline ends an endless unpaced stream DEADLINE_EXCEEDED")
    func requestDeadline() async throws {
      try await TestServer.with(generators: [TestServer.counter]) { server in
        let client = try await server.connect()
        await expectRPCError(.deadlineExceeded) {
          for try await _ in client.stream(prompt: "", deadline: .milliseconds(100)) {}
        }
        try await eventually("the slot is free") { (try? server.statistics().stream["client_hien_tai"]) == 0 }
        #expect(try await client.predict(model: "echo", input: "tiếp") == "tiếp")
        await client.close()
      }
    }

    @Test("a token too large for the client, or a generator that throws, fails only its own stream")
    func generatorFaults() async throws {
      let huge = ServedGenerator(
        name: "huge",
        generator: TokenGenerator { (_: String) in ["nhỏ ", String(repeating: "x", count: 4096)] }
      )
      struct Broken: Error {}
      let broken = ServedGenerator(
        name: "broken",
        generator: TokenGenerator { (_: String) throws -> [String] in throw Broken() }
      )
      try await TestServer.with(generators: [huge, broken, TestServer.counter]) { server in
        // The client accepts frames of 1 KiB at most, and says so in its HELLO.
        let client = try await server.connect(maxFrameSize: 1024)
        var tokens: [String] = []
        let tooLarge = await expectRPCError(.resourceExhausted) {
          for try await token in client.stream(prompt: "", model: "huge") { tokens.append(token) }
        }
        #expect(tokens == ["nhỏ "])
        #expect(tooLarge?.message.contains("cannot receive") == true, "\(String(describing: tooLarge))")
        await expectRPCError(.internal) {
          for try await _ in client.stream(prompt: "", model: "broken") {}
        }
        // The generator failed once; the stream the client could not receive was cut short.
        let stream = try server.statistics().stream
        #expect(stream["errors"] == 1 && stream["cancelled"] == 1, "\(stream)")
        #expect(stream["client_hien_tai"] == 0, "\(stream)")
        #expect(try await client.predict(model: "echo", input: "vẫn ổn") == "vẫn ổn")
        await client.close()
      }
    }

    @Test("a token too large for the client from an asynchronous generator ends its stream with one answer")
    func oversizedTokenFromTask() async throws {
      let huge = ServedGenerator(
        name: "huge",
        generator: TokenGenerator { (_: String) async in
          AsyncStream<String> { continuation in
            for token in ["nhỏ ", String(repeating: "x", count: 4096), "sau "] { continuation.yield(token) }
            continuation.finish()
          }
        }
      )
      try await TestServer.with(generators: [huge]) { server in
        let connection = try await RawConnection.connected(port: server.port, maxFrameSize: 1024)
        let open = WireMessage.StreamOpen(deadlineMilliseconds: 0, model: "huge", prompt: "")
        try await connection.send(WireFrame(requestID: 1, message: .streamOpen(open)))
        func answers() throws -> [WireMessage] {
          try connection.receivedFrames().filter { $0.requestID == 1 }.map(\.message)
        }
        try await eventually("the stream's answer") {
          (try? answers())?.contains { if case .error = $0 { true } else { false } } ?? false
        }
        try await connection.expectAlive()
        let messages = try answers()
        #expect(messages.first == .token("nhỏ "), "\(messages)")
        let terminal = messages.filter { if case .token = $0 { false } else { true } }
        #expect(terminal.count == 1, "\(messages)")
        guard case .error(let info) = terminal.first else { return }
        #expect(info.code == .resourceExhausted && info.message.contains("cannot receive"), "\(info)")
        #expect(!messages.contains(.token("sau ")))
        await connection.close()
      }
    }

    @Test(
      "paced streams whose tokens cost more than their pace fall behind; their loop still accepts and answers",
      .timeLimit(.minutes(3))
    )
    func pacedOverload() async throws {
      // Timers fall due faster than the loop can write their tokens. Were each timer's token
      // written within the tick, the loop would never poll again: the handshake would go
      // unanswered for as long as the streams last.
      try await expectLoopServes(beside: 100, of: TestServer.counter) {
        $0.streaming.tocDoToken = .nanoseconds(1)
        $0.streaming.toiDaClient = 1_000
      }
    }

    @Test(
      "a generator task faster than its connection's loop leaves the loop accepting and answering",
      .timeLimit(.minutes(3))
    )
    func fastGeneratorTask() async throws {
      // Asynchronous, so it runs as a task off the loop, and it never suspends. The loop takes
      // each burst of its tokens after it has polled, so however fast the generator refills
      // the gate, the new connection is read and answered between bursts.
      let fast = ServedGenerator(name: "fast", generator: TokenGenerator { (_: String) async in Instant() })
      try await expectLoopServes(beside: 8, of: fast)
    }

    /// Opens `streamCount` endless streams of `generator` on a server with a single event loop,
    /// from a client that reads everything at once (so the server's channel stays writable and
    /// only the loop's own time limits the streams), then expects a new connection, on that
    /// same loop, to be accepted, to shake hands and to get its answer.
    private func expectLoopServes(
      beside streamCount: Int,
      of generator: ServedGenerator,
      _ adjust: (inout RPCServer.Configuration) -> Void = { _ in }
    ) async throws {
      let loop = MultiThreadedEventLoopGroup(numberOfThreads: 1)
      let configuration = TestServer.configuration {
        $0.eventLoopGroup = loop
        adjust(&$0)
      }
      try await TestServer.with(configuration: configuration, generators: [generator]) { server in
        let flooding = try await RawConnection.connected(port: server.port)
        var frames = EncodedFrames()
        for id in 1...UInt32(streamCount) {
          let open = WireMessage.StreamOpen(deadlineMilliseconds: 0, model: generator.name, prompt: "")
          try frames.append(WireFrame(requestID: id, message: .streamOpen(open)))
        }
        try await flooding.send(frames.bytes)
        try await eventually("every stream runs") {
          let stream = try? server.statistics().stream
          return stream?["client_hien_tai"] == Double(streamCount) && stream?["tokens_sent"] ?? 0 > 10_000
        }
        let client = try await server.connect()
        #expect(
          try await client.predict(model: "echo", input: "vẫn đọc", deadline: .seconds(60)) == "vẫn đọc"
        )
        await client.close()
        await flooding.close()
      }
      try await loop.shutdownGracefully()
    }

    /// Tokens without end that are ready at once: an asynchronous sequence that never
    /// suspends.
    struct Instant: AsyncSequence {
      struct AsyncIterator: AsyncIteratorProtocol {
        mutating func next() async throws -> String? { "x" }
      }
      func makeAsyncIterator() -> AsyncIterator { AsyncIterator() }
    }

    @Test("many streams on one connection take turns and each gets all its tokens, in order")
    func fairTurns() async throws {
      try await TestServer.with { server in
        let client = try await server.connect()
        let prompt = (1...500).map { "s\($0)" }.joined(separator: " ")
        let expected = BuiltinModels.syllables(of: prompt)
        try await withThrowingTaskGroup(of: [String].self) { group in
          for _ in 0..<20 {
            group.addTask {
              var tokens: [String] = []
              for try await token in client.stream(prompt: prompt, model: "syllables") {
                tokens.append(token)
              }
              return tokens
            }
          }
          for try await tokens in group { #expect(tokens == expected) }
        }
        let stream = try server.statistics().stream
        #expect(
          stream["tokens_sent"] == Double(20 * expected.count) && stream["client_hien_tai"] == 0,
          "\(stream)"
        )
        await client.close()
      }
    }

    @Test("with generators off the event loops, plain-sequence generators still stream")
    func poolExecutor() async throws {
      let configuration = TestServer.configuration { $0.generatorsRunOnEventLoops = false }
      try await TestServer.with(configuration: configuration) { server in
        let client = try await server.connect()
        var tokens: [String] = []
        for try await token in client.stream(prompt: "xin chào Việt Nam", model: "syllables") {
          tokens.append(token)
        }
        #expect(tokens == ["xin ", "chào ", "Việt ", "Nam"])
        await client.close()
      }
    }

    @Test("syllables split on spaces only, keep one space after each but the last, and skip runs of spaces")
    func syllables() {
      #expect(BuiltinModels.syllables(of: "") == [])
      #expect(BuiltinModels.syllables(of: "   ") == [])
      #expect(BuiltinModels.syllables(of: "một") == ["một"])
      #expect(BuiltinModels.syllables(of: "  Trí   tuệ nhân\ttạo  ") == ["Trí ", "tuệ ", "nhân\ttạo"])
      #expect(BuiltinModels.syllables(of: "a\n\nb c") == ["a\n\nb ", "c"])
      #expect(Array(Syllables("ngôn ngữ")) == ["ngôn ", "ngữ"])
    }
  }
}
