import DequeModule
import Logging
import NIOCore
import Synchronization
import VietnameseAI
import VietnameseAIWire

/// One client connection: the handshake, then requests multiplexed by id, each answered exactly
/// once.
///
/// Everything here runs on the connection's event loop. Work leaves it only where it must (a
/// model's batch, an asynchronous generator) and comes back through `eventLoop.execute`;
/// nothing else hops. Plain-sequence generators are pulled here, in turns (``PulledStream``).
/// Answers are gathered in a ``FrameWriter`` and flushed once per read burst or event-loop
/// tick, so a burst of pipelined requests is answered with few writes.
///
/// Backpressure: the handler stops asking for reads while the channel is not writable, and
/// stream generators wait on an ``OutboundGate`` that follows the channel's writability, so a
/// client that reads slowly costs the server a bounded buffer.
final class ServerConnectionHandler: ChannelDuplexHandler {
  typealias InboundIn = ByteBuffer
  typealias OutboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  private enum Phase {
    /// Waiting for `HELLO`.
    case handshake
    case open
    /// `GOAWAY` sent: in-flight requests finish, new ones are refused.
    case draining
    case closed
  }

  /// A request being worked on.
  private struct InFlight {
    enum Work {
      /// A predict read but not yet handed to its model (see ``submitPendingPredicts()``).
      case pending
      case batch(ServedModel, ticket: UInt64)
      /// A generator running as a task; its tokens arrive through the gate.
      case stream(PhienStream)
      /// A plain-sequence generator pulled on this loop.
      case pulled(PulledStream)
    }
    var work: Work
    var tokensSent: UInt32 = 0
    var deadlineTimer: Scheduled<Void>?
    var deadlinePassed = false
  }

  private let core: ServerCore
  private let registry: ConnectionRegistry
  private var logger: Logger
  private var phase = Phase.handshake
  private var reader: FrameReader
  private var writer: FrameWriter
  private var inFlight: [UInt32: InFlight] = [:]
  /// Predicts admitted from the current read but not yet submitted: they are rate-limited and
  /// handed to their batchers together, at the end of the read or before a frame of another
  /// kind. Empty between events.
  private var pendingPredicts: [ServedModel.TaggedPredict] = []
  /// One sink per model this connection sent requests to.
  private var sinks: [(model: ServedModel, sink: ServedModel.Sink)] = []
  private let gate = OutboundGate()
  /// Lets pulled streams continue after the loop's next poll for I/O; `nil` runs every
  /// generator as a task.
  private let yield: PollYield?
  /// This connection's loop's lane in the batchers.
  private let lane: BatchLanes.Lane
  /// Pulled streams whose next tokens are due, in turn order.
  private var runnable = Deque<UInt32>()
  private var pollTurnPending = false
  private var clientID = ""
  private var context: ChannelHandlerContext?
  private var bound: NIOLoopBound<ServerConnectionHandler>?
  private var registered = false
  private var readHeld = false
  private var handshakeTimer: Scheduled<Void>?
  /// Checks for idleness once per idle timeout (not per frame: reads only stamp the time).
  private var idleTimer: Scheduled<Void>?
  private var lastRead = NIODeadline.now()
  /// Calls into the core under way on this handler's stack; see ``intoCore(_:)``.
  private var coreCalls = 0

  init(
    core: ServerCore,
    registry: ConnectionRegistry,
    yield: PollYield?,
    lane: BatchLanes.Lane,
    logger: Logger
  ) {
    core.liveHandlers.add(1, ordering: .relaxed)
    self.core = core
    self.registry = registry
    self.yield = yield
    self.lane = lane
    self.logger = logger
    self.reader = FrameReader(decoder: FrameDecoder(role: .server, maxPayloadSize: WireProtocol.maxHelloSize))
    // Clients do not advertise a limit; answers stay within the server's own, which is the
    // protocol's default unless configured otherwise.
    self.writer = FrameWriter(
      encoder: FrameEncoder(compressionThreshold: core.configuration.compressionThreshold),
      maxPayloadSize: core.configuration.maxFrameSize
    )
  }

  // MARK: Channel events

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    self.bound = NIOLoopBound(self, eventLoop: context.eventLoop)
    if context.channel.isActive { start(context: context) }
  }

  deinit {
    core.liveHandlers.subtract(1, ordering: .relaxed)
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    // The handler holds its context and a loop-bound reference to itself; both point back
    // at it, so they are let go here, or every closed connection would be kept alive.
    handshakeTimer?.cancel()
    idleTimer?.cancel()
    self.context = nil
    self.bound = nil
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
    switch registry.add(bound, id: ObjectIdentifier(context.channel), on: context.eventLoop) {
    case .accepted:
      let timeout = TimeAmount(core.configuration.handshakeTimeout)
      handshakeTimer = context.eventLoop.scheduleTask(in: timeout) { [bound] in
        bound.value.handshakeTimedOut()
      }
    case .full:
      fail(
        WireError(
          code: .resourceExhausted,
          message: "the server holds its maximum of \(registry.limit) connections",
          closesConnection: true
        )
      )
    case .draining:
      send(.goAway(WireMessage.GoAway(code: .unavailable, message: "server is shutting down")), id: 0)
      close()
    }
  }

  func channelInactive(context: ChannelHandlerContext) {
    phase = .closed
    handshakeTimer?.cancel()
    idleTimer?.cancel()
    if registered { registry.remove(id: ObjectIdentifier(context.channel)) }
    gate.close()
    // The client is gone: nobody waits for these answers, so free the queue and the streams.
    let abandoned = inFlight
    inFlight.removeAll()
    pendingPredicts.removeAll()
    for entry in abandoned.values { cancelWork(of: entry) }
    if !abandoned.isEmpty {
      logger.debug("connection closed with requests in flight", metadata: ["cancelled": "\(abandoned.count)"])
    }
    context.fireChannelInactive()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard phase != .closed else { return }
    if idleTimer != nil { lastRead = .now() }
    writer.beginReadBurst()
    reader.append(unwrapInboundIn(data))
    do {
      while phase != .closed, let next = try reader.next() {
        switch next {
        case .frame(let frame): handle(frame)
        case .token(let id, let token): handle(WireFrame(requestID: id, message: .token(token)))
        case .refused(let error):
          submitPendingPredicts()
          refuseMalformed(error)
        }
      }
    } catch {
      fail(error)
    }
    submitPendingPredicts()
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
    if writable && !runnable.isEmpty { runTurn() }
    context.fireChannelWritabilityChanged()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    logger.debug("connection error", metadata: ["error": "\(error)"])
    close()
  }

  // MARK: Frames

  private func handle(_ frame: WireFrame) {
    let id = frame.requestID
    if phase == .handshake {
      guard case .hello(let hello) = frame.message else {
        return fail(.protocolViolation("expected HELLO first, got \(frame.message.type.name)"))
      }
      return handshake(hello)
    }
    if case .predict(let request) = frame.message {
      guard admitPredict(id) else { return }
      pendingPredicts.append(ServedModel.TaggedPredict(id: id, request: request))
      return
    }
    submitPendingPredicts()
    switch frame.message {
    case .predict:
      break  // gathered above
    case .batchPredict(let request):
      guard admit(id) else { return }
      batchPredict(request, id: id)
    case .streamOpen(let request):
      guard admit(id) else { return }
      openStream(request, id: id)
    case .statsRequest:
      guard admit(id) else { return }
      send(.stats(json: core.statisticsJSON()), id: id)
    case .cancel:
      // An id not in flight may have crossed its answer on the wire: ignore it.
      cancel(id)
    case .ping(let value):
      send(.pong(value), id: 0)
    case .pong:
      break
    case .hello:
      fail(.protocolViolation("a second HELLO"))
    case .welcome, .result, .batchResult, .token, .streamEnd, .stats, .error, .goAway:
      // The decoder refuses server-to-client types from a client.
      fail(.protocolViolation("\(frame.message.type.name) is not sent by clients"))
    }
  }

  private func handshake(_ hello: WireMessage.Hello) {
    handshakeTimer?.cancel()
    handshakeTimer = nil
    guard hello.versions.contains(WireProtocol.version) else {
      let offered = hello.versions.map(String.init).joined(separator: ", ")
      return fail(
        WireError(
          code: .unsupportedVersion,
          message:
            "this server speaks protocol version \(WireProtocol.version); the client offered [\(offered)]",
          closesConnection: true
        )
      )
    }
    if core.requiresToken {
      guard let owner = core.clientID(forToken: hello.authToken) else {
        return fail(
          WireError(code: .unauthenticated, message: "missing or unknown auth token", closesConnection: true)
        )
      }
      clientID = owner
    } else if hello.clientID.isEmpty {
      clientID = "addr:\(context?.channel.remoteAddress?.ipAddress ?? "unknown")"
    } else {
      clientID = hello.clientID
    }
    let configuration = core.configuration
    let zlib = configuration.allowsCompression && hello.compressions.contains(WireProtocol.compressionZlib)
    send(
      .welcome(
        WireMessage.Welcome(
          version: WireProtocol.version,
          compression: zlib ? WireProtocol.compressionZlib : WireProtocol.compressionIdentity,
          maxFrameSize: UInt32(configuration.maxFrameSize),
          maxConcurrentRequests: UInt32(configuration.maxConcurrentRequests),
          clientID: clientID
        )
      ),
      id: 0
    )
    if zlib {
      writer.encoder.compressor = Zlib.Compressor()
      reader.decoder.decompressor = Zlib.Decompressor()
    }
    reader.decoder.maxPayloadSize = configuration.maxFrameSize
    phase = .open
    if configuration.idleTimeout > .zero {
      lastRead = .now()
      scheduleIdleCheck(at: lastRead + TimeAmount(configuration.idleTimeout))
    }
    logger[metadataKey: "client"] = "\(clientID)"
    logger.debug("handshake complete", metadata: ["compression": "\(zlib ? "zlib" : "none")"])
  }

  /// Lets a request in, or answers it with the reason it may not run. The rate limit comes
  /// after the checks that cost nothing, and before any work; predicts take it later, all of
  /// a read's together.
  private func admit(_ id: UInt32) -> Bool {
    if inFlight[id] != nil {
      fail(.protocolViolation("request id \(id) is already in flight"))
      return false
    }
    if let refusal = refusal(alreadyInFlight: inFlight.count) ?? core.checkRateLimit(clientID).refusal {
      send(.error(refusal), id: id)
      return false
    }
    return true
  }

  /// ``admit(_:)`` for a predict, which is rate-limited later with the rest of its read:
  /// the check for a duplicate id is the insertion of its entry, one lookup in the table
  /// rather than two.
  private func admitPredict(_ id: UInt32) -> Bool {
    if let previous = inFlight.updateValue(InFlight(work: .pending), forKey: id) {
      inFlight[id] = previous
      fail(.protocolViolation("request id \(id) is already in flight"))
      return false
    }
    if let refusal = refusal(alreadyInFlight: inFlight.count - 1) {
      inFlight[id] = nil
      send(.error(refusal), id: id)
      return false
    }
    return true
  }

  /// Why a new request may not start now, whoever asks: the server is draining, or the
  /// connection has its most requests in flight.
  private func refusal(alreadyInFlight count: Int) -> WireMessage.ErrorInfo? {
    if phase == .draining {
      return WireMessage.ErrorInfo(code: .unavailable, message: "server is shutting down")
    }
    if count >= core.configuration.maxConcurrentRequests {
      return WireMessage.ErrorInfo(
        code: .resourceExhausted,
        message: "\(count) requests in flight, the most this connection may have"
      )
    }
    return nil
  }

  /// A request whose frame was well formed but whose content is not (text that is not UTF-8).
  private func refuseMalformed(_ error: WireError) {
    guard phase != .handshake else { return fail(.protocolViolation(error.message)) }
    let id = error.requestID ?? 0
    if inFlight[id] != nil { return fail(.protocolViolation("request id \(id) is already in flight")) }
    send(.error(WireMessage.ErrorInfo(code: error.code, message: error.message)), id: id)
  }

  // MARK: Work

  /// Rate-limits the predicts gathered from this read with one decision, then hands each
  /// model its run of them in one call, through this connection's sink for the model. Both
  /// the limiter and the batcher are shared by the event loops: one lock each per read,
  /// rather than per request, is what keeps the loops from waiting on each other.
  ///
  /// An answer is handled as in ``enqueue(id:model:answer:submit:)``.
  private func submitPendingPredicts() {
    guard !pendingPredicts.isEmpty else { return }
    // Nothing below reads more frames, so the list is used in place and emptied at the end,
    // keeping its storage for the next read.
    defer { pendingPredicts.removeAll(keepingCapacity: true) }
    // A connection that failed while reading is closing: nobody will read answers.
    guard phase != .closed else { return }
    let (allowed, refusal) = core.checkRateLimit(clientID, requests: pendingPredicts.count)
    if let refusal {
      for predict in pendingPredicts[allowed...] {
        inFlight[predict.id] = nil
        send(.error(refusal), id: predict.id)
      }
    }
    var start = 0
    while start < allowed {
      let name = pendingPredicts[start].request.model
      var end = start + 1
      while end < allowed && pendingPredicts[end].request.model == name { end += 1 }
      submit(pendingPredicts[start..<end], to: name)
      start = end
    }
  }

  private func submit(_ predicts: ArraySlice<ServedModel.TaggedPredict>, to name: String) {
    guard let model = core.models[name] else {
      let error = unknownModel(name)
      for predict in predicts {
        inFlight[predict.id] = nil
        send(.error(error), id: predict.id)
      }
      return
    }
    guard let sink = sink(for: model) else { return }
    let submitted = intoCore { sink.submitAll(predicts) }
    // The accepted predicts took the tickets in order.
    var tickets = submitted.tickets.makeIterator()
    var refused = submitted.refused.makeIterator()
    var nextRefused = refused.next()
    for index in predicts.indices {
      let id = predicts[index].id
      if let (refusedAt, error) = nextRefused, refusedAt == index - predicts.startIndex {
        // The input was refused before it reached the queue.
        nextRefused = refused.next()
        inFlight[id] = nil
        send(.error(ServerCore.errorInfo(for: error)), id: id)
      } else if let ticket = tickets.next() {
        inFlight[id] = InFlight(work: .batch(model, ticket: ticket))
      }
    }
  }

  /// This connection's sink for `model`'s answers, made on first use. A batch hands it all of
  /// its answers for this connection at once, so answers from a batch that ran on another loop
  /// cost one hop rather than one each.
  private func sink(for model: ServedModel) -> ServedModel.Sink? {
    for entry in sinks where entry.model === model { return entry.sink }
    guard let bound, let loop = context?.eventLoop else { return nil }
    let sink = model.makeSink(lane.index, lane.executor) { answers in
      if loop.inEventLoop && bound.value.coreCalls == 0 {
        bound.value.finish(answers)
      } else {
        loop.execute { bound.value.finish(answers) }
      }
    }
    sinks.append((model, sink))
    return sink
  }

  private func finish(_ answers: [ServedModel.Answer]) {
    for answer in answers { finish(answer.tag, with: answer.result.map(WireMessage.result)) }
  }

  private func batchPredict(_ request: WireMessage.BatchPredict, id: UInt32) {
    let deadline = WireProtocol.deadline(milliseconds: request.deadlineMilliseconds)
    enqueue(id: id, model: request.model, answer: WireMessage.batchResult) { model, completion in
      try model.submitBatch(request.inputs, deadline, completion)
    }
  }

  /// Hands a request to its model's batcher and records it as in flight.
  ///
  /// A completion never runs inside a call this handler makes into the core (see
  /// ``intoCore(_:)``), so the entry is in place before any answer is handled. One that comes
  /// from a later job on this loop (the usual case: the batch ran on this loop) is handled at
  /// once, without another trip through the loop's queue.
  private func enqueue<Output: Sendable>(
    id: UInt32,
    model name: String,
    answer: @escaping @Sendable (Output) -> WireMessage,
    submit: (ServedModel, @escaping ServedModel.Completion<Output>) throws -> UInt64
  ) {
    guard let model = model(named: name, id: id), let bound, let loop = context?.eventLoop else { return }
    do {
      let ticket = try intoCore {
        try submit(model) { result in
          if loop.inEventLoop && bound.value.coreCalls == 0 {
            bound.value.finish(id, with: result.map(answer))
          } else {
            loop.execute { bound.value.finish(id, with: result.map(answer)) }
          }
        }
      }
      inFlight[id] = InFlight(work: .batch(model, ticket: ticket))
    } catch {
      // The input was refused before it reached the queue.
      send(.error(ServerCore.errorInfo(for: error)), id: id)
    }
  }

  private func model(named name: String, id: UInt32) -> ServedModel? {
    if let model = core.models[name] { return model }
    send(.error(unknownModel(name)), id: id)
    return nil
  }

  private func unknownModel(_ name: String) -> WireMessage.ErrorInfo {
    let known = core.models.keys.sorted().joined(separator: ", ")
    return WireMessage.ErrorInfo(code: .unknownModel, message: "no model \"\(name)\"; served: \(known)")
  }

  private func openStream(_ request: WireMessage.StreamOpen, id: UInt32) {
    guard let bound, let loop = context?.eventLoop else { return }
    let named = request.model.isEmpty ? core.defaultGenerator?.generator : core.generators[request.model]
    guard let generator = named else {
      let known = core.generators.keys.sorted().joined(separator: ", ")
      let message = "no generator \"\(request.model)\"; served: \(known)"
      return send(.error(WireMessage.ErrorInfo(code: .unknownModel, message: message)), id: id)
    }
    if yield != nil, core.configuration.generatorsRunOnEventLoops, let makeTokens = generator.makeTokens {
      return openPulledStream(request, id: id, makeTokens: makeTokens)
    }
    let gate = self.gate
    let session = core.streams.sinhCallback(
      request.prompt,
      clientID: clientID,
      generator: generator,
      executor: GeneratorExecutor.shared,
      onToken: { token in
        if try await gate.push(token, id: id) {
          loop.execute { bound.value.writePendingTokensAfterPoll() }
        }
      },
      onDone: {
        loop.execute { bound.value.finish(id, with: .success(.streamEnd(tokenCount: 0))) }
      },
      onError: { error in
        loop.execute { bound.value.finish(id, with: .failure(error)) }
      }
    )
    // As for batches, every callback reaches this handler through `loop.execute`.
    inFlight[id] = streamEntry(.stream(session), id: id, deadlineMilliseconds: request.deadlineMilliseconds)
  }

  /// The in-flight entry of a new stream, with a timer for the request's own deadline.
  private func streamEntry(_ work: InFlight.Work, id: UInt32, deadlineMilliseconds: UInt32) -> InFlight {
    var entry = InFlight(work: work)
    if deadlineMilliseconds > 0, let bound, let loop = context?.eventLoop {
      entry.deadlineTimer = loop.scheduleTask(in: .milliseconds(Int64(deadlineMilliseconds))) {
        bound.value.streamDeadlinePassed(id)
      }
    }
    return entry
  }

  // MARK: Pulled streams

  /// Starts a stream whose generator returns a plain sequence: its tokens are pulled here.
  private func openPulledStream(
    _ request: WireMessage.StreamOpen,
    id: UInt32,
    makeTokens: @Sendable (String) throws -> AnyIterator<String>
  ) {
    guard let bound, let loop = context?.eventLoop else { return }
    let streams = core.streams
    let slot: StreamSlot
    switch streams.admit(clientID: clientID) {
    case .success(let admitted): slot = admitted
    case .failure(let refusal): return send(.error(ServerCore.errorInfo(for: refusal)), id: id)
    }
    let tokens: AnyIterator<String>
    do {
      tokens = try makeTokens(request.prompt)
    } catch {
      let reported = slot.finish(.failure(error)) ?? .failure(error)
      if case .failure(let failure) = reported { send(.error(ServerCore.errorInfo(for: failure)), id: id) }
      return
    }
    let stream = PulledStream(tokens: tokens, slot: slot, pace: streams.tocDoToken)
    if streams.timeout > .zero {
      let limit = streams.timeout
      stream.timeoutTimer = loop.scheduleTask(in: TimeAmount(limit)) {
        let timedOut = VietnameseAIError(
          code: .streamTimeout,
          message: "stream exceeded its timeout of \(limit)"
        )
        bound.value.endPulledStream(id, with: .failure(timedOut))
      }
    }
    inFlight[id] = streamEntry(.pulled(stream), id: id, deadlineMilliseconds: request.deadlineMilliseconds)
    makeRunnable(id)
  }

  /// Queues a pulled stream for the next turn.
  private func makeRunnable(_ id: UInt32) {
    runnable.append(id)
    requestTurn()
  }

  /// Asks for a turn after the loop's next poll for I/O, never within the current tick.
  ///
  /// This holds for a paced stream whose timer fired too. A loop runs every job and every timer
  /// that falls due before it polls again, so turns run straight from the timers would, once
  /// the streams' tokens cost more than their pace leaves (thousands of paced streams, a slow
  /// build), keep the loop in its queue for good: no read, no accept, no `CANCEL`, no
  /// handshake on that loop while the streams last. Through the poll, a timer only marks its
  /// stream due, and the streams fall behind their pace instead of taking the loop.
  private func requestTurn() {
    guard let bound, let yield, !pollTurnPending else { return }
    pollTurnPending = true
    yield.afterNextPoll {
      bound.value.pollTurnPending = false
      bound.value.runTurn()
    }
  }

  /// Gives every runnable stream its tokens for this turn, then flushes.
  ///
  /// A turn stops early when the connection stops being writable or has a turn's worth of
  /// bytes waiting; the streams left keep their place. Streams with more to give ask for the
  /// next turn after the loop's next poll.
  private func runTurn() {
    guard phase != .closed, let context, context.channel.isWritable else { return }
    var turns = runnable.count
    while turns > 0, let id = runnable.popFirst() {
      turns -= 1
      // A stream that ended since it was queued (cancelled, timed out) is simply dropped.
      guard let slot = inFlight.index(forKey: id), case .pulled(let stream) = inFlight.values[slot].work
      else { continue }
      let (sent, end) = writer.appendTokens(requestID: id, limit: stream.tokensThisTurn) { stream.next() }
      if sent > 0 {
        inFlight.values[slot].tokensSent &+= UInt32(truncatingIfNeeded: sent)
        stream.slot.delivered(sent)
      }
      if case .failed(let failure) = end {
        refuseToken(of: id, failure)
      } else if end.isExhausted || (stream.isPaced && !stream.hasMore) {
        endPulledStream(id, with: .success(()))
      } else if stream.isPaced {
        guard let bound else { continue }
        stream.paceTimer = context.eventLoop.scheduleTask(in: stream.delay) {
          bound.value.pacedTokenDue(id)
        }
      } else {
        runnable.append(id)
      }
      if writer.pendingBytes >= Self.turnBytes { break }
    }
    flush()
    if !runnable.isEmpty && context.channel.isWritable { requestTurn() }
  }

  /// Bytes after which a turn stops and flushes, so that a turn's output stays bounded.
  private static let turnBytes = 64 * 1024

  private func pacedTokenDue(_ id: UInt32) {
    guard case .pulled(let stream) = inFlight[id]?.work else { return }
    stream.paceTimer = nil
    makeRunnable(id)
  }

  /// Ends a pulled stream: frees its slot and sends its terminal frame.
  private func endPulledStream(_ id: UInt32, with result: Result<Void, any Error>) {
    guard case .pulled(let stream) = inFlight[id]?.work else { return }
    stream.stop()
    let reported = stream.slot.finish(result) ?? result
    finish(id, with: reported.map { .streamEnd(tokenCount: 0) })
  }

  /// A token the protocol cannot carry (larger than the peer's frame limit) ends its stream,
  /// which still gets exactly one answer: this error, not a `STREAM_END` after it.
  private func refuseToken(of id: UInt32, _ failure: WireError) {
    let error = VietnameseAIError(
      code: .generatorFailed,
      message: "the generator gave a token the protocol cannot carry: \(failure.message)"
    )
    switch inFlight[id]?.work {
    case .pulled:
      endPulledStream(id, with: .failure(error))
    case .stream(let session):
      intoCore { session.huy() }
      finish(id, with: .failure(error))
    case .pending, .batch, nil:
      break
    }
  }

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
      guard let slot = inFlight.index(forKey: id) else { continue }
      do {
        try writer.appendToken(token, requestID: id)
        inFlight.values[slot].tokensSent &+= 1
        wrote = true
      } catch {
        refuseToken(of: id, error)
      }
    }
    if wrote { scheduleFlush() }
  }

  private func streamDeadlinePassed(_ id: UInt32) {
    guard inFlight[id] != nil else { return }
    inFlight[id]!.deadlinePassed = true
    cancel(id)
  }

  /// Stops request `id` on the client's behalf (`CANCEL`, its deadline). A task's outcome
  /// comes back through its completion; a pulled stream is answered here.
  private func cancel(_ id: UInt32) {
    guard let entry = inFlight[id] else { return }
    cancelWork(of: entry)
    if case .pulled = entry.work { finish(id, with: .failure(CancellationError())) }
  }

  /// Sends the terminal frame of request `id`, unless it was answered already.
  private func finish(_ id: UInt32, with outcome: Result<WireMessage, any Error>) {
    guard let slot = inFlight.index(forKey: id) else { return }
    let entry: InFlight
    if case .stream = inFlight.values[slot].work {
      // A stream's last tokens may still be queued: they go before its end. Writing them
      // updates the table, so the entry is looked up again.
      writePendingTokens()
      guard let current = inFlight.removeValue(forKey: id) else { return }
      entry = current
    } else {
      entry = inFlight.remove(at: slot).value
    }
    entry.deadlineTimer?.cancel()
    switch outcome {
    case .success(.streamEnd):
      send(.streamEnd(tokenCount: entry.tokensSent), id: id)
    case .success(let message):
      send(message, id: id)
    case .failure where entry.deadlinePassed:
      send(
        .error(WireMessage.ErrorInfo(code: .deadlineExceeded, message: "the request's deadline passed")),
        id: id
      )
    case .failure(let error):
      send(.error(ServerCore.errorInfo(for: error)), id: id)
    }
    if phase == .draining && inFlight.isEmpty {
      close()
    }
  }

  /// Runs a call into the core (a submit, a cancel), during which completions it triggers are
  /// deferred to the loop's queue instead of re-entering this handler.
  private func intoCore<T>(_ body: () throws -> T) rethrows -> T {
    coreCalls += 1
    defer { coreCalls -= 1 }
    return try body()
  }

  private func cancelWork(of entry: InFlight) {
    intoCore { Self.cancelWork(of: entry) }
  }

  private static func cancelWork(of entry: InFlight) {
    entry.deadlineTimer?.cancel()
    switch entry.work {
    case .pending: break
    case .batch(let model, let ticket): model.cancel(ticket)
    case .stream(let session): session.huy()
    case .pulled(let stream):
      stream.stop()
      stream.slot.finish(.failure(CancellationError()))
    }
  }

  // MARK: Shutdown

  private func scheduleIdleCheck(at deadline: NIODeadline) {
    guard let bound, let loop = context?.eventLoop else { return }
    idleTimer = loop.scheduleTask(deadline: deadline) { bound.value.checkIdle() }
  }

  /// Closes the connection if nothing was read for the idle timeout and nothing is in flight;
  /// otherwise looks again one timeout after the last read (or from now, while busy).
  private func checkIdle() {
    guard phase == .open || phase == .draining else { return }
    let timeout = TimeAmount(core.configuration.idleTimeout)
    let now = NIODeadline.now()
    guard inFlight.isEmpty else { return scheduleIdleCheck(at: now + timeout) }
    guard now - lastRead >= timeout else { return scheduleIdleCheck(at: lastRead + timeout) }
    logger.debug("closing an idle connection")
    let message = "idle for longer than the idle timeout of \(core.configuration.idleTimeout)"
    send(.goAway(WireMessage.GoAway(code: .unavailable, message: message)), id: 0)
    close()
  }

  private func handshakeTimedOut() {
    guard phase == .handshake else { return }
    fail(
      .protocolViolation("no HELLO within the handshake timeout of \(core.configuration.handshakeTimeout)")
    )
  }

  /// Starts a graceful close: `GOAWAY`, then close once every request in flight is answered.
  func beginDrain() {
    switch phase {
    case .handshake:
      send(.goAway(WireMessage.GoAway(code: .unavailable, message: "server is shutting down")), id: 0)
      close()
    case .open:
      phase = .draining
      send(.goAway(WireMessage.GoAway(code: .unavailable, message: "server is shutting down")), id: 0)
      if inFlight.isEmpty { close() }
    case .draining, .closed:
      break
    }
  }

  /// Ends the connection now, answering every request still in flight `UNAVAILABLE`.
  func closeNow() {
    guard phase != .closed else { return }
    let abandoned = inFlight
    inFlight.removeAll()
    for (id, entry) in abandoned.sorted(by: { $0.key < $1.key }) {
      cancelWork(of: entry)
      let message = "server shut down before the request finished"
      send(.error(WireMessage.ErrorInfo(code: .unavailable, message: message)), id: id)
    }
    close()
  }

  /// Answers a connection error on id 0 and closes.
  private func fail(_ error: WireError) {
    guard phase != .closed else { return }
    logger.debug(
      "closing connection",
      metadata: ["status": "\(error.code.name)", "reason": "\(error.message)"]
    )
    send(.error(WireMessage.ErrorInfo(code: error.code, message: error.message)), id: 0)
    close()
  }

  private func close() {
    guard phase != .closed, let context else { return }
    phase = .closed
    flush()
    context.close(promise: nil)
  }

  // MARK: Output

  private func send(_ message: WireMessage, id: UInt32) {
    do {
      try writer.append(WireFrame(requestID: id, message: message))
    } catch {
      // An answer beyond the frame limit (or a field beyond its length prefix) cannot be
      // sent. The request still gets its one answer.
      let info = WireMessage.ErrorInfo(
        code: .internal,
        message: "the answer could not be encoded: \(error.message)"
      )
      try? writer.append(WireFrame(requestID: id, message: .error(info)))
    }
    scheduleFlush()
  }

  /// Flushes at the end of the read burst, or at the end of this event-loop tick when the
  /// answer came from elsewhere, so that answers finishing together leave together.
  private func scheduleFlush() {
    guard writer.claimFlush(), let bound, let loop = context?.eventLoop else { return }
    loop.execute { bound.value.flush() }
  }

  private func flush() {
    guard let context, let bytes = writer.takeForFlush() else { return }
    context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
  }
}

@available(*, unavailable)
extension ServerConnectionHandler: Sendable {}
