import NIOCore
import Prometheus
import Synchronization
import VietnameseAI

/// The one place that admits, routes and cancels requests, whatever door they came through.
///
/// It holds what every connection of a server shares (the models, the generators, the one
/// stream server, the one rate limiter) and knows nothing of sockets or of any protocol's
/// bytes: a front door decodes a request, calls the core, and encodes what comes back. The
/// order in which requests are refused is ``Admission``'s; every failure reaches the door as a
/// ``ServingError``.
///
/// Work comes back through completions, each called exactly once, on whatever thread finished
/// the work and possibly before the call that started it returns. Predicts of one read go in
/// together (``submitPredicts(_:client:sinks:accepted:refused:)``): one rate-limit
/// decision and one lock per model for all of them.
final class ServingCore: Sendable {
  let configuration: RPCServer.Configuration
  let admission: Admission
  let identities: ClientIdentities
  let streams: MayChuStream
  let limiter: BoGioiHanTocDo
  let metrics: ServingMetrics
  private let models: [String: ServedModel]
  /// The models, in the order they were given.
  let modelOrder: [ServedModel]
  /// The generators' names, in the order they were given.
  let generatorOrder: [String]
  private let generators: [String: TokenGenerator]
  private let draining = Atomic<Bool>(false)
  private let defaultGenerator: TokenGenerator?
  /// The names served, sorted and joined, as messages list them.
  let modelNames: String
  let generatorNames: String

  init(configuration: RPCServer.Configuration, models: [ServedModel], generators: [ServedGenerator]) {
    self.configuration = configuration
    self.admission = Admission(maxConcurrentRequests: configuration.maxConcurrentRequests)
    self.identities = ClientIdentities(tokens: configuration.authTokens)
    self.modelOrder = models
    self.models = Dictionary(models.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    self.generators = Dictionary(
      generators.map { ($0.name, $0.generator) },
      uniquingKeysWith: { first, _ in first }
    )
    self.defaultGenerator = generators.first?.generator
    self.generatorOrder = generators.map(\.name)
    self.modelNames = self.models.keys.sorted().joined(separator: ", ")
    self.generatorNames = self.generators.keys.sorted().joined(separator: ", ")
    let streaming = configuration.streaming
    self.streams = MayChuStream(
      generator: generators.first?.generator ?? TokenGenerator { (_: String) in [String]() },
      tocDoToken: streaming.tocDoToken,
      toiDaClient: streaming.toiDaClient,
      timeout: streaming.timeout,
      toiDaMoiClient: streaming.toiDaMoiClient
    )
    let rate = configuration.rateLimit
    self.limiter = BoGioiHanTocDo(
      goiY: rate.goiY,
      cuaSo: rate.cuaSo,
      kichThuocBurst: rate.kichThuocBurst,
      cheDo: rate.cheDo
    )
    self.metrics = ServingMetrics(
      registry: configuration.metricsRegistry ?? PrometheusCollectorRegistry(),
      models: models,
      streams: streams,
      limiter: limiter
    )
  }

  // MARK: Lifecycle

  func start() throws(VietnameseAIError) {
    for model in modelOrder { try model.start() }
  }

  /// Whether the server is shutting down: the doors refuse new work and say they are not
  /// ready.
  var isDraining: Bool { draining.load(ordering: .relaxed) }

  /// Whether every model can serve now (see ``ServedModel/isReady``).
  var allModelsReady: Bool { modelOrder.allSatisfy { $0.isReady() } }

  /// Marks the server as shutting down.
  func beginDraining() {
    draining.store(true, ordering: .relaxed)
  }

  /// Stops every batcher; each answers what it still has queued first.
  func stop() async {
    for model in modelOrder { await model.stop() }
  }

  // MARK: Routing

  /// The model served as `name`.
  func model(named name: String) -> Result<ServedModel, ServingError> {
    if let model = models[name] { return .success(model) }
    return .failure(unroutable(model: name))
  }

  private func unroutable(model name: String) -> ServingError {
    if name.isEmpty { return ServingError(.invalidArgument, "a model name is required") }
    return ServingError(.unknownModel, "no model \"\(Self.quoted(name))\"; served: \(modelNames)")
  }

  /// The generator served as `name`; the empty name is the server's default generator.
  func generator(named name: String) -> Result<TokenGenerator, ServingError> {
    if let generator = name.isEmpty ? defaultGenerator : generators[name] { return .success(generator) }
    return .failure(
      ServingError(.unknownModel, "no generator \"\(Self.quoted(name))\"; served: \(generatorNames)")
    )
  }

  /// A name from a request, as it appears in a message: at most 64 bytes of it.
  private static func quoted(_ name: String) -> String {
    name.truncated(toUTF8Bytes: 64)
  }

  // MARK: Rate limit

  /// Takes `cost` from `client`'s allowance, or says why not: ``ServingError/Code/rateLimited``
  /// with when to retry, or ``ServingError/Code/invalidArgument`` for a cost above the
  /// limit's capacity, which no wait would let through.
  func charge(_ client: String, cost: Int) -> ServingError? {
    let decision = limiter.kiemTra(client, cost: cost)
    if decision.choPhep { return nil }
    guard let retryAfter = decision.retryAfter else {
      return ServingError(
        .invalidArgument,
        "a request costing \(cost) can never pass a rate limit whose burst is \(limiter.kichThuocBurst); split it"
      )
    }
    return rateLimited(client, retryAfter: retryAfter)
  }

  /// Takes `count` requests of cost 1 from `client`'s allowance, in order: the first `allowed`
  /// may go ahead, the others are refused with `refusal`.
  func chargeEach(_ client: String, count: Int) -> (allowed: Int, refusal: ServingError?) {
    let decision = limiter.choPhep(client, soYeuCau: count)
    if decision.allowed == count { return (count, nil) }
    return (decision.allowed, rateLimited(client, retryAfter: decision.retryAfter ?? .zero))
  }

  private func rateLimited(_ client: String, retryAfter: Duration) -> ServingError {
    ServingError(
      .rateLimited,
      "rate limit exceeded for client \(client): \(limiter.goiY) requests per \(limiter.cuaSo)",
      retryAfter: retryAfter
    )
  }

  // MARK: Predicts

  /// Routes, rate-limits and queues the predicts a front door read together for `client`,
  /// through the door's sinks, whose receivers get the answers.
  ///
  /// Each predict is reported once, synchronously, in the list's order within each kind:
  /// `accepted` with its ticket, or `refused` with why. An accepted predict may still be
  /// refused by its model (a full queue), and is then answered through its sink like any
  /// outcome, possibly before `accepted` reports it.
  func submitPredicts(
    _ predicts: [PredictRequest],
    client: String,
    sinks: inout PredictSinks,
    accepted: (UInt32, ModelTicket) -> Void,
    refused: (UInt32, ServingError) -> Void
  ) {
    guard !predicts.isEmpty else { return }
    // Predicts of a read mostly name one model: one lookup per run of the same name.
    var route = RouteCache(core: self)
    var routable = 0
    for index in predicts.indices where route.model(predicts[index].model) != nil { routable += 1 }
    let (allowed, limited) = routable > 0 ? chargeEach(client, count: routable) : (0, nil)
    if routable == predicts.count && limited == nil {
      submitRuns(
        predicts[...],
        route: &route,
        sinks: &sinks,
        accepted: accepted,
        refused: refused
      )
      return
    }
    var admitted: [PredictRequest] = []
    admitted.reserveCapacity(allowed)
    var seen = 0
    for index in predicts.indices {
      let predict = predicts[index]
      if route.model(predict.model) == nil {
        refused(predict.id, unroutable(model: predict.model))
      } else if seen < allowed {
        seen += 1
        admitted.append(predict)
      } else if let limited {
        refused(predict.id, limited)
      }
    }
    submitRuns(
      admitted[...],
      route: &route,
      sinks: &sinks,
      accepted: accepted,
      refused: refused
    )
  }

  /// Hands each run of routable predicts for one model to that model's sink, in one call.
  private func submitRuns(
    _ predicts: ArraySlice<PredictRequest>,
    route: inout RouteCache,
    sinks: inout PredictSinks,
    accepted: (UInt32, ModelTicket) -> Void,
    refused: (UInt32, ServingError) -> Void
  ) {
    var start = predicts.startIndex
    while start < predicts.endIndex {
      let name = predicts[start].model
      var end = start + 1
      while end < predicts.endIndex && predicts[end].model == name { end += 1 }
      guard let model = route.model(name) else { return }  // routable by construction
      guard let sink = sinks.sink(for: model) else {
        for index in start..<end {
          refused(predicts[index].id, ServingError(.unavailable, "the connection is gone"))
        }
        start = end
        continue
      }
      let submitted = sink.submitAll(predicts[start..<end])
      // The predicts whose input the model took have the tickets, in order.
      var tickets = submitted.tickets.makeIterator()
      var rejected = submitted.refused.makeIterator()
      var nextRejected = rejected.next()
      for index in start..<end {
        if let (position, error) = nextRejected, position == index - start {
          nextRejected = rejected.next()
          refused(predicts[index].id, ServingError(error))
        } else if let ticket = tickets.next() {
          accepted(predicts[index].id, ModelTicket(model: model, ticket: ticket))
        }
      }
      start = end
    }
  }

  /// The model of the last name looked up, so that a run of predicts for one model costs one
  /// dictionary lookup.
  private struct RouteCache {
    let core: ServingCore
    var name: String?
    var found: ServedModel?

    mutating func model(_ name: String) -> ServedModel? {
      if name == self.name { return found }
      self.name = name
      found = core.models[name]
      return found
    }
  }

  // MARK: Batch predicts

  /// Routes, rate-limits (one unit per input) and queues a batch predict for `client`.
  ///
  /// - Returns: The work's ticket; `completion` then receives the outputs in the order of the
  ///   inputs, or the error, exactly once (possibly before this returns). A refusal is
  ///   returned instead, and `completion` is not called.
  func batchPredict(
    model name: String,
    inputs: [ByteBuffer],
    deadline: Duration?,
    client: String,
    lane: BatchLanes.Lane? = nil,
    completion: @escaping @Sendable (Result<[ByteBuffer], ServingError>) -> Void
  ) -> Result<ModelTicket, ServingError> {
    let model: ServedModel
    switch self.model(named: name) {
    case .success(let found): model = found
    case .failure(let error): return .failure(error)
    }
    if inputs.count > model.queueCapacity {
      return .failure(
        ServingError(
          .invalidArgument,
          "a batch of \(inputs.count) inputs can never fit the queue of model \(name), which holds \(model.queueCapacity)"
        )
      )
    }
    if let refusal = charge(client, cost: Admission.cost(inputs: inputs.count)) { return .failure(refusal) }
    do {
      let ticket = try model.submitBatch(inputs, deadline, lane) {
        completion($0.mapError(ServingError.init))
      }
      return .success(ModelTicket(model: model, ticket: ticket))
    } catch {
      return .failure(ServingError(error))
    }
  }

  /// ``batchPredict(model:inputs:deadline:client:completion:)`` for a caller that awaits:
  /// cancelling the calling task, or `work`, withdraws the work.
  func predict(
    model name: String,
    inputs: [ByteBuffer],
    deadline: Duration?,
    client: String,
    lane: BatchLanes.Lane? = nil,
    work: CancellableWork = CancellableWork()
  ) async throws(ServingError) -> [ByteBuffer] {
    let result = await withTaskCancellationHandler {
      await withCheckedContinuation {
        (continuation: CheckedContinuation<Result<[ByteBuffer], ServingError>, Never>) in
        let started = batchPredict(
          model: name,
          inputs: inputs,
          deadline: deadline,
          client: client,
          lane: lane
        ) {
          continuation.resume(returning: $0)
        }
        switch started {
        case .success(let ticket): work.attach(ticket)
        case .failure(let refusal): continuation.resume(returning: .failure(refusal))
        }
      }
    } onCancel: {
      work.cancel()
    }
    return try result.get()
  }

  // MARK: Streams

  /// Routes, rate-limits and admits a stream for `client`.
  ///
  /// - Parameters:
  ///   - pullable: Whether the door can pull a plain-sequence generator itself
  ///     (``OpenedStream/pulled(_:)``); otherwise, or for an asynchronous generator, the
  ///     generator runs as a task that calls `onToken`, then `onEnd` once.
  ///   - executor: Where such a task prefers to run.
  /// - Returns: The stream, or why it may not start (`onEnd` is not called then).
  func openStream(
    generator name: String,
    prompt: String,
    deadline: Duration?,
    client: String,
    pullable: Bool,
    executor: (any TaskExecutor)?,
    onToken: @escaping @Sendable (String) async throws -> Void,
    onEnd: @escaping @Sendable (Result<Void, ServingError>) -> Void
  ) -> Result<OpenedStream, ServingError> {
    let generator: TokenGenerator
    switch self.generator(named: name) {
    case .success(let found): generator = found
    case .failure(let error): return .failure(error)
    }
    if let refusal = charge(client, cost: 1) { return .failure(refusal) }
    if pullable, configuration.generatorsRunOnEventLoops, let makeTokens = generator.makeTokens {
      let slot: StreamSlot
      switch streams.admit(clientID: client) {
      case .success(let admitted): slot = admitted
      case .failure(let refusal): return .failure(ServingError(refusal))
      }
      do {
        let tokens = try makeTokens(prompt)
        return .success(
          .pulled(
            PulledTokens(
              slot: slot,
              tokens: tokens,
              pace: streams.tocDoToken,
              limit: MayChuStream.limit(timeout: streams.timeout, deadline: deadline)
            )
          )
        )
      } catch {
        // The slot reports the generator's failure as the stream server's own error.
        guard case .failure(let reported)? = slot.finish(.failure(error)) else {
          return .failure(ServingError(error))
        }
        return .failure(ServingError(reported))
      }
    }
    let start = {
      self.streams.start(
        prompt,
        clientID: client,
        generator: generator,
        executor: executor,
        deadline: deadline,
        onToken: onToken,
        onEnd: { onEnd($0.mapError(ServingError.init)) }
      )
    }
    // The generator's task inherits the limits, for a generator that honours them itself;
    // a stream without any binds none.
    let started: Result<PhienStream, VietnameseAIError>
    if GenerationLimits.current == nil, deadline == nil {
      started = start()
    } else {
      var limits = GenerationLimits.current ?? GenerationLimits()
      if let deadline, limits.deadline == nil { limits.deadline = ContinuousClock.now + deadline }
      started = GenerationLimits.$current.withValue(limits, operation: start)
    }
    return started.map(OpenedStream.task).mapError(ServingError.init)
  }

  // MARK: Statistics

  /// The statistics document, for `client`, who pays for it like any request.
  func statistics(client: String) -> Result<String, ServingError> {
    if let refusal = charge(client, cost: 1) { return .failure(refusal) }
    return .success(statisticsJSON())
  }

  /// The statistics document (see ``StatisticsDocument``).
  func statisticsJSON() -> String {
    StatisticsDocument(
      primaryModel: modelOrder.first,
      models: modelOrder,
      stream: streams.layThongKe(),
      rateLimit: limiter.layThongKe()
    ).json()
  }
}
