import NIOCore
import NIOPosix
import Synchronization
import TestSupport
import Testing
import VietnameseAI
@_spi(Locking) import VietnameseAIConcurrency

@testable import VietnameseAIServer

/// The serving core without any door: admission order, routing, what each request costs,
/// and how work reports back.
@Suite("Serving core")
struct ServingCoreTests {
  /// A core over `echo` (a queue of 8) and `held`, whose batches wait until `gate` opens, with
  /// a rate limit of `goiY` per hour and the built-in generators.
  static func core(goiY: Int = 1_000, maxStreams: Int = 100, gate: Gate = Gate()) throws -> ServingCore {
    var configuration = RPCServer.Configuration()
    configuration.rateLimit.goiY = goiY
    // An hour's window: the allowance refills too slowly to change within a test.
    configuration.rateLimit.cuaSo = .seconds(3600)
    configuration.streaming.toiDaClient = maxStreams
    configuration.streaming.tocDoToken = .zero
    var batching = BuiltinModels.Batching()
    batching.toiDaCho = 8
    batching.timeoutBatch = .zero
    let core = ServingCore(
      configuration: configuration,
      models: [BuiltinModels.echo(batching: batching), Self.held(gate)],
      generators: [BuiltinModels.essay, BuiltinModels.syllables]
    )
    try core.start()
    return core
  }

  /// The model `held`: each batch waits until `gate` opens.
  static func held(_ gate: Gate) -> ServedModel {
    .buffers(
      name: "held",
      batcher: MayChuBatch(
        hamDuDoan: { inputs in
          await gate.wait()
          return inputs
        },
        timeoutBatch: .zero
      )
    )
  }

  /// The answers a sink received, by tag.
  final class Answers: Sendable {
    let byTag = Locked([UInt32: Result<ByteBuffer, ServingError>]())

    func sink(for model: ServedModel) -> ServedModel.Sink {
      model.makeSink(0, nil) { answers in
        self.byTag.withLock { table in
          for answer in answers { table[answer.tag] = answer.result.mapError(ServingError.init) }
        }
      }
    }

    var count: Int { byTag.withLock { $0.count } }
  }

  /// Submits `read` as one read of client "c"; how many were accepted. No refusal is expected.
  static func submitAllAccepted(
    _ read: [PredictRequest],
    to core: ServingCore,
    through sinks: inout PredictSinks
  ) -> Int {
    var accepted = 0
    let later = core.submitPredicts(
      read,
      client: "c",
      sinks: &sinks,
      accepted: { _, _ in accepted += 1 },
      refused: { id, error in Issue.record("\(id): \(error)") }
    )
    #expect(later == nil, "a local limit decides at once")
    return accepted
  }

  static func predict(_ id: UInt32, _ model: String) -> PredictRequest {
    PredictRequest(id: id, model: model, input: ByteBuffer(string: "v\(id)"), deadlineMilliseconds: 0)
  }

  // MARK: Routing

  @Test(
    "names route to models and generators; an empty model name is refused, an empty generator is the default"
  )
  func routing() throws {
    let core = try Self.core()
    #expect((try? core.model(named: "echo").get())?.name == "echo")
    #expect(core.model(named: "").failure?.code == .invalidArgument)
    #expect(core.model(named: "gpt").failure?.code == .unknownModel)
    #expect(core.model(named: "gpt").failure?.message.contains("served: echo, held") == true)
    #expect((try? core.generator(named: "").get()) != nil)
    #expect(core.generator(named: "nope").failure?.code == .unknownModel)
    let long = String(repeating: "m", count: 10_000)
    #expect((core.model(named: long).failure?.message.utf8.count ?? .max) < 200)
  }

  // MARK: Predicts of one read

  @Test("a read's predicts: unroutable ones cost nothing, the allowance takes the rest in order")
  func predictsOfARead() async throws {
    let core = try Self.core(goiY: 3)
    let answers = Answers()
    var sinks = PredictSinks(make: answers.sink(for:))
    var accepted: [UInt32] = []
    var refused: [UInt32: ServingError.Code] = [:]
    let read = [
      Self.predict(1, "echo"), Self.predict(2, "nope"), Self.predict(3, ""), Self.predict(4, "echo"),
      Self.predict(5, "echo"), Self.predict(6, "echo"),
    ]
    let later = core.submitPredicts(
      read,
      client: "c",
      sinks: &sinks,
      accepted: { id, _ in accepted.append(id) },
      refused: { id, error in refused[id] = error.code }
    )
    #expect(later == nil)
    #expect(accepted == [1, 4, 5])
    #expect(refused == [2: .unknownModel, 3: .invalidArgument, 6: .rateLimited])
    try await eventually("the accepted ones are answered") { answers.count == 3 }
    #expect((try? answers.byTag.withLock { $0[4] }?.get()) == ByteBuffer(string: "v4"))
    let limits = core.limiter.layThongKe()
    #expect(limits.allowed == 3 && limits.rejected == 1)
  }

  @Test("a read's predicts for two models go to each model's sink, made once per model")
  func twoModels() async throws {
    let gate = Gate()
    gate.open()
    let core = try Self.core(gate: gate)
    let answers = Answers()
    let made = Locked<[String]>([])
    var sinks = PredictSinks { model in
      made.withLock { $0.append(model.name) }
      return answers.sink(for: model)
    }
    let read = [Self.predict(1, "echo"), Self.predict(2, "held"), Self.predict(3, "echo")]
    let accepted = Self.submitAllAccepted(read, to: core, through: &sinks)
    #expect(accepted == 3 && made.withLock { $0 } == ["echo", "held"])
    try await eventually("all answered") { answers.count == 3 }
  }

  @Test("a predict the model's queue cannot take is answered through the sink")
  func queueFull() async throws {
    let core = try Self.core()
    let answers = Answers()
    var sinks = PredictSinks(make: answers.sink(for:))
    // Twenty predicts in one read, for echo's queue of 8.
    let read = (1...20).map { Self.predict(UInt32($0), "echo") }
    #expect(Self.submitAllAccepted(read, to: core, through: &sinks) == 20)
    try await eventually("every predict answered") { answers.count == 20 }
    let codes = answers.byTag.withLock { table in table.values.compactMap { $0.failure?.code } }
    #expect(!codes.isEmpty && codes.allSatisfy { $0 == .queueFull }, "\(codes)")
  }

  // MARK: Batch predicts

  @Test("a batch costs one unit per input; one that could never pass is refused INVALID_ARGUMENT")
  func batchCost() async throws {
    let core = try Self.core(goiY: 10)
    let four = (1...4).map { ByteBuffer(string: "\($0)") }
    #expect(try await core.predict(model: "echo", inputs: four, deadline: nil, client: "c") == four)
    #expect(core.limiter.layConLai("c") == 6)
    let seven = [ByteBuffer](repeating: ByteBuffer(string: "x"), count: 7)
    let limited = await Self.error {
      try await core.predict(model: "echo", inputs: seven, deadline: nil, client: "c")
    }
    #expect(limited?.code == .rateLimited)
    #expect((limited?.retryAfter ?? .zero) > .zero)
    let eleven = [ByteBuffer](repeating: ByteBuffer(string: "x"), count: 11)
    let never = await Self.error {
      try await core.predict(model: "held", inputs: eleven, deadline: nil, client: "d")
    }
    #expect(never?.code == .invalidArgument && never?.message.contains("never") == true)
    // An empty batch still costs one.
    #expect(try await core.predict(model: "echo", inputs: [], deadline: nil, client: "e") == [])
    #expect(core.limiter.layConLai("e") == 9)
  }

  @Test("a batch larger than the model's queue is refused INVALID_ARGUMENT before it costs anything")
  func batchOverQueue() async throws {
    let core = try Self.core(goiY: 100)
    let nine = [ByteBuffer](repeating: ByteBuffer(string: "x"), count: 9)
    let refused = await Self.error {
      try await core.predict(model: "echo", inputs: nine, deadline: nil, client: "c")
    }
    #expect(refused?.code == .invalidArgument && refused?.message.contains("queue") == true)
    #expect(core.limiter.layConLai("c") == 100)
  }

  @Test("cancelling a caller that awaits a batch withdraws its work")
  func cancelAwaited() async throws {
    let gate = Gate()
    let core = try Self.core(gate: gate)
    let call = Task {
      try await core.predict(model: "held", inputs: [ByteBuffer(string: "x")], deadline: nil, client: "c")
    }
    try await eventually("the batch runs") { gate.entered == 1 }
    call.cancel()
    let error = await Self.error { try await call.value }
    #expect(error?.code == .cancelled)
    gate.open()
  }

  @Test("a batch's deadline passing is DEADLINE_EXCEEDED")
  func batchDeadline() async throws {
    let gate = Gate()
    let core = try Self.core(gate: gate)
    let late = await Self.error {
      try await core.predict(
        model: "held",
        inputs: [ByteBuffer(string: "x")],
        deadline: .milliseconds(20),
        client: "c"
      )
    }
    #expect(late?.code == .deadlineExceeded)
    gate.open()
  }

  // MARK: Streams and statistics

  @Test("streams: an unknown generator costs nothing; past the cap, TOO_MANY_STREAMS")
  func streams() throws {
    let core = try Self.core(goiY: 5, maxStreams: 1)
    let unknown = core.openStream(
      generator: "nope",
      prompt: "x",
      deadline: nil,
      client: "c",
      pullable: true,
      executor: nil,
      onToken: { _ in },
      onEnd: { _ in }
    )
    #expect(unknown.failure?.code == .unknownModel)
    #expect(core.limiter.layConLai("c") == 5)
    let first = core.openStream(
      generator: "syllables",
      prompt: "một hai",
      deadline: .seconds(5),
      client: "c",
      pullable: true,
      executor: nil,
      onToken: { _ in },
      onEnd: { _ in }
    )
    guard case .started(.pulled(let tokens)) = first else { return record("\(first)") }
    #expect(tokens.limit?.after == .seconds(5))
    #expect(tokens.limit?.error.code == .deadlineExceeded)
    let second = core.openStream(
      generator: "",
      prompt: "x",
      deadline: nil,
      client: "c",
      pullable: false,
      executor: nil,
      onToken: { _ in },
      onEnd: { _ in }
    )
    #expect(second.failure?.code == .tooManyStreams)
    _ = tokens.slot.finish(.success(()))
  }

  @Test("a token limit charges each stream's prompt and its tokens, pulled or from a task")
  func tokenLimit() async throws {
    var configuration = RPCServer.Configuration()
    configuration.streaming.tocDoToken = .zero
    // 10 tokens an hour: nothing comes back within the test.
    let core = ServingCore(
      configuration: configuration,
      models: [],
      generators: [BuiltinModels.syllables],
      tokenLimit: TokenLimit(
        limit: 10,
        window: .seconds(3600),
        loop: MultiThreadedEventLoopGroup.singleton.any()
      )
    )
    func open(
      _ prompt: String,
      pullable: Bool,
      ended: @escaping @Sendable (Result<Void, ServingError>) -> Void
    )
      -> Admitted<OpenedStream>
    {
      core.openStream(
        generator: "syllables",
        prompt: prompt,
        deadline: nil,
        client: "c",
        pullable: pullable,
        executor: nil,
        onToken: { _ in },
        onEnd: ended
      )
    }
    // 3 for the prompt, 3 pulled.
    guard case .started(.pulled(let pulled)) = open("một hai ba", pullable: true, ended: { _ in }) else {
      return record("a pulled stream must open")
    }
    while pulled.tokens.next() != nil {}
    _ = pulled.slot.finish(.success(()))
    // 4 left: opens; 2 for the prompt and 2 from the generator's task: 10 used.
    let done = AsyncStream<Void>.makeStream()
    guard case .started(.task) = open("bốn năm", pullable: false, ended: { _ in done.continuation.finish() })
    else {
      return record("a stream from a task must open")
    }
    for await _ in done.stream {}
    let refused = open("sáu", pullable: true, ended: { _ in })
    #expect(refused.failure?.code == .rateLimited)
    #expect(refused.failure?.message.contains("token limit") == true, "\(refused)")
    #expect((refused.failure?.retryAfter ?? .zero) > .seconds(300))
  }

  @Test("statistics cost one request; the document has the design's groups and every model")
  func statistics() throws {
    let core = try Self.core(goiY: 1)
    let json = try core.statistics(client: "c").get()
    for key in ["\"batch\"", "\"batch_model\":\"echo\"", "\"stream\"", "\"rate_limit\"", "\"held\""] {
      #expect(json.contains(key), "\(key) in \(json)")
    }
    #expect(core.statistics(client: "c").failure?.code == .rateLimited)
  }

  // MARK: Errors and identities

  @Test(
    "the components' errors map onto serving codes",
    arguments: [
      (VietnameseAIError.Code.queueFull, ServingError.Code.queueFull),
      (.deadlineExceeded, .deadlineExceeded),
      (.streamTimeout, .deadlineExceeded),
      (.notRunning, .unavailable),
      (.invalidArgument, .invalidArgument),
      (.tooManyClients, .tooManyStreams),
      (.modelFailed, .internal),
      (.generatorFailed, .internal),
    ]
  )
  func errorMapping(code: VietnameseAIError.Code, expected: ServingError.Code) {
    #expect(ServingError(VietnameseAIError(code: code, message: "m")).code == expected)
  }

  @Test(
    "a model's own error is INTERNAL with its text; an input error INVALID_ARGUMENT; a cancellation CANCELLED"
  )
  func otherErrors() {
    struct Boom: Error {}
    let failed = ServingError(
      VietnameseAIError(code: .modelFailed, message: "the model failed", cause: Boom())
    )
    #expect(failed.code == .internal && failed.message.contains("Boom"))
    #expect(ServingError(ServedModel.InputError("bad")).code == .invalidArgument)
    #expect(ServingError(CancellationError()).code == .cancelled)
    #expect(ServingError(Boom()).code == .internal)
  }

  @Test("identities: the token decides when configured, else the claim, else the address")
  func identities() throws {
    let open = ClientIdentities(tokens: [:])
    #expect(try open.identify(token: "", claimedID: "bob", peerAddress: "1.2.3.4").get() == "bob")
    #expect(try open.identify(token: "", claimedID: "", peerAddress: "1.2.3.4").get() == "addr:1.2.3.4")
    #expect(try open.identify(token: "", claimedID: "", peerAddress: nil).get() == "addr:unknown")
    let closed = ClientIdentities(tokens: ["t1": "alice", "t2": "bob"])
    #expect(try closed.identify(token: "t2", claimedID: "mallory", peerAddress: nil).get() == "bob")
    #expect(closed.identify(token: "t3", claimedID: "", peerAddress: nil).failure?.code == .unauthenticated)
    #expect(closed.identify(token: "t", claimedID: "", peerAddress: nil).failure?.code == .unauthenticated)
    let long = String(repeating: "x", count: Admission.maxClientIDBytes + 1)
    #expect(open.identify(token: "", claimedID: long, peerAddress: nil).failure?.code == .invalidArgument)
  }

  @Test("admission at the connection: draining first, then the most requests in flight")
  func admission() {
    let admission = Admission(maxConcurrentRequests: 2)
    #expect(admission.refusal(draining: false, inFlight: 1) == nil)
    #expect(admission.refusal(draining: false, inFlight: 2)?.code == .resourceExhausted)
    #expect(admission.refusal(draining: true, inFlight: 2)?.code == .refused)
    #expect(Admission.cost(inputs: 0) == 1 && Admission.cost(inputs: 32) == 32)
  }

  /// The serving error `body` throws, if it throws one.
  static func error(_ body: () async throws -> some Any) async -> ServingError? {
    do {
      _ = try await body()
      return nil
    } catch {
      return error as? ServingError
    }
  }
}

extension Result {
  var failure: Failure? {
    if case .failure(let error) = self { return error }
    return nil
  }
}

extension Admitted {
  var failure: ServingError? {
    if case .refused(let error) = self { return error }
    return nil
  }

  /// What started, or the refusal thrown; a core without a shared limit never waits.
  func get() throws -> Started {
    switch self {
    case .started(let started): return started
    case .refused(let error): throw error
    case .awaitingLimit: throw ServingError(.internal, "waiting for a shared limit")
    }
  }
}
