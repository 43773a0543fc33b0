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
  /// The limit shared with other servers, if any; ``limiter`` then decides only when the
  /// shared store cannot be reached.
  let sharedLimit: SharedRateLimit?
  /// Tokens per window per client, for streams, if configured.
  let tokenLimit: TokenLimit?
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

  /// - Parameter sharedLimit: Makes the shared limit from the server's own limiter, which it
  ///   falls back on.
  init(
    configuration: RPCServer.Configuration,
    models: [ServedModel],
    generators: [ServedGenerator],
    sharedLimit: ((BoGioiHanTocDo) -> SharedRateLimit)? = nil,
    tokenLimit: TokenLimit? = nil
  ) {
    self.tokenLimit = tokenLimit
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
    self.sharedLimit = sharedLimit?(limiter)
    self.metrics = ServingMetrics(
      registry: configuration.metricsRegistry ?? PrometheusCollectorRegistry(),
      models: models,
      streams: streams,
      limiter: limiter,
      sharedLimit: self.sharedLimit
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

  /// Decides `count` requests of `cost` each from `client`, in order: at once, or once a lease
  /// from the shared store comes.
  func reserve(_ client: String, cost: Int, count: Int) -> LimitReservation {
    if let sharedLimit { return sharedLimit.reserve(client, cost: cost, count: count) }
    return .decided(limiter.verdict(client, cost: cost, count: count))
  }

  /// Decides a stream of `client` for `prompt`: the rate limit, then the token limit.
  func reserveStream(_ client: String, prompt: String) -> LimitReservation {
    let rate = reserve(client, cost: 1, count: 1)
    guard let tokenLimit else { return rate }
    let promptTokens = Self.promptTokens(prompt)
    switch rate {
    case .decided(let verdict):
      return verdict.allowed == 1 ? tokenLimit.reserve(client, prompt: promptTokens) : rate
    case .pending(let later):
      return .pending(
        later.flatMap { verdict in
          guard verdict.allowed == 1 else { return later.eventLoop.makeSucceededFuture(verdict) }
          switch tokenLimit.reserve(client, prompt: promptTokens) {
          case .decided(let verdict): return later.eventLoop.makeSucceededFuture(verdict)
          case .pending(let tokens): return tokens
          }
        }
      )
    }
  }

  /// `verdict`, or a fresh decision on one request of `cost` (by `reservation`, if given):
  /// `nil` if it may go, else the refusal or the decision to wait for.
  private func charge(
    _ client: String,
    cost: Int,
    verdict: LimitVerdict?,
    reservation: (() -> LimitReservation)? = nil
  ) -> Admitted<Void>? {
    let decided: LimitVerdict
    if let verdict {
      decided = verdict
    } else {
      switch reservation?() ?? reserve(client, cost: cost, count: 1) {
      case .decided(let verdict): decided = verdict
      case .pending(let later): return .awaitingLimit(later)
      }
    }
    guard decided.allowed == 0, let refusal = decided.refusal else { return nil }
    return .refused(self.refusal(refusal, client: client, cost: cost))
  }

  /// Why requests of `cost` from `client` were refused, as the doors answer it.
  func refusal(_ refusal: LimitVerdict.Refusal, client: String, cost: Int) -> ServingError {
    switch refusal {
    case .limited(let retryAfter?):
      return ServingError(
        .rateLimited,
        "rate limit exceeded for client \(client): \(limiter.goiY) requests per \(limiter.cuaSo)",
        retryAfter: retryAfter
      )
    case .limited(nil):
      return ServingError(
        .invalidArgument,
        "a request costing \(cost) can never pass a rate limit whose burst is \(limiter.kichThuocBurst); split it"
      )
    case .overTokens(let retryAfter):
      let limit = tokenLimit.map { "\($0.limit) tokens per \($0.window)" } ?? "tokens"
      return ServingError(
        .rateLimited,
        "token limit exceeded for client \(client): \(limit)",
        retryAfter: retryAfter
      )
    case .storeUnreachable(let message):
      return ServingError(.unavailable, message, retryAfter: .seconds(1))
    }
  }

  // MARK: Predicts

  /// Routes, rate-limits and queues the predicts a front door read together for `client`,
  /// through the door's sinks, whose receivers get the answers.
  ///
  /// Each predict is reported once, synchronously, in the list's order within each kind:
  /// `accepted` with its ticket, or `refused` with why. An accepted predict may still be
  /// refused by its model (a full queue), and is then answered through its sink like any
  /// outcome, possibly before `accepted` reports it.
  ///
  /// - Parameter verdict: The rate-limit decision on the routable predicts, when an earlier
  ///   call returned one to wait for.
  /// - Returns: A decision to wait for, when the client's rate limit is not decided yet; none
  ///   of the predicts was reported then: call again with `verdict` once it comes.
  func submitPredicts(
    _ predicts: [PredictRequest],
    client: String,
    verdict: LimitVerdict? = nil,
    sinks: inout PredictSinks,
    accepted: (UInt32, ModelTicket) -> Void,
    refused: (UInt32, ServingError) -> Void
  ) -> EventLoopFuture<LimitVerdict>? {
    guard !predicts.isEmpty else { return nil }
    // Predicts of a read mostly name one model: one lookup per run of the same name.
    var route = RouteCache(core: self)
    var routable = 0
    for index in predicts.indices where route.model(predicts[index].model) != nil { routable += 1 }
    var decided = verdict ?? .all(0)
    if verdict == nil, routable > 0 {
      switch reserve(client, cost: 1, count: routable) {
      case .decided(let verdict): decided = verdict
      case .pending(let later): return later
      }
    }
    let allowed = decided.allowed
    let limited = decided.refusal.map { refusal($0, client: client, cost: 1) }
    if routable == predicts.count && limited == nil {
      submitRuns(
        predicts[...],
        route: &route,
        sinks: &sinks,
        accepted: accepted,
        refused: refused
      )
      return nil
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
    return nil
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
  ///   inputs, or the error, exactly once (possibly before this returns). A refusal, or a
  ///   rate-limit decision to wait for, is returned instead, and `completion` is not called.
  func batchPredict(
    model name: String,
    inputs: [ByteBuffer],
    deadline: Duration?,
    client: String,
    lane: BatchLanes.Lane? = nil,
    verdict: LimitVerdict? = nil,
    completion: @escaping @Sendable (Result<[ByteBuffer], ServingError>) -> Void
  ) -> Admitted<ModelTicket> {
    let model: ServedModel
    switch self.model(named: name) {
    case .success(let found): model = found
    case .failure(let error): return .refused(error)
    }
    if inputs.count > model.queueCapacity {
      return .refused(
        ServingError(
          .invalidArgument,
          "a batch of \(inputs.count) inputs can never fit the queue of model \(name), which holds \(model.queueCapacity)"
        )
      )
    }
    switch charge(client, cost: Admission.cost(inputs: inputs.count), verdict: verdict) {
    case .refused(let refusal): return .refused(refusal)
    case .awaitingLimit(let later): return .awaitingLimit(later)
    case .started, nil: break
    }
    do {
      let ticket = try model.submitBatch(inputs, deadline, lane) {
        completion($0.mapError(ServingError.init))
      }
      return .started(ModelTicket(model: model, ticket: ticket))
    } catch {
      return .refused(ServingError(error))
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
    enum Step {
      case done(Result<[ByteBuffer], ServingError>)
      case wait(EventLoopFuture<LimitVerdict>)
    }
    var verdict: LimitVerdict?
    while true {
      let step = await withTaskCancellationHandler {
        await withCheckedContinuation { (continuation: CheckedContinuation<Step, Never>) in
          let started = batchPredict(
            model: name,
            inputs: inputs,
            deadline: deadline,
            client: client,
            lane: lane,
            verdict: verdict
          ) {
            continuation.resume(returning: .done($0))
          }
          switch started {
          case .started(let ticket): work.attach(ticket)
          case .refused(let refusal): continuation.resume(returning: .done(.failure(refusal)))
          case .awaitingLimit(let later): continuation.resume(returning: .wait(later))
          }
        }
      } onCancel: {
        work.cancel()
      }
      switch step {
      case .done(let result): return try result.get()
      case .wait(let later): verdict = await LimitVerdict.waited(later)
      }
    }
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
    verdict: LimitVerdict? = nil,
    pullable: Bool,
    executor: (any TaskExecutor)?,
    onToken: @escaping @Sendable (String) async throws -> Void,
    onEnd: @escaping @Sendable (Result<Void, ServingError>) -> Void
  ) -> Admitted<OpenedStream> {
    let generator: TokenGenerator
    switch self.generator(named: name) {
    case .success(let found): generator = found
    case .failure(let error): return .refused(error)
    }
    let reservation = { self.reserveStream(client, prompt: prompt) }
    switch charge(client, cost: 1, verdict: verdict, reservation: reservation) {
    case .refused(let refusal): return .refused(refusal)
    case .awaitingLimit(let later): return .awaitingLimit(later)
    case .started, nil: break
    }
    // A token limit charges the stream's tokens as they are produced.
    let meter = tokenLimit?.meter(client)
    let countedToken: @Sendable (String) async throws -> Void
    let countedEnd: @Sendable (Result<Void, ServingError>) -> Void
    if let meter {
      countedToken = { token in
        meter.produced()
        try await onToken(token)
      }
      countedEnd = { result in
        meter.finish()
        onEnd(result)
      }
    } else {
      (countedToken, countedEnd) = (onToken, onEnd)
    }
    if pullable, configuration.generatorsRunOnEventLoops, let makeTokens = generator.makeTokens {
      let slot: StreamSlot
      switch streams.admit(clientID: client) {
      case .success(let admitted): slot = admitted
      case .failure(let refusal): return .refused(ServingError(refusal))
      }
      do {
        let produced = try makeTokens(prompt)
        let tokens =
          meter.map { meter in
            AnyIterator {
              guard let token = produced.next() else {
                meter.finish()
                return nil
              }
              meter.produced()
              return token
            }
          } ?? produced
        return .started(
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
          return .refused(ServingError(error))
        }
        return .refused(ServingError(reported))
      }
    }
    let start = {
      self.streams.start(
        prompt,
        clientID: client,
        generator: generator,
        executor: executor,
        deadline: deadline,
        onToken: countedToken,
        onEnd: { countedEnd($0.mapError(ServingError.init)) }
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
    switch started {
    case .success(let session): return .started(.task(session))
    case .failure(let error): return .refused(ServingError(error))
    }
  }

  /// What a prompt costs against a token limit: its words, as the OpenAI door counts
  /// `prompt_tokens`.
  static func promptTokens(_ prompt: String) -> Int {
    Syllables(prompt).reduce(0) { count, _ in count + 1 }
  }

  // MARK: Statistics

  /// The statistics document, for `client`, who pays for it like any request.
  func statistics(client: String, verdict: LimitVerdict? = nil) -> Admitted<String> {
    switch charge(client, cost: 1, verdict: verdict) {
    case .refused(let refusal): return .refused(refusal)
    case .awaitingLimit(let later): return .awaitingLimit(later)
    case .started, nil: return .started(statisticsJSON())
    }
  }

  /// The statistics document (see ``StatisticsDocument``).
  func statisticsJSON() -> String {
    StatisticsDocument(
      primaryModel: modelOrder.first,
      models: modelOrder,
      stream: streams.layThongKe(),
      rateLimit: ServingMetrics.limits(limiter, sharedLimit)
    ).json()
  }
}
