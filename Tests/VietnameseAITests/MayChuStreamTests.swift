import Synchronization
import TestSupport
import Testing

@testable import VietnameseAI

private struct GeneratorError: Error {}

/// A generator whose tokens the test pushes by hand, and which records its cancellation.
private final class ManualGenerator: Sendable {
  let continuations = Recorder<AsyncThrowingStream<String, any Error>.Continuation>()
  let terminated = Counter()

  var hamSinh: @Sendable (String) async throws -> AsyncThrowingStream<String, any Error> {
    { _ in
      AsyncThrowingStream { continuation in
        continuation.onTermination = { _ in self.terminated.increment() }
        self.continuations.append(continuation)
      }
    }
  }

  var latest: AsyncThrowingStream<String, any Error>.Continuation? { continuations.all.last }

  var tokenGenerator: TokenGenerator { TokenGenerator(hamSinh) }

  /// A server over this generator, without pacing.
  func server(
    toiDaClient: Int = 100,
    timeout: Duration = .seconds(60),
    toiDaMoiClient: Int? = nil,
    clock: SteppedClock = SteppedClock()
  ) -> MayChuStream {
    MayChuStream(
      hamSinh: hamSinh,
      tocDoToken: .zero,
      toiDaClient: toiDaClient,
      timeout: timeout,
      toiDaMoiClient: toiDaMoiClient,
      clock: clock
    )
  }
}

@Suite("MayChuStream")
struct MayChuStreamTests {
  /// A server whose generator yields "a" and then throws ``GeneratorError``.
  private static func failingAfterOneToken() -> MayChuStream {
    MayChuStream(
      hamSinh: { _ in
        AsyncThrowingStream<String, any Error> { c in
          c.yield("a")
          c.finish(throwing: GeneratorError())
        }
      },
      tocDoToken: .zero
    )
  }

  private static func words(_ prompt: String) -> [String] {
    prompt.split(separator: " ").map(String.init)
  }

  @Test("sinhStream yields the generator's tokens in order")
  func plainTokens() async throws {
    let server = MayChuStream(hamSinh: { Self.words($0) }, tocDoToken: .zero)
    let tokens = try await collect(server.sinhStream("Viết bài luận về AI"))
    #expect(tokens == ["Viết", "bài", "luận", "về", "AI"])
    let stats = server.layThongKe()
    #expect(stats.tongStream == 1)
    #expect(stats.clientHienTai == 0)
    #expect(stats.tokensSent == 5)
  }

  @Test("an asynchronous generator streams the same way")
  func asyncGenerator() async throws {
    let server = MayChuStream(
      hamSinh: { prompt in
        AsyncStream<String> { continuation in
          for word in Self.words(prompt) { continuation.yield(word) }
          continuation.finish()
        }
      },
      tocDoToken: .zero
    )
    let tokens = try await collect(server.sinhStream("xin chào thế giới"))
    #expect(tokens == ["xin", "chào", "thế", "giới"])
  }

  @Test("tokens are handed over at least tocDoToken apart")
  func pacing() async throws {
    let clock = SteppedClock()
    let server = MayChuStream(hamSinh: { _ in ["a", "b", "c"] }, tocDoToken: .milliseconds(20), clock: clock)
    let received = Recorder<(String, Duration)>()
    let start = clock.now
    let reader = Task {
      for try await token in server.sinhStream("x") {
        received.append((token, start.duration(to: clock.now)))
      }
    }
    try await eventually("first token at once") { received.count == 1 }
    await clock.advance(by: .milliseconds(19))
    #expect(received.count == 1, "second token came before tocDoToken")
    await clock.advance(by: .milliseconds(1))
    try await eventually("second token") { received.count == 2 }
    await clock.advance(by: .milliseconds(20))
    try await reader.value
    #expect(received.all.map(\.0) == ["a", "b", "c"])
    #expect(received.all.map(\.1) == [.zero, .milliseconds(20), .milliseconds(40)])
  }

  @Test("beyond toiDaClient streams the next one fails at once with tooManyClients")
  func tooManyClients() async throws {
    let generator = ManualGenerator()
    let server = generator.server(toiDaClient: 2)
    var first = server.sinhStream("1").makeAsyncIterator()
    var second = server.sinhStream("2").makeAsyncIterator()
    #expect(server.layThongKe().clientHienTai == 2)
    await expectError(.tooManyClients) {
      for try await _ in server.sinhStream("3") {}
    }
    #expect(server.layThongKe().rejected == 1)
    try await eventually("generators started") { generator.continuations.count == 2 }
    for c in generator.continuations.all { c.finish() }
    #expect(try await first.next() == nil)
    #expect(try await second.next() == nil)
    #expect(server.layThongKe().clientHienTai == 0)
    // A slot that came back can be used again.
    var third = server.sinhStream("4").makeAsyncIterator()
    try await eventually("third generator started") { generator.continuations.count == 3 }
    generator.latest?.finish()
    #expect(try await third.next() == nil)
  }

  @Test("toiDaMoiClient limits one client id without affecting the others")
  func perClientLimit() async throws {
    let generator = ManualGenerator()
    let server = generator.server(toiDaClient: 10, toiDaMoiClient: 1)
    let held = server.sinhStream("a", clientID: "alice").makeAsyncIterator()
    await expectError(.tooManyClients) {
      for try await _ in server.sinhStream("b", clientID: "alice") {}
    }
    let bob = server.sinhStream("c", clientID: "bob").makeAsyncIterator()
    #expect(server.layThongKe().clientHienTai == 2)
    _ = (held, bob)
  }

  @Test("a stream that outlives its timeout ends with streamTimeout and frees its slot")
  func streamTimeout() async throws {
    let clock = SteppedClock()
    let generator = ManualGenerator()
    let server = generator.server(timeout: .seconds(60), clock: clock)
    let reader = Task { try await collect(server.sinhStream("x")) }
    try await eventually("generator started") { generator.continuations.count == 1 }
    generator.latest?.yield("one")
    try await eventually("token delivered") { server.layThongKe().tokensSent == 1 }
    await clock.advance(by: .seconds(59))
    #expect(server.layThongKe().clientHienTai == 1)
    await clock.advance(by: .seconds(1))
    await expectError(.streamTimeout) { try await reader.value }
    let stats = server.layThongKe()
    #expect(stats.clientHienTai == 0)
    #expect(stats.timeouts == 1)
    try await eventually("generator cancelled") { generator.terminated.current == 1 }
  }

  @Test("a caller's deadline shorter than the timeout ends the stream with deadlineExceeded")
  func streamDeadline() async throws {
    let clock = SteppedClock()
    let generator = ManualGenerator()
    let server = generator.server(timeout: .seconds(60), clock: clock)
    let errors = Recorder<any Error>()
    let started = server.start(
      "x",
      clientID: nil,
      generator: generator.tokenGenerator,
      executor: nil,
      deadline: .seconds(2),
      onToken: { _ in },
      onEnd: { if case .failure(let error) = $0 { errors.append(error) } }
    )
    #expect((try? started.get()) != nil)
    try await eventually("generator started") { generator.continuations.count == 1 }
    await clock.advance(by: .milliseconds(1999))
    #expect(errors.count == 0)
    await clock.advance(by: .milliseconds(1))
    try await eventually("the stream ended") { errors.count == 1 }
    #expect((errors.all.first as? VietnameseAIError)?.code == .deadlineExceeded)
    let stats = server.layThongKe()
    #expect(stats.clientHienTai == 0 && stats.timeouts == 1)
  }

  @Test("the shorter of the timeout and the deadline ends a stream")
  func limitChoice() {
    #expect(MayChuStream.limit(timeout: .seconds(60), deadline: nil)?.1.code == .streamTimeout)
    #expect(MayChuStream.limit(timeout: .seconds(60), deadline: .seconds(5))?.0 == .seconds(5))
    #expect(MayChuStream.limit(timeout: .seconds(5), deadline: .seconds(60))?.1.code == .streamTimeout)
    #expect(MayChuStream.limit(timeout: .zero, deadline: .seconds(60))?.1.code == .deadlineExceeded)
    #expect(MayChuStream.limit(timeout: .zero, deadline: nil) == nil)
  }

  @Test("breaking out of the loop cancels the generator and frees the slot at once")
  func consumerStops() async throws {
    let generator = ManualGenerator()
    let server = generator.server()
    let pusher = Task {
      try await eventually("generator started") { generator.continuations.count == 1 }
      generator.latest?.yield("first")
    }
    for try await token in server.sinhStream("x") {
      #expect(token == "first")
      break
    }
    #expect(server.layThongKe().clientHienTai == 0)
    try await pusher.value
    try await eventually("generator cancelled") { generator.terminated.current == 1 }
    #expect(server.layThongKe().cancelled == 1)
  }

  @Test("cancelling the reading task cancels the generator and frees the slot")
  func consumerCancelled() async throws {
    let generator = ManualGenerator()
    let server = generator.server()
    let reader = Task {
      for try await _ in server.sinhStream("x") {}
    }
    try await eventually("generator started") { generator.continuations.count == 1 }
    reader.cancel()
    await expectCancellation { try await reader.value }
    #expect(server.layThongKe().clientHienTai == 0)
    try await eventually("generator cancelled") { generator.terminated.current == 1 }
  }

  @Test("a reader that falls behind slows the generator down instead of buffering without bound")
  func backpressure() async throws {
    let produced = Counter()
    let server = MayChuStream(
      hamSinh: { _ in
        (0..<1_000_000).lazy.map { i -> String in
          produced.increment()
          return String(i)
        }
      },
      tocDoToken: .zero
    )
    var iterator = server.sinhStream("x").makeAsyncIterator()
    #expect(try await iterator.next() == "0")
    try await eventually("buffer filled") { produced.current > MayChuStream.bufferedTokens }
    // Give a runaway producer every chance to show itself.
    for _ in 0..<100 { await Task.yield() }
    #expect(produced.current <= MayChuStream.bufferedTokens + 2)
    #expect(try await iterator.next() == "1")
  }

  @Test("a failing generator ends the stream with generatorFailed after the tokens it produced")
  func generatorFails() async throws {
    let server = Self.failingAfterOneToken()
    var tokens: [String] = []
    do {
      for try await token in server.sinhStream("x") { tokens.append(token) }
      Issue.record("expected an error")
    } catch let error as VietnameseAIError {
      #expect(error.code == .generatorFailed)
      #expect(error.cause is GeneratorError)
    }
    #expect(tokens == ["a"])
    #expect(server.layThongKe().errors == 1)
  }

  @Test("sinhSSE frames tokens as data events with exact JSON escaping, then [DONE]")
  func sseFraming() async throws {
    let tokens = [
      "xin chào", "\"quoted\"", "back\\slash", "new\nline", "tab\t", "\u{01}", "😀 Tiếng Việt", "\u{2028}",
      "… \u{2029}", "\u{7F}",
    ]
    let server = MayChuStream(hamSinh: { _ in tokens }, tocDoToken: .zero)
    let events = try await collect(server.sinhSSE("x", clientID: "c1"))
    #expect(
      events == [
        "data: {\"token\": \"xin chào\"}\n\n",
        "data: {\"token\": \"\\\"quoted\\\"\"}\n\n",
        "data: {\"token\": \"back\\\\slash\"}\n\n",
        "data: {\"token\": \"new\\nline\"}\n\n",
        "data: {\"token\": \"tab\\t\"}\n\n",
        "data: {\"token\": \"\\u0001\"}\n\n",
        "data: {\"token\": \"😀 Tiếng Việt\"}\n\n",
        "data: {\"token\": \"\\u2028\"}\n\n",
        "data: {\"token\": \"… \\u2029\"}\n\n",
        "data: {\"token\": \"\\u007f\"}\n\n",
        "data: [DONE]\n\n",
      ]
    )
  }

  @Test("an error mid-stream becomes one error event followed by [DONE]")
  func sseError() async throws {
    let server = Self.failingAfterOneToken()
    let events = try await collect(server.sinhSSE("x"))
    #expect(events.count == 3)
    #expect(events[0] == "data: {\"token\": \"a\"}\n\n")
    #expect(events[1].hasPrefix("data: {\"error\": \"generator_failed"))
    #expect(events[1].hasSuffix("\"}\n\n"))
    #expect(events[2] == SSEEvent.done)
  }

  @Test("a timeout in an SSE stream becomes an error event followed by [DONE]")
  func sseTimeout() async throws {
    let clock = SteppedClock()
    let generator = ManualGenerator()
    let server = generator.server(timeout: .seconds(1), clock: clock)
    let reader = Task { try await collect(server.sinhSSE("x")) }
    try await eventually("generator started") { generator.continuations.count == 1 }
    await clock.advance(by: .seconds(1))
    let events = try await reader.value
    #expect(events.count == 2)
    #expect(events[0].hasPrefix("data: {\"error\": \"stream_timeout"))
    #expect(events[1] == SSEEvent.done)
  }

  @Test("callbacks receive every token, then exactly one onDone")
  func callbacks() async throws {
    let server = MayChuStream(hamSinh: { Self.words($0) }, tocDoToken: .zero)
    let tokens = Recorder<String>()
    let done = Counter()
    let errors = Counter()
    server.sinhCallback(
      "một hai ba",
      onToken: { tokens.append($0) },
      onDone: { done.increment() },
      onError: { _ in errors.increment() }
    )
    try await eventually("done") { done.current == 1 }
    #expect(tokens.all == ["một", "hai", "ba"])
    #expect(errors.current == 0)
  }

  @Test("huy() cancels a callback stream: onError receives CancellationError, once")
  func callbackCancel() async throws {
    let generator = ManualGenerator()
    let server = generator.server()
    let errors = Recorder<String>()
    let done = Counter()
    let handle = server.sinhCallback(
      "x",
      onToken: { _ in },
      onDone: { done.increment() },
      onError: { errors.append(String(describing: type(of: $0))) }
    )
    try await eventually("generator started") { generator.continuations.count == 1 }
    handle.huy()
    handle.huy()
    #expect(errors.all == ["CancellationError"])
    #expect(server.layThongKe().clientHienTai == 0)
    try await eventually("generator cancelled") { generator.terminated.current == 1 }
    #expect(done.current == 0)
  }

  @Test("a refused callback stream reports tooManyClients through onError")
  func callbackRefused() async throws {
    let generator = ManualGenerator()
    let server = generator.server(toiDaClient: 1)
    let first = server.sinhCallback("a", onToken: { _ in })
    let codes = Recorder<VietnameseAIError.Code>()
    server.sinhCallback(
      "b",
      onToken: { _ in },
      onError: { codes.append(($0 as? VietnameseAIError)?.code ?? .invalidArgument) }
    )
    #expect(codes.all == [.tooManyClients])
    first.huy()
  }

  @Test("statistics carry the seed's keys, durations and time to first token")
  func statistics() async throws {
    let clock = SteppedClock()
    let server = MayChuStream(hamSinh: { _ in ["a", "b"] }, tocDoToken: .milliseconds(500), clock: clock)
    let reader = Task { for try await _ in server.sinhStream("x") {} }
    try await eventually("first token") { server.layThongKe().tokensSent == 1 }
    await clock.advance(by: .milliseconds(500))
    try await reader.value
    let stats = server.layThongKe()
    #expect(stats.tongStream == 1)
    #expect(stats.thoiGianTB == 0.5)
    #expect(stats.ttftP50 == 0)
    let keys = try jsonKeys(stats)
    for key in [
      "tong_stream", "client_hien_tai", "thoi_gian_tb", "tokens_sent", "ttft_p50", "ttft_p95", "timeouts",
    ] {
      #expect(keys.contains(key), "missing \(key)")
    }
  }

  @Test("parameters are validated with clear errors")
  func validation() {
    #expect(throws: VietnameseAIError.self) {
      try MayChuStream.validate(tocDoToken: .zero, toiDaClient: 0, timeout: .zero)
    }
    #expect(throws: VietnameseAIError.self) {
      try MayChuStream.validate(tocDoToken: .milliseconds(-1), toiDaClient: 1, timeout: .zero)
    }
    #expect(throws: Never.self) {
      try MayChuStream.validate(tocDoToken: .zero, toiDaClient: 1, timeout: .zero)
    }
  }
}

@Suite("MayChuStream callbacks")
struct MayChuStreamCallbackTests {
  private struct ReceiverGone: Error {}

  @Test("an onToken that throws ends the stream with its own error, counted as cancelled")
  func onTokenThrows() async throws {
    let server = MayChuStream(hamSinh: { _ in ["a", "b", "c"] }, tocDoToken: .zero)
    let errors = Recorder<String>()
    server.sinhCallback(
      "x",
      onToken: { token in if token == "b" { throw ReceiverGone() } },
      onError: { errors.append(String(describing: type(of: $0))) }
    )
    try await eventually("ended") { errors.count == 1 }
    #expect(errors.all == ["ReceiverGone"])
    let stats = server.layThongKe()
    #expect(stats.errors == 0)
    #expect(stats.cancelled == 1)
    #expect(stats.clientHienTai == 0)
  }
}
