import Logging
import NIOCore
import VietnameseAI
import VietnameseAIWire

/// One client connection of the binary protocol: it decodes frames, feeds them to its
/// ``StateMachine``, and carries out what the state machine decides, calling the
/// ``ServingCore`` for the work itself.
///
/// Everything here runs on the connection's event loop. Work leaves it only where it must (a
/// model's batch, an asynchronous generator) and comes back through `eventLoop.execute`.
/// Plain-sequence generators are pulled here, in turns (``PulledStreamScheduler``). Answers are
/// gathered in a ``FrameWriter`` and flushed once per read burst or event-loop tick, so a burst
/// of pipelined requests is answered with few writes.
///
/// Backpressure: the handler stops asking for reads while the channel is not writable, and
/// stream generators wait on an ``OutboundGate`` that follows the channel's writability, so a
/// client that reads slowly costs the server a bounded buffer.
final class BinaryConnectionHandler: ChannelDuplexHandler {
  typealias InboundIn = ByteBuffer
  typealias OutboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  /// What the connection keeps to stop a request's work.
  enum Work {
    case model(ModelTicket)
    case stream(PhienStream)
    case pulled(PulledStream)
  }

  private var state: StateMachine<Work>
  private let core: ServingCore
  private let registry: ConnectionRegistry
  private var logger: Logger
  private var reader: FrameReader
  private var writer: FrameWriter
  /// The predicts of the current read, submitted together at its end. Empty between reads.
  private var gathered: [PredictRequest] = []
  private var sinks = PredictSinks()
  private let gate = OutboundGate()
  /// Lets pulled streams and token drains wait for the loop's next poll for I/O; `nil` runs
  /// every generator as a task and drains tokens at once.
  private let yield: PollYield?
  private var scheduler: PulledStreamScheduler?
  /// This connection's loop's lane in the batchers.
  private let lane: BatchLanes.Lane
  private var context: ChannelHandlerContext?
  private var bound: NIOLoopBound<BinaryConnectionHandler>?
  private var registered = false
  private var readHeld = false
  private var handshakeTimer: Scheduled<Void>?
  /// Looks for idleness once per idle timeout (not per frame: reads only stamp the time).
  private var idleTimer: Scheduled<Void>?

  init(
    core: ServingCore,
    registry: ConnectionRegistry,
    yield: PollYield?,
    lane: BatchLanes.Lane,
    logger: Logger
  ) {
    registry.handlerCreated()
    let configuration = core.configuration
    self.state = StateMachine(
      configuration: StateMachine.Configuration(
        admission: core.admission,
        identities: core.identities,
        maxFrameSize: configuration.maxFrameSize,
        allowsCompression: configuration.allowsCompression,
        handshakeTimeout: configuration.handshakeTimeout,
        idleTimeout: configuration.idleTimeout
      )
    )
    self.core = core
    self.registry = registry
    self.yield = yield
    self.lane = lane
    self.logger = logger
    self.reader = FrameReader(decoder: FrameDecoder(role: .server, maxPayloadSize: WireProtocol.maxHelloSize))
    // Until HELLO says otherwise, the client accepts the protocol's default frame size.
    self.writer = FrameWriter(
      encoder: FrameEncoder(compressionThreshold: configuration.compressionThreshold),
      maxPayloadSize: WireProtocol.defaultMaxFrameSize
    )
  }

  deinit {
    registry.handlerReleased()
  }

  // MARK: Channel events

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
    self.bound = bound
    self.sinks = PredictSinks(make: Self.makeSinkMaker(bound: bound, loop: context.eventLoop, lane: lane))
    if let yield {
      scheduler = PulledStreamScheduler(
        loop: context.eventLoop,
        yield: yield,
        onTurn: { bound.value.runPulledTurn() },
        onLimit: { stream in
          guard let limit = stream.limit else { return }
          bound.value.endPulled(stream, with: .failure(limit.error))
        }
      )
    }
    if context.channel.isActive { start(context: context) }
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    // The handler holds its context, a loop-bound reference to itself and sinks whose
    // receivers hold that reference: all point back at it, so they are let go here, or every
    // closed connection would be kept alive.
    handshakeTimer?.cancel()
    idleTimer?.cancel()
    self.context = nil
    self.bound = nil
    self.scheduler = nil
    self.sinks.removeAll()
  }

  func channelActive(context: ChannelHandlerContext) {
    start(context: context)
    context.fireChannelActive()
  }

  private func start(context: ChannelHandlerContext) {
    guard !registered, let bound else { return }
    registered = true
    logger[metadataKey: "peer"] = "\(context.channel.remoteAddress.map { "\($0)" } ?? "?")"
    let admission = registry.add(bound, id: ObjectIdentifier(context.channel), on: context.eventLoop)
    perform(state.connectionOpened(admission, peerAddress: context.channel.remoteAddress?.ipAddress))
  }

  func channelInactive(context: ChannelHandlerContext) {
    handshakeTimer?.cancel()
    idleTimer?.cancel()
    if registered { registry.remove(id: ObjectIdentifier(context.channel)) }
    gate.close()
    scheduler?.stopAll()
    // The client is gone: nobody waits for these answers, so the queues and streams let go.
    let abandoned = state.channelClosed()
    for work in abandoned { cancel(work) }
    if !abandoned.isEmpty {
      logger.debug("connection closed with requests in flight", metadata: ["cancelled": "\(abandoned.count)"])
    }
    context.fireChannelInactive()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    if state.tracksReads { state.readReceived(at: .now()) }
    writer.beginReadBurst()
    reader.append(unwrapInboundIn(data))
    do {
      while state.phase != .closed, let next = try reader.next() {
        switch next {
        case .frame(let frame):
          if case .predict(let predict) = frame.message {
            switch state.predictReceived(frame.requestID) {
            case .gather:
              gathered.append(
                PredictRequest(
                  id: frame.requestID,
                  model: predict.model,
                  input: predict.input,
                  deadlineMilliseconds: predict.deadlineMilliseconds
                )
              )
            case let action:
              perform(action)
            }
          } else {
            submitGathered()
            perform(state.received(frame))
          }
        case .token(let id, let token):
          // A server's decoder never yields tokens; the state machine refuses one all the same.
          submitGathered()
          perform(state.received(WireFrame(requestID: id, message: .token(token))))
        case .refused(let error):
          submitGathered()
          perform(state.refusedByDecoder(error))
        }
      }
    } catch {
      perform(state.fail(error))
    }
    submitGathered()
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    if let bytes = writer.endReadBurst() { context.writeAndFlush(wrapOutboundOut(bytes), promise: nil) }
    context.fireChannelReadComplete()
  }

  func read(context: ChannelHandlerContext) {
    // Reading more requests while the client does not read its answers would only grow the
    // outbound buffer; wait until the channel drains.
    if context.channel.isWritable {
      context.read()
    } else {
      readHeld = true
    }
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    let writable = context.channel.isWritable
    gate.setWritable(writable)
    if writable && readHeld {
      readHeld = false
      context.read()
    }
    scheduler?.resume(writable: writable)
    context.fireChannelWritabilityChanged()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    logger.debug("connection error", metadata: ["error": "\(error)"])
    close()
  }

  // MARK: Actions

  private func perform(_ action: StateMachine<Work>.Action) {
    switch action {
    case .none, .gather:
      break
    case .write(let frame):
      send(frame)
    case .close(let frame):
      if let frame { send(frame) }
      if case .error(let info)? = frame?.message {
        logger.debug(
          "closing connection",
          metadata: ["status": "\(info.code.name)", "reason": "\(info.message)"]
        )
      }
      close()
    case .awaitHello(let timeout):
      handshakeTimer = context?.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) { [self] in
        perform(state.handshakeTimedOut())
      }
    case .welcome(let handshake):
      completeHandshake(handshake)
    case .startBatch(let id, let request):
      startBatch(id, request)
    case .openStream(let id, let request):
      openStream(id, request)
    case .answerStatistics(let id):
      answerStatistics(id)
    case .cancel(let work):
      cancel(work)
    case .checkIdle(let deadline):
      scheduleIdleCheck(at: deadline)
    }
  }

  private func completeHandshake(_ handshake: StateMachine<Work>.Handshake) {
    handshakeTimer?.cancel()
    handshakeTimer = nil
    send(WireFrame(requestID: 0, message: .welcome(handshake.welcome)))
    if handshake.compression {
      writer.encoder.compressor = Zlib.Compressor()
      reader.decoder.decompressor = Zlib.Decompressor()
    }
    writer.maxPayloadSize = handshake.peerMaxFrameSize
    reader.decoder.maxPayloadSize = core.configuration.maxFrameSize
    if let check = handshake.idleCheck { scheduleIdleCheck(at: check) }
    logger[metadataKey: "client"] = "\(state.clientID)"
    logger.debug(
      "handshake complete",
      metadata: ["compression": "\(handshake.compression ? "zlib" : "none")"]
    )
  }

  /// Submits the predicts gathered from this read: one rate-limit decision, and one call per
  /// model, for all of them.
  private func submitGathered() {
    guard !gathered.isEmpty else { return }
    // The list is used in place and emptied at the end, keeping its storage for the next read.
    defer { gathered.removeAll(keepingCapacity: true) }
    // A connection that failed while reading is closing: its requests were abandoned.
    guard state.phase != .closed else { return }
    submitPredicts(gathered, verdict: nil)
  }

  private func submitPredicts(_ predicts: [PredictRequest], verdict: LimitVerdict?) {
    let later = core.submitPredicts(
      predicts,
      client: state.clientID,
      verdict: verdict,
      sinks: &sinks,
      accepted: { id, ticket in state.workStarted(id, .model(ticket)) },
      refused: { id, error in finish(id, .failure(error)) }
    )
    if let later {
      whenDecided(later) { handler, verdict in handler.submitPredicts(predicts, verdict: verdict) }
    }
  }

  /// Calls `resume` with the rate-limit verdict `later` brings, on this connection's loop,
  /// unless the connection closed meanwhile (its requests were abandoned with it). The
  /// requests stay in flight until then, so a draining server waits for them.
  private func whenDecided(
    _ later: EventLoopFuture<LimitVerdict>,
    _ resume: @escaping @Sendable (BinaryConnectionHandler, LimitVerdict) -> Void
  ) {
    guard let bound, let loop = context?.eventLoop else { return }
    later.hop(to: loop).whenComplete { result in
      let handler = bound.value
      guard handler.state.phase != .closed else { return }
      resume(handler, LimitVerdict(result))
    }
  }

  private func answerStatistics(_ id: UInt32, verdict: LimitVerdict? = nil) {
    switch core.statistics(client: state.clientID, verdict: verdict) {
    case .started(let json): finish(id, .statistics(json: json))
    case .refused(let refusal): finish(id, .failure(refusal))
    case .awaitingLimit(let later):
      whenDecided(later) { handler, verdict in handler.answerStatistics(id, verdict: verdict) }
    }
  }

  /// What makes this connection's sink for a model. A batch hands a sink all of its answers
  /// for this connection at once; those of a batch that ran on another loop cost one hop.
  private static func makeSinkMaker(
    bound: NIOLoopBound<BinaryConnectionHandler>,
    loop: any EventLoop,
    lane: BatchLanes.Lane
  ) -> (ServedModel) -> ServedModel.Sink {
    { model in
      model.makeSink(lane.index, lane.executor) { answers in
        if loop.inEventLoop {
          bound.value.finish(answers)
        } else {
          loop.execute { bound.value.finish(answers) }
        }
      }
    }
  }

  private func finish(_ answers: [ServedModel.Answer]) {
    for index in answers.indices {
      switch answers[index].result {
      case .success(let output): finish(answers[index].tag, .result(output))
      case .failure(let error): finish(answers[index].tag, .failure(ServingError(error)))
      }
    }
  }

  private func startBatch(_ id: UInt32, _ request: WireMessage.BatchPredict, verdict: LimitVerdict? = nil) {
    guard let bound, let loop = context?.eventLoop else { return }
    let started = core.batchPredict(
      model: request.model,
      inputs: request.inputs,
      deadline: WireProtocol.deadline(milliseconds: request.deadlineMilliseconds),
      client: state.clientID,
      lane: lane,
      verdict: verdict
    ) { result in
      let outcome: StateMachine<Work>.Outcome
      switch result {
      case .success(let outputs): outcome = .batchResult(outputs)
      case .failure(let error): outcome = .failure(error)
      }
      if loop.inEventLoop {
        bound.value.finish(id, outcome)
      } else {
        loop.execute { bound.value.finish(id, outcome) }
      }
    }
    switch started {
    case .started(let ticket): state.workStarted(id, .model(ticket))
    case .refused(let refusal): finish(id, .failure(refusal))
    case .awaitingLimit(let later):
      whenDecided(later) { handler, verdict in handler.startBatch(id, request, verdict: verdict) }
    }
  }

  private func openStream(_ id: UInt32, _ request: WireMessage.StreamOpen, verdict: LimitVerdict? = nil) {
    guard let bound, let loop = context?.eventLoop else { return }
    let gate = self.gate
    let opened = core.openStream(
      generator: request.model,
      prompt: request.prompt,
      deadline: WireProtocol.deadline(milliseconds: request.deadlineMilliseconds),
      client: state.clientID,
      verdict: verdict,
      pullable: scheduler != nil,
      executor: GeneratorExecutor.shared,
      onToken: { token in
        if try await gate.push(token, id: id) {
          loop.execute { bound.value.writePendingTokensAfterPoll() }
        }
      },
      onEnd: { result in
        loop.execute { bound.value.streamEnded(id, result) }
      }
    )
    switch opened {
    case .started(.task(let stream)):
      state.workStarted(id, .stream(stream))
    case .started(.pulled(let source)):
      let stream = PulledStream(id: id, source: source)
      state.workStarted(id, .pulled(stream))
      scheduler?.start(stream)
    case .refused(let refusal):
      finish(id, .failure(refusal))
    case .awaitingLimit(let later):
      whenDecided(later) { handler, verdict in handler.openStream(id, request, verdict: verdict) }
    }
  }

  /// A stream's task ended. Its last tokens may still wait in the gate: they go before its end.
  private func streamEnded(_ id: UInt32, _ result: Result<Void, ServingError>) {
    writePendingTokens()
    switch result {
    case .success: finish(id, .streamEnd)
    case .failure(let error): finish(id, .failure(error))
    }
  }

  /// Stops `work`; it reports back through ``finish(_:_:)``.
  private func cancel(_ work: Work) {
    switch work {
    case .model(let ticket): ticket.cancel()
    case .stream(let stream): stream.huy()
    case .pulled(let stream): endPulled(stream, with: .failure(CancellationError()))
    }
  }

  /// Hands a request's outcome to the state machine and carries out its answer.
  private func finish(_ id: UInt32, _ outcome: StateMachine<Work>.Outcome) {
    perform(state.requestFinished(id, outcome))
  }

  // MARK: Pulled streams

  /// Gives every runnable pulled stream its tokens for this turn, then flushes.
  private func runPulledTurn() {
    guard state.phase != .closed, let context, context.channel.isWritable, let scheduler else { return }
    scheduler.runTurn(
      write: { stream, limit in
        let (sent, run) = writer.appendTokens(requestID: stream.id, limit: limit) { stream.next() }
        return (sent, run, writer.pendingBytes)
      },
      report: { stream, sent, end in
        if sent > 0 { _ = state.tokensWritten(stream.id, count: sent) }
        switch end {
        case nil: break
        case .exhausted: endPulled(stream, with: .success(()))
        case .refused(let error): perform(state.tokenRefused(stream.id, error))
        }
      }
    )
    flush()
    scheduler.resume(writable: context.channel.isWritable)
  }

  /// Ends a pulled stream (its tokens ran out, its limit passed, it was cancelled) and
  /// reports its outcome.
  private func endPulled(_ stream: PulledStream, with result: Result<Void, any Error>) {
    switch stream.end(result) {
    case nil: break
    case .success?: finish(stream.id, .streamEnd)
    case .failure(let error)?: finish(stream.id, .failure(ServingError(error)))
    }
  }

  // MARK: Tokens of streams that run as tasks

  /// Writes the tokens generators have queued, once the loop has polled for I/O.
  ///
  /// Taking the tokens frees their slots in the gate, and a generator on another thread refills
  /// them at once. Taken within the tick, a refill can queue the next drain before the loop
  /// gets to poll, and a generator faster than the loop then keeps it from reading (other
  /// requests, a `CANCEL`, a new connection's handshake) for long stretches; after the poll,
  /// every drain lets the loop read first.
  private func writePendingTokensAfterPoll() {
    guard let bound, let yield else { return writePendingTokens() }
    yield.afterNextPoll { bound.value.writePendingTokens() }
  }

  /// Writes the tokens generators have queued since the last call, in the order they came.
  private func writePendingTokens() {
    var wrote = false
    for (id, token) in gate.takePending() {
      // Nothing to write if the stream was answered already (deadline, shutdown).
      guard state.tokenWritten(id) else { continue }
      do {
        try writer.appendToken(token, requestID: id)
        wrote = true
      } catch {
        perform(state.tokenRefused(id, error))
      }
    }
    if wrote { scheduleFlush() }
  }

  // MARK: Timers and shutdown

  private func scheduleIdleCheck(at deadline: NIODeadline) {
    idleTimer = context?.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
      perform(state.idleTimerFired(now: .now()))
    }
  }

  /// Starts a graceful close: `GOAWAY`, then close once every request in flight is answered.
  func beginDrain() {
    perform(state.drain())
  }

  /// Ends the connection now, answering every request still in flight `UNAVAILABLE`.
  func closeNow() {
    guard let shutdown = state.closeNow() else { return }
    for work in shutdown.cancel { cancel(work) }
    for answer in shutdown.answers { send(answer) }
    close()
  }

  private func close() {
    guard let context else { return }
    flush()
    context.close(promise: nil)
  }

  // MARK: Output

  private func send(_ frame: WireFrame) {
    do {
      try writer.append(frame)
    } catch {
      // An answer larger than the client accepts: the request still gets its one answer.
      guard let substitute = StateMachine<Work>.substitute(for: frame, refusedWith: error) else {
        logger.error("a connection frame could not be encoded", metadata: ["error": "\(error)"])
        return close()
      }
      try? writer.append(substitute)
    }
    scheduleFlush()
  }

  /// Flushes at the end of the read burst, or at the end of this event-loop tick when the
  /// answer came from elsewhere, so that answers finishing together leave together.
  private func scheduleFlush() {
    guard writer.claimFlush(), let loop = context?.eventLoop else { return }
    loop.assumeIsolated().execute { [self] in flush() }
  }

  private func flush() {
    guard let context, let bytes = writer.takeForFlush() else { return }
    context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
  }
}

@available(*, unavailable)
extension BinaryConnectionHandler: Sendable {}
