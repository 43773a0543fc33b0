public import NIOCore
import NIOPosix
import Synchronization
import VietnameseAIConcurrency
import VietnameseAIWire

#if canImport(Glibc)
  import Glibc
#endif

/// A connection to an `rpc-server`, shared by any number of tasks.
///
/// ```swift
/// let client = try await RPCClient.connect(host: "127.0.0.1", port: 7070, clientID: "c1")
/// let answer = try await client.predict(model: "echo", input: "xin chào")
/// for try await token in client.stream(prompt: "Viết bài luận về AI") { print(token, terminator: "") }
/// print(try await client.stats().batch["latency_p50"] ?? 0)
/// await client.close()
/// ```
///
/// Calls from many tasks travel concurrently over the one connection and are answered as they
/// finish. Every failure is an ``RPCError``. A call with a `deadline` tells the server, which
/// answers `DEADLINE_EXCEEDED` when it passes; the client also gives up on its own shortly
/// after, should the server not answer. Cancelling the calling task (or stopping iteration of a
/// stream) ends the call with ``RPCError/Code/cancelled`` at once and sends `CANCEL`, so the
/// server drops the work.
public final class RPCClient: Sendable {
  /// The client id the server knows this connection by: the one asked for, or the one the
  /// auth token stands for.
  public let clientID: String
  /// Whether zlib compression was negotiated.
  public let compressionEnabled: Bool
  /// The most requests the server lets this connection have in flight.
  public let maxConcurrentRequests: Int

  private let channel: any Channel
  private let loopExecutor: LoopTaskExecutor
  private let handler: NIOLoopBound<ClientConnectionHandler>
  private let calls: CallTable
  private let nextPing = Atomic<UInt64>(1)

  /// How long after a call's deadline the client stops waiting for the server's own
  /// `DEADLINE_EXCEEDED`.
  static let deadlineGrace: Duration = .seconds(1)
  /// How often a connection looks for calls past their local deadline.
  static let sweepInterval = TimeAmount.milliseconds(100)

  private init(
    channel: any Channel,
    handler: NIOLoopBound<ClientConnectionHandler>,
    calls: CallTable,
    welcome: WireMessage.Welcome
  ) {
    self.channel = channel
    self.loopExecutor = LoopTaskExecutor(loop: channel.eventLoop)
    self.handler = handler
    self.calls = calls
    self.clientID = welcome.clientID
    self.compressionEnabled = welcome.compression == WireProtocol.compressionZlib
    self.maxConcurrentRequests = Int(welcome.maxConcurrentRequests)
  }

  /// Connects and completes the handshake.
  ///
  /// - Parameters:
  ///   - clientID: The id to be known by (the rate limit's key). Empty: the server uses the
  ///     connection's address. With auth tokens configured, the token decides instead.
  ///   - authToken: The token, if the server requires one.
  ///   - compression: Offer zlib; it is used if the server agrees.
  ///   - timeout: The most the connection and handshake may take.
  ///   - maxFrameSize: The largest frame payload accepted from the server, at least 1 KiB; the
  ///     server learns it in `HELLO` and answers a request whose answer would not fit with
  ///     `RESOURCE_EXHAUSTED`.
  /// - Throws: ``RPCError``: `unavailable` if the server cannot be reached, `unauthenticated`
  ///   for a bad token, `unsupportedVersion`, `deadlineExceeded` on timeout.
  public static func connect(
    host: String = "127.0.0.1",
    port: Int,
    clientID: String = "",
    authToken: String = "",
    compression: Bool = false,
    timeout: Duration = .seconds(10),
    maxFrameSize: Int = 4 * 1024 * 1024,
    compressionThreshold: Int = 1024
  ) async throws -> RPCClient {
    guard maxFrameSize >= WireProtocol.minMaxFrameSize && maxFrameSize <= Int(UInt32.max) else {
      throw RPCError(
        code: .invalidArgument,
        message:
          "maxFrameSize must be in \(WireProtocol.minMaxFrameSize)...\(UInt32.max), got \(maxFrameSize)"
      )
    }
    let calls = CallTable(grace: Self.deadlineGrace)
    let group = MultiThreadedEventLoopGroup.singleton
    let loop = group.next()
    let welcomePromise = loop.makePromise(of: WireMessage.Welcome.self)
    let channel: any Channel
    do {
      channel = try await ClientBootstrap(group: loop)
        .channelOption(.socketOption(.tcp_nodelay), value: 1)
        .connectTimeout(TimeAmount(timeout))
        .channelInitializer { channel in
          channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(
              ClientConnectionHandler(
                calls: calls,
                maxFrameSize: maxFrameSize,
                compressionThreshold: compressionThreshold,
                welcome: welcomePromise
              )
            )
          }
        }
        .connect(host: host, port: port)
        .get()
    } catch {
      welcomePromise.fail(error)
      throw RPCError.unavailable("could not connect to \(host):\(port): \(Self.describe(error))")
    }
    let hello = WireMessage.Hello(
      versions: WireProtocol.supportedVersions,
      clientID: clientID,
      authToken: authToken,
      compressions: compression
        ? [WireProtocol.compressionZlib, WireProtocol.compressionIdentity]
        : [WireProtocol.compressionIdentity],
      // Sent only when it differs from the default, which a server assumes without it.
      maxFrameSize: maxFrameSize == WireProtocol.defaultMaxFrameSize ? nil : UInt32(maxFrameSize)
    )
    let timer = loop.scheduleTask(in: TimeAmount(timeout)) {
      welcomePromise.fail(RPCError(code: .deadlineExceeded, message: "no WELCOME within \(timeout)"))
    }
    // A server may refuse a connection as soon as it accepts it (it holds its maximum of
    // connections) and close it before HELLO goes out: the handler is gone from the closed
    // pipeline then, and the welcome has failed with the server's reason.
    let handler = try? await loop.submit {
      let handler = try channel.pipeline.syncOperations.handler(type: ClientConnectionHandler.self)
      handler.send(WireFrame(requestID: 0, message: .hello(hello)))
      return NIOLoopBound(handler, eventLoop: loop)
    }.get()
    do {
      let welcome = try await welcomePromise.futureResult.get()
      timer.cancel()
      guard let handler else { throw RPCError.unavailable("the connection closed during the handshake") }
      let sweep = loop.scheduleRepeatedTask(initialDelay: Self.sweepInterval, delay: Self.sweepInterval) {
        _ in
        for id in calls.expire(now: .now()) {
          handler.value.send(WireFrame(requestID: id, message: .cancel))
        }
      }
      channel.closeFuture.whenComplete { _ in sweep.cancel() }
      return RPCClient(channel: channel, handler: handler, calls: calls, welcome: welcome)
    } catch {
      timer.cancel()
      channel.close(promise: nil)
      throw (error as? RPCError) ?? RPCError.unavailable("handshake failed: \(error)")
    }
  }

  private static func describe(_ error: any Error) -> String {
    var error = error
    if let connection = error as? NIOConnectionError, let first = connection.connectionErrors.first {
      error = first.error
    }
    if let error = error as? IOError {
      return String(cString: strerror(error.errnoCode)).lowercased()
    }
    return "\(error)"
  }

  // MARK: Calls

  /// Predicts one input with `model`.
  public func predict(model: String, input: [UInt8], deadline: Duration? = nil) async throws -> [UInt8] {
    Array(
      try await predict(model: model, buffer: ByteBuffer(bytes: input), deadline: deadline).readableBytesView
    )
  }

  /// Predicts one UTF-8 text input with a text model.
  public func predict(model: String, input: String, deadline: Duration? = nil) async throws -> String {
    try Self.text(try await predict(model: model, buffer: ByteBuffer(string: input), deadline: deadline))
  }

  /// Predicts one input and hands the outcome to `completion`, without a Swift task.
  ///
  /// For programs that live on event loops (proxies, load generators): called on the
  /// connection's ``eventLoop``, a call costs no task, no continuation and no hand-off between
  /// threads, and `completion` runs on that loop, where it may make the next call at once.
  /// Called elsewhere, the request is handed to the loop. `completion` runs exactly once: on
  /// the loop with the answer (or the connection's failure, or the local deadline), or at once
  /// if the call cannot start. The async ``predict(model:input:deadline:)-(_,[UInt8],_)``
  /// is the convenient form; this one is the fast one.
  public func predict(
    model: String,
    input: ByteBuffer,
    deadline: Duration? = nil,
    completion: @escaping @Sendable (Result<ByteBuffer, RPCError>) -> Void
  ) {
    let milliseconds: UInt32
    do {
      milliseconds = try Self.milliseconds(deadline)
    } catch {
      return completion(.failure(error))
    }
    let id: UInt32
    switch calls.register(.result(completion), deadline: deadline) {
    case .success(let registered): id = registered
    case .failure(let refusal): return completion(.failure(refusal))
    }
    let request = WireMessage.Predict(deadlineMilliseconds: milliseconds, model: model, input: input)
    send(WireFrame(requestID: id, message: .predict(request)))
  }

  /// Whether new calls may start: the connection is open and the server has not sent
  /// `GOAWAY`. Calls made otherwise fail at once with an error whose
  /// ``RPCError/neverSent`` is true.
  public var isAcceptingCalls: Bool { calls.isAccepting }

  /// The event loop this connection runs on; see ``predict(model:input:deadline:completion:)``.
  public var eventLoop: any EventLoop { channel.eventLoop }

  /// The connection's own thread, as a preference for the tasks that call it.
  ///
  /// ```swift
  /// let task = Task(executorPreference: client.taskExecutor) {
  ///   for try await token in client.stream(prompt: "Xin chào") { print(token, terminator: "") }
  /// }
  /// ```
  ///
  /// A task that prefers it sends its requests and is resumed by their answers on the thread
  /// that reads the socket, with no hand-off between threads, and iterating a stream costs no
  /// trip through a queue per token. Use it for tasks that mostly wait on this connection; a
  /// task that computes for long without suspending would hold up the connection's I/O.
  public var taskExecutor: any TaskExecutor { loopExecutor }

  /// Predicts several inputs at once; the outputs come in the order of the inputs.
  public func predictBatch(model: String, inputs: [[UInt8]], deadline: Duration? = nil) async throws
    -> [[UInt8]]
  {
    let inputs = inputs.map { ByteBuffer(bytes: $0) }
    return try await predictBatch(model: model, buffers: inputs, deadline: deadline).map {
      Array($0.readableBytesView)
    }
  }

  /// Predicts several UTF-8 text inputs at once.
  public func predictBatch(model: String, inputs: [String], deadline: Duration? = nil) async throws
    -> [String]
  {
    let inputs = inputs.map { ByteBuffer(string: $0) }
    return try await predictBatch(model: model, buffers: inputs, deadline: deadline).map(Self.text)
  }

  private func predict(model: String, buffer: ByteBuffer, deadline: Duration?) async throws -> ByteBuffer {
    let request = WireMessage.Predict(
      deadlineMilliseconds: try Self.milliseconds(deadline),
      model: model,
      input: buffer
    )
    guard case .result(let output) = try await call(.predict(request), deadline: deadline) else {
      throw Self.unexpectedAnswer
    }
    return output
  }

  private func predictBatch(model: String, buffers: [ByteBuffer], deadline: Duration?) async throws
    -> [ByteBuffer]
  {
    let request = WireMessage.BatchPredict(
      deadlineMilliseconds: try Self.milliseconds(deadline),
      model: model,
      inputs: buffers
    )
    guard case .batchResult(let outputs) = try await call(.batchPredict(request), deadline: deadline),
      outputs.count == buffers.count
    else {
      throw Self.unexpectedAnswer
    }
    return outputs
  }

  /// Streams the tokens a generator produces for `prompt`.
  ///
  /// - Parameters:
  ///   - model: The generator; empty for the server's default.
  /// - Returns: The tokens, in order. The sequence ends when the server sends `STREAM_END`
  ///   and throws ``RPCError`` if the stream fails. Stopping iteration cancels the stream on
  ///   the server.
  public func stream(prompt: String, model: String = "", deadline: Duration? = nil) -> RPCTokenStream {
    let buffer = TokenBuffer()
    let id = calls.reserve()
    let cancel: @Sendable () -> Void = { [weak self] in self?.cancel(id, with: .cancelledByCaller) }
    let tokens = RPCTokenStream(consumer: .init(buffer: buffer, cancel: cancel))
    let milliseconds: UInt32
    do {
      milliseconds = try Self.milliseconds(deadline)
    } catch {
      calls.withdraw(id, with: error)
      buffer.finish(.failure(error))
      return tokens
    }
    if let refusal = calls.register(id, .stream(buffer), deadline: deadline) {
      buffer.finish(.failure(refusal))
      return tokens
    }
    buffer.cancelsWith(cancel)
    let request = WireMessage.StreamOpen(deadlineMilliseconds: milliseconds, model: model, prompt: prompt)
    let frame = WireFrame(requestID: id, message: .streamOpen(request))
    if channel.eventLoop.inEventLoop {
      handler.value.openStream(frame, into: buffer)
    } else {
      let handler = self.handler
      channel.eventLoop.execute { handler.value.openStream(frame, into: buffer) }
    }
    return tokens
  }

  /// The server's statistics.
  public func stats() async throws -> ServerStatistics {
    guard case .stats(let json) = try await call(.statsRequest, deadline: nil) else {
      throw Self.unexpectedAnswer
    }
    return try ServerStatistics(json: json)
  }

  /// Measures a round trip to the server.
  ///
  /// - Returns: The time from sending `PING` to receiving its `PONG`.
  public func ping() async throws -> Duration {
    let value = nextPing.wrappingAdd(1, ordering: .relaxed).oldValue
    let clock = ContinuousClock()
    let start = clock.now
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
      calls.addPing(value, continuation)
      let handler = self.handler
      channel.eventLoop.execute { handler.value.send(WireFrame(requestID: 0, message: .ping(value))) }
    }
    return clock.now - start
  }

  /// Closes the connection. Calls still in flight fail with ``RPCError/Code/unavailable``.
  public func close() async {
    try? await channel.close()
  }

  // MARK: Internals

  static let unexpectedAnswer = RPCError(
    code: .protocolError,
    message: "the server answered with the wrong kind of frame"
  )

  private static func text(_ bytes: ByteBuffer) throws -> String {
    guard let text = bytes.validatedUTF8Text
    else {
      throw RPCError(
        code: .invalidArgument,
        message: "the model's output is not UTF-8 text; use the [UInt8] call"
      )
    }
    return text
  }

  private static func milliseconds(_ deadline: Duration?) throws(RPCError) -> UInt32 {
    guard let deadline else { return 0 }
    guard deadline > .zero else {
      throw RPCError(code: .deadlineExceeded, message: "the deadline \(deadline) has already passed")
    }
    return WireProtocol.milliseconds(roundingUp: deadline)
  }

  /// Sends a request and waits for its terminal frame.
  private func call(_ message: WireMessage, deadline: Duration?) async throws -> WireMessage {
    let id = calls.reserve()
    return try await withTaskCancellationHandler {
      // Checked, although the call table resumes each continuation exactly once: the runtime's
      // hand-over of an unsafe continuation is invisible to ThreadSanitizer, which then
      // reports a race that is not there, and the saved allocation is not worth a blind spot.
      try await withCheckedThrowingContinuation {
        (continuation: CheckedContinuation<WireMessage, any Error>) in
        let answer: CallTable.Call = .unary({ continuation.resume(with: $0.mapError { $0 }) })
        if let refusal = calls.register(id, answer, deadline: deadline) {
          continuation.resume(throwing: refusal)
          return
        }
        // A cancellation that came before the registration found nothing to cancel. The
        // request is not sent then, so its id is free at once.
        if Task.isCancelled {
          calls.withdraw(id, with: .cancelledByCaller)
          return
        }
        send(WireFrame(requestID: id, message: message))
      }
    } onCancel: {
      cancel(id, with: .cancelledByCaller)
    }
  }

  private func send(_ frame: WireFrame) {
    // A caller already on the connection's loop (the usual case once a task has been resumed
    // by an answer, with the loops as Swift's executor) writes at once.
    if channel.eventLoop.inEventLoop {
      handler.value.send(frame)
      return
    }
    let handler = self.handler
    channel.eventLoop.execute { handler.value.send(frame) }
  }

  private func cancel(_ id: UInt32, with error: RPCError) {
    guard calls.abandon(id, with: error) else { return }
    let handler = self.handler
    channel.eventLoop.execute { handler.value.send(WireFrame(requestID: id, message: .cancel)) }
  }
}
