import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import TestSupport
import Testing
import VietnameseAI
import VietnameseAIClient
@_spi(Locking) import VietnameseAIConcurrency
import VietnameseAIServer
import VietnameseAIWire

@Suite("Limits a live server enforces")
struct LimitTests {
  private func withServer(
    rateLimit goiY: Int,
    per cuaSo: Duration,
    _ body: (TestServer) async throws -> Void
  ) async throws {
    let configuration = TestServer.configuration {
      $0.rateLimit.goiY = goiY
      $0.rateLimit.cuaSo = cuaSo
    }
    try await TestServer.with(configuration: configuration, body)
  }

  @Test("the rate limit refuses with the real retry-after, then lets the client through again")
  func rateLimitHitAndRecovered() async throws {
    // One request a second, two at once: however slow the machine, calls outrun the refill.
    try await withServer(rateLimit: 2, per: .seconds(2)) { server in
      let client = try await server.connect(clientID: "greedy")
      var refusal: RPCError?
      for attempt in 0..<20 where refusal == nil {
        do {
          _ = try await client.predict(model: "echo", input: "\(attempt)")
        } catch let error as RPCError {
          refusal = error
        }
      }
      #expect(refusal?.code == .rateLimited)
      let retryAfter = try #require(refusal?.retryAfter)
      #expect(retryAfter > .zero && retryAfter <= .seconds(1), "\(retryAfter)")

      // Another client id has its own allowance.
      let other = try await server.connect(clientID: "patient")
      #expect(try await other.predict(model: "echo", input: "x") == "x")

      try await Task.sleep(for: retryAfter + .milliseconds(20))
      #expect(try await client.predict(model: "echo", input: "4") == "4")
      let stats = try await other.stats()
      #expect(stats.rateLimit["rejected"]! >= 1)
      await client.close()
      await other.close()
    }
  }

  @Test("predicts read together are admitted together: in order, one answer each, duplicates caught")
  func predictsReadTogether() async throws {
    try await withServer(rateLimit: 4, per: .seconds(60)) { server in
      let connection = try await RawConnection.connected(port: server.port)
      var burst = EncodedFrames()
      for (id, model) in [(1, "echo"), (2, "echo"), (3, "nope"), (4, "echo"), (5, "echo"), (6, "echo")] {
        let predict = WireMessage.Predict(
          deadlineMilliseconds: 0,
          model: model,
          input: .init(string: "v\(id)")
        )
        try burst.append(WireFrame(requestID: UInt32(id), message: .predict(predict)))
      }
      try await connection.send(burst.bytes)
      let frames = try await connection.frames(count: 7)  // WELCOME and one answer per id
      var answers: [UInt32: WireMessage] = [:]
      for frame in frames where frame.requestID != 0 {
        #expect(answers.updateValue(frame.message, forKey: frame.requestID) == nil, "two answers to \(frame)")
      }
      // A request for a model the server does not serve costs nothing; the allowance of four
      // takes the first four that can run, in order.
      for id in [1, 2, 4, 5] as [UInt32] { #expect(answers[id] == .result(.init(string: "v\(id)"))) }
      guard case .error(let unknown) = answers[3] else {
        throw VectorError("id 3: \(String(describing: answers[3]))")
      }
      #expect(unknown.code == .unknownModel)
      guard case .error(let refused) = answers[6] else {
        throw VectorError("id 6: \(String(describing: answers[6]))")
      }
      #expect(refused.code == .rateLimited && refused.retryAfterMilliseconds > 0, "\(refused)")
      let limits = try server.statistics().rateLimit
      #expect(limits["allowed"] == 4 && limits["rejected"] == 1, "\(limits)")

      // An id used twice in one read is caught like one reused while in flight.
      let twice = try await RawConnection.connected(port: server.port)
      var pair = EncodedFrames()
      let predict = WireMessage.Predict(deadlineMilliseconds: 0, model: "echo", input: .init(string: "x"))
      for _ in 0..<2 { try pair.append(WireFrame(requestID: 9, message: .predict(predict))) }
      try await twice.send(pair.bytes)
      try await twice.waitUntilClosed()
      let reasons = try twice.receivedFrames().compactMap { frame -> WireMessage.ErrorInfo? in
        guard frame.requestID == 0, case .error(let info) = frame.message else { return nil }
        return info
      }
      #expect(reasons.count == 1 && reasons.first?.code == .protocolError, "\(reasons)")
      await connection.close()
    }
  }

  @Test("a full queue refuses with QUEUE_FULL and the queued requests still complete")
  func queueFull() async throws {
    let gate = Gate()
    try await TestServer.with(models: [gatedModel(gate: gate, toiDaCho: 2)]) { server in
      let client = try await server.connect()
      // One request in the model, two in the queue: the queue is full.
      let held = (0..<3).map { index in
        Task { try await client.predict(model: "gated", input: "r\(index)") }
      }
      try await eventually("one batch running and two waiting") {
        gate.entered == 1 && (try? server.statistics().batch["queue_size"]) == 2
      }
      await expectRPCError(.queueFull) { try await client.predict(model: "gated", input: "one too many") }
      gate.open()
      for (index, task) in held.enumerated() {
        #expect(try await task.value == "r\(index)")
      }
      await client.close()
    }
  }

  @Test("a deadline that passes while the model runs is answered DEADLINE_EXCEEDED at the deadline")
  func deadlineExceeded() async throws {
    let gate = Gate()
    try await TestServer.with(models: [gatedModel(gate: gate)]) { server in
      let client = try await server.connect()
      let clock = ContinuousClock()
      let start = clock.now
      await expectRPCError(.deadlineExceeded) {
        try await client.predict(model: "gated", input: "slow", deadline: .milliseconds(100))
      }
      #expect(clock.now - start >= .milliseconds(100))
      // Queued behind the stuck batch, this one expires in the queue and never runs.
      await expectRPCError(.deadlineExceeded) {
        try await client.predict(model: "gated", input: "queued", deadline: .milliseconds(50))
      }
      await expectRPCError(.deadlineExceeded) {
        for try await _ in client.stream(
          prompt: "",
          model: "endless",
          deadline: .milliseconds(50)
        ) {
          try await Task.sleep(for: .milliseconds(1))
        }
      }
      gate.open()
      #expect(try await client.predict(model: "gated", input: "fast", deadline: .seconds(30)) == "fast")
      // Each expired request was withdrawn on the server: by the server's own deadline, or, on
      // a machine so loaded that the server's timer ran late, by the CANCEL the client sends
      // when it stops waiting.
      let stats = try server.statistics()
      #expect(stats.batch["deadline_exceeded"]! + stats.batch["cancelled"]! == 2, "\(stats.batch)")
      await client.close()
    }
  }

  @Test("streams beyond the server's cap are refused TOO_MANY_STREAMS")
  func tooManyStreams() async throws {
    let configuration = TestServer.configuration { $0.streaming.toiDaClient = 1 }
    let gate = Gate()
    let slow = ServedGenerator(
      name: "slow",
      generator: TokenGenerator { (_: String) async in
        AsyncStream<String> { continuation in
          Task {
            continuation.yield("một ")
            await gate.wait()
            continuation.finish()
          }
        }
      }
    )
    try await TestServer.with(configuration: configuration, generators: [slow]) { server in
      let client = try await server.connect()
      var first = client.stream(prompt: "x").makeAsyncIterator()
      #expect(try await first.next() == "một ")
      await expectRPCError(.tooManyStreams) {
        for try await _ in client.stream(prompt: "y") {}
      }
      gate.open()
      #expect(try await first.next() == nil)
      await client.close()
    }
  }

  @Test("with auth tokens, a bad token is refused and the token decides the client id")
  func authTokens() async throws {
    let configuration = TestServer.configuration {
      $0.authTokens = ["s3cret-token": "team-a"]
      $0.rateLimit.goiY = 1
    }
    try await TestServer.with(configuration: configuration) { server in
      await expectRPCError(.unauthenticated) { try await server.connect(authToken: "wrong") }
      await expectRPCError(.unauthenticated) { try await server.connect(authToken: "") }
      let client = try await server.connect(clientID: "pretending-to-be-b", authToken: "s3cret-token")
      #expect(client.clientID == "team-a")
      _ = try await client.predict(model: "echo", input: "x")
      // A second connection claiming another id still spends team-a's allowance.
      let again = try await server.connect(clientID: "someone-else", authToken: "s3cret-token")
      await expectRPCError(.rateLimited) { try await again.predict(model: "echo", input: "y") }
      await client.close()
      await again.close()
    }
  }

  @Test("requests beyond the connection's in-flight limit are refused RESOURCE_EXHAUSTED")
  func inFlightLimit() async throws {
    let gate = Gate()
    let configuration = TestServer.configuration { $0.maxConcurrentRequests = 2 }
    try await TestServer.with(configuration: configuration, models: [gatedModel(gate: gate)]) { server in
      let client = try await server.connect()
      #expect(client.maxConcurrentRequests == 2)
      let held = (0..<2).map { _ in Task { try await client.predict(model: "gated", input: "x") } }
      try await eventually("two requests in flight") { gate.entered == 1 }
      await expectRPCError(.resourceExhausted) { try await client.predict(model: "gated", input: "z") }
      gate.open()
      for task in held { #expect(try await task.value == "x") }
      await client.close()
    }
  }

  @Test("connections beyond the server's maximum are refused RESOURCE_EXHAUSTED and closed")
  func connectionLimit() async throws {
    let configuration = TestServer.configuration { $0.maxConnections = 2 }
    try await TestServer.with(configuration: configuration) { server in
      let first = try await server.connect(clientID: "a")
      let second = try await server.connect(clientID: "b")
      let refused = await expectRPCError(.resourceExhausted) { try await server.connect(clientID: "c") }
      #expect(refused?.message.contains("maximum of 2 connections") == true, "\(String(describing: refused))")
      await first.close()
      // The freed place goes to the next client, once the server has seen the close.
      var third: RPCClient?
      try await eventually("a new client gets the freed place") {
        third = try? await server.connect(clientID: "c")
        return third != nil
      }
      #expect(try await third?.predict(model: "echo", input: "vào") == "vào")
      await second.close()
      await third?.close()
    }
  }

  @Test("streams beyond a client's own cap are refused TOO_MANY_STREAMS while other clients stream")
  func perClientStreamLimit() async throws {
    let configuration = TestServer.configuration { $0.streaming.toiDaMoiClient = 1 }
    try await TestServer.with(configuration: configuration) { server in
      let greedy = try await server.connect(clientID: "greedy")
      let other = try await server.connect(clientID: "other")
      var first = greedy.stream(prompt: "", model: "endless").makeAsyncIterator()
      _ = try await first.next()
      await expectRPCError(.tooManyStreams) {
        for try await _ in greedy.stream(prompt: "", model: "endless") {}
      }
      var tokens: [String] = []
      for try await token in other.stream(prompt: "một hai", model: "syllables") { tokens.append(token) }
      #expect(tokens == ["một ", "hai"])
      await greedy.close()
      await other.close()
    }
  }

  @Test("auth tokens, right or wrong, never reach the logs")
  func tokensNotLogged() async throws {
    let lines = LogLines()
    var logger = Logger(label: "capture", factory: { _ in lines })
    logger.logLevel = .trace
    var configuration = TestServer.configuration()
    configuration.authTokens = ["s3cret-token-XYZ": "team-a"]
    let server = RPCServer(
      configuration: configuration,
      models: TestServer.builtinModels,
      generators: [],
      logger: logger
    )
    let services = ServiceGroup(services: [server], logger: TestServer.quietLogger)
    let running = Task { try await services.run() }
    let port = try await server.listeningAddress().port
    await expectRPCError(.unauthenticated) {
      try await RPCClient.connect(port: port, authToken: "wrong-guess-123", timeout: .seconds(60))
    }
    let client = try await RPCClient.connect(port: port, authToken: "s3cret-token-XYZ", timeout: .seconds(60))
    #expect(try await client.predict(model: "echo", input: "x") == "x")
    await client.close()
    await services.triggerGracefulShutdown()
    try await running.value
    let logged = lines.all
    #expect(logged.count >= 3, "the server logged at trace level: \(logged)")
    for line in logged {
      #expect(!line.contains("s3cret-token-XYZ") && !line.contains("wrong-guess-123"), "\(line)")
    }
  }
}

/// Every log line, message and metadata, kept in memory.
final class LogLines: LogHandler, Sendable {
  private let lines = Locked<[String]>([])

  var all: [String] { lines.withLock { $0 } }

  subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { nil }
    set {}
  }

  var metadata: Logger.Metadata {
    get { [:] }
    set {}
  }

  var logLevel: Logger.Level {
    get { .trace }
    set {}
  }

  func log(event: LogEvent) {
    let line = "\(event.level) \(event.message) \(event.metadata ?? [:]) \(event.source)"
    lines.withLock { $0.append(line) }
  }
}
