import Synchronization
@_spi(Locking) import VietnameseAIConcurrency

/// A token streaming server for LLM output, as plain tokens or as Server-Sent Events.
///
/// ```swift
/// let server = MayChuStream(hamSinh: { prompt in prompt.split(separator: " ").map { $0 + " " } },
///                           tocDoToken: .milliseconds(20), toiDaClient: 100)
/// for try await token in server.sinhStream("Viết bài luận về AI") { print(token, terminator: "") }
/// for try await event in server.sinhSSE("Câu hỏi từ client", clientID: "c1") { print(event) }
/// ```
///
/// A stream starts when iteration starts and holds one of ``toiDaClient`` client slots until
/// it ends. It ends when the generator is exhausted, when it fails, when it outlives
/// ``timeout``, or when its consumer stops: breaking out of the loop or cancelling the task
/// cancels the generator and frees the slot at once. Tokens are handed over at least
/// ``tocDoToken`` apart, and a reader that falls behind slows the generator down rather than
/// growing a buffer.
public final class MayChuStream: Sendable {
  /// Feeds every token a generator produces for `prompt` to `emit`, in order.
  typealias Pump = @Sendable (_ prompt: String, _ emit: (String) async throws -> Void) async throws -> Void

  /// The least time between two tokens of one stream. Zero streams as fast as possible.
  public let tocDoToken: Duration
  /// The most streams at once.
  public let toiDaClient: Int
  /// The longest a stream may run. Zero or less means no limit.
  public let timeout: Duration
  /// The most streams one client id may hold at once, or `nil` for no per-client limit.
  public let toiDaMoiClient: Int?

  /// Tokens a stream buffers ahead of a slow reader before its generator waits.
  static let bufferedTokens = 32

  /// Unpaced tokens a stream hands over before it yields its thread to other tasks.
  static let tokensPerYield = 64

  private let pump: Pump
  private let clock: InjectedClock
  private let state: Locked<State>
  private let tokensSent = Atomic<Int>(0)

  private struct State {
    var active = 0
    var perClient: [String: Int] = [:]
    var started = 0
    var finished = 0
    var totalDuration: Int64 = 0
    var errors = 0
    var timeouts = 0
    var cancelled = 0
    var rejected = 0
    var ttft = LatencyHistogram()
    var observer: (@Sendable (StreamReport) -> Void)?
  }

  /// Creates a streaming server over a generator that returns its tokens as a plain sequence.
  ///
  /// - Parameters:
  ///   - hamSinh: Returns the tokens for a prompt.
  ///   - tocDoToken: Delay between tokens (default 0.02 s).
  ///   - toiDaClient: Streams at once (default 100).
  ///   - timeout: Longest stream (default 60 s).
  ///   - toiDaMoiClient: Streams at once per client id (default: no limit).
  ///   - clock: Where time comes from; tests pass a test clock.
  public convenience init<S: Sequence & SendableMetatype>(
    hamSinh: @escaping @Sendable (String) throws -> S,
    tocDoToken: Duration = .milliseconds(20),
    toiDaClient: Int = 100,
    timeout: Duration = .seconds(60),
    toiDaMoiClient: Int? = nil,
    clock: some Clock<Duration> = ContinuousClock()
  ) where S.Element == String {
    self.init(
      pump: TokenGenerator(hamSinh).pump,
      tocDoToken: tocDoToken,
      toiDaClient: toiDaClient,
      timeout: timeout,
      toiDaMoiClient: toiDaMoiClient,
      clock: clock
    )
  }

  /// Creates a streaming server over a generator whose tokens arrive asynchronously, as from a
  /// real model. The generator is cancelled when its stream ends early.
  public convenience init<S: AsyncSequence & SendableMetatype>(
    hamSinh: @escaping @Sendable (String) async throws -> S,
    tocDoToken: Duration = .milliseconds(20),
    toiDaClient: Int = 100,
    timeout: Duration = .seconds(60),
    toiDaMoiClient: Int? = nil,
    clock: some Clock<Duration> = ContinuousClock()
  ) where S.Element == String {
    self.init(
      pump: TokenGenerator(hamSinh).pump,
      tocDoToken: tocDoToken,
      toiDaClient: toiDaClient,
      timeout: timeout,
      toiDaMoiClient: toiDaMoiClient,
      clock: clock
    )
  }

  /// Creates a streaming server over a generator, with the parameters of the public
  /// initializers.
  package convenience init(
    generator: TokenGenerator,
    tocDoToken: Duration,
    toiDaClient: Int,
    timeout: Duration,
    toiDaMoiClient: Int?
  ) {
    self.init(
      pump: generator.pump,
      tocDoToken: tocDoToken,
      toiDaClient: toiDaClient,
      timeout: timeout,
      toiDaMoiClient: toiDaMoiClient,
      clock: ContinuousClock()
    )
  }

  init(
    pump: @escaping Pump,
    tocDoToken: Duration,
    toiDaClient: Int,
    timeout: Duration,
    toiDaMoiClient: Int?,
    clock: some Clock<Duration>
  ) {
    self.pump = pump
    self.tocDoToken = tocDoToken
    self.toiDaClient = toiDaClient
    self.timeout = timeout
    self.toiDaMoiClient = toiDaMoiClient
    self.clock = InjectedClock(clock)
    self.state = Locked(State())
  }

  /// Checks streaming parameters without building a server, for command-line front ends.
  ///
  /// - Throws: ``VietnameseAIError/Code/invalidArgument`` naming the first bad parameter.
  public static func validate(
    tocDoToken: Duration,
    toiDaClient: Int,
    timeout: Duration,
    toiDaMoiClient: Int? = nil
  ) throws(VietnameseAIError) {
    func bad(_ message: String) -> VietnameseAIError {
      VietnameseAIError(code: .invalidArgument, message: message)
    }
    guard tocDoToken >= .zero else { throw bad("tocDoToken must not be negative, got \(tocDoToken)") }
    guard toiDaClient >= 1 else { throw bad("toiDaClient must be at least 1, got \(toiDaClient)") }
    guard timeout >= .zero else { throw bad("timeout must not be negative (0 means none), got \(timeout)") }
    if let toiDaMoiClient, toiDaMoiClient < 1 {
      throw bad("toiDaMoiClient must be at least 1, got \(toiDaMoiClient)")
    }
  }

  // MARK: Streaming

  /// The tokens for `prompt`, paced by ``tocDoToken``.
  ///
  /// The stream starts when iteration starts. Its first `next()` throws
  /// ``VietnameseAIError/Code/tooManyClients`` if no slot is free; a stream that outlives
  /// ``timeout`` throws ``VietnameseAIError/Code/streamTimeout``; a failing generator ends it
  /// with ``VietnameseAIError/Code/generatorFailed``.
  public func sinhStream(_ prompt: String, clientID: String? = nil) -> TokenStream {
    TokenStream(server: self, prompt: prompt, clientID: clientID)
  }

  /// The tokens for `prompt` as Server-Sent Events.
  ///
  /// Each token is `data: {"token": "..."}\n\n` and the stream closes with `data: [DONE]\n\n`.
  /// An error once the stream has started (generator failure, timeout) becomes one
  /// `data: {"error": "..."}\n\n` event followed by `data: [DONE]\n\n`, so a client waiting for
  /// the end always sees it. A refused stream (too many clients) throws from the first `next()`
  /// instead, so that an HTTP layer can still answer 429 before sending any event.
  public func sinhSSE(_ prompt: String, clientID: String? = nil) -> SSEStream {
    SSEStream(tokens: sinhStream(prompt, clientID: clientID))
  }

  /// Streams `prompt`'s tokens to callbacks.
  ///
  /// `onToken` is awaited before the next token is produced, so a slow receiver slows the
  /// generator down. Exactly one of `onDone` or `onError` is called at the end: `onError`
  /// with ``VietnameseAIError`` (`tooManyClients`, `streamTimeout`, `generatorFailed`), with
  /// the error `onToken` threw, or with `CancellationError` after ``PhienStream/huy()``.
  ///
  /// - Returns: A handle that cancels the stream.
  @discardableResult
  public func sinhCallback(
    _ prompt: String,
    clientID: String? = nil,
    onToken: @escaping @Sendable (String) async throws -> Void,
    onDone: @escaping @Sendable () -> Void = {},
    onError: @escaping @Sendable (any Error) -> Void = { _ in }
  ) -> PhienStream {
    let started = begin(prompt: prompt, clientID: clientID, deliver: onToken) { result in
      switch result {
      case .success: onDone()
      case .failure(let error): onError(error)
      }
    }
    switch started {
    case .success(let stream):
      return stream
    case .failure(let error):
      onError(error)
      return PhienStream.refused(by: self)
    }
  }

  /// Starts a stream for a front end that serves several generators through this one server,
  /// so that the client cap, the timeout and the statistics cover all of them.
  ///
  /// As ``sinhCallback(_:clientID:onToken:onDone:onError:)``, except that a refused stream is
  /// returned as the failure rather than reported to `onEnd`, and:
  /// - `generator` produces the tokens instead of the server's own;
  /// - `executor`, if given, runs the generator's task;
  /// - `deadline`, if given and shorter than ``timeout``, ends the stream with
  ///   ``VietnameseAIError/Code/deadlineExceeded`` when it passes.
  package func start(
    _ prompt: String,
    clientID: String?,
    generator: TokenGenerator,
    executor: (any TaskExecutor)?,
    deadline: Duration?,
    onToken: @escaping @Sendable (String) async throws -> Void,
    onEnd: @escaping @Sendable (Result<Void, any Error>) -> Void
  ) -> Result<PhienStream, VietnameseAIError> {
    begin(
      prompt: prompt,
      clientID: clientID,
      pump: generator.pump,
      executor: executor,
      deadline: deadline,
      deliver: onToken,
      onEnd: onEnd
    )
  }

  /// The current statistics.
  public func layThongKe() -> ThongKeStream {
    let tokens = tokensSent.load(ordering: .relaxed)
    return state.withLock { state in
      ThongKeStream(
        tongStream: state.started,
        clientHienTai: state.active,
        thoiGianTB: state.finished == 0 ? 0 : Double(state.totalDuration) / Double(state.finished) / 1e9,
        tokensSent: tokens,
        errors: state.errors,
        timeouts: state.timeouts,
        cancelled: state.cancelled,
        rejected: state.rejected,
        ttftP50: state.ttft.seconds(atPercentile: 50),
        ttftP95: state.ttft.seconds(atPercentile: 95)
      )
    }
  }

  // MARK: Sessions

  /// Admits a stream and starts its generator and its timer.
  ///
  /// - Parameters:
  ///   - override: The generator to run instead of the server's own.
  ///   - executor: Where the generator's task prefers to run; `nil` for the default.
  ///   - deadline: The caller's own limit on the stream, if shorter than ``timeout``.
  ///   - deliver: Receives each token, after pacing; may suspend to apply backpressure.
  ///   - onEnd: Called exactly once when the stream ends, after its slot is freed.
  func begin(
    prompt: String,
    clientID: String?,
    pump override: Pump? = nil,
    executor: (any TaskExecutor)? = nil,
    deadline: Duration? = nil,
    deliver: @escaping @Sendable (String) async throws -> Void,
    onEnd: @escaping @Sendable (Result<Void, any Error>) -> Void
  ) -> Result<PhienStream, VietnameseAIError> {
    if let refusal = takeSlot(clientID: clientID) { return .failure(refusal) }

    let startedAt = clock.nowNanoseconds()
    let session = PhienStream(server: self, clientID: clientID, startedAt: startedAt, onEnd: onEnd)
    let pace = tocDoToken.nanoseconds
    let pump = override ?? self.pump
    let producer = Task(executorPreference: executor) { [clock] in
      var lastToken: Int64?
      var unpaced = 0
      do {
        try await pump(prompt) { token in
          if pace > 0, let lastToken {
            try await clock.sleep(untilNanoseconds: lastToken.addingSaturating(pace))
          } else if pace == 0 {
            // Without pacing, a fast generator and a fast receiver may never suspend; let the
            // other tasks of the pool run now and then instead of holding a thread for the
            // whole stream.
            unpaced &+= 1
            if unpaced % Self.tokensPerYield == 0 { await Task.yield() }
          }
          do {
            try await deliver(token)
          } catch {
            // The receiving side gave up; that is not the generator's failure.
            throw PhienStream.ConsumerFailure(error: error)
          }
          // The clock is read for pacing and for the first token's latency only: an unpaced
          // stream of a million tokens need not read it a million times.
          if lastToken == nil || pace > 0 {
            let now = clock.nowNanoseconds()
            if lastToken == nil {
              self.recordFirstToken(after: now - startedAt)
              session.progress.firstToken(after: now - startedAt)
            }
            lastToken = now
          }
          self.tokensSent.add(1, ordering: .relaxed)
          session.progress.delivered(1)
        }
        session.finish(.success(()))
      } catch {
        session.finish(.failure(error))
      }
    }
    var timer: Task<Void, Never>?
    if let (limit, error) = Self.limit(timeout: timeout, deadline: deadline) {
      let due = startedAt.addingSaturating(limit.nanoseconds)
      timer = Task { [clock] in
        guard (try? await clock.sleep(untilNanoseconds: due)) != nil else { return }
        session.finish(.failure(error))
      }
    }
    session.attach(producer: producer, timer: timer)
    return .success(session)
  }

  /// What ends a stream first, and with which error: the server's ``timeout`` or the
  /// caller's own deadline, whichever is shorter; `nil` if neither is set.
  package static func limit(timeout: Duration, deadline: Duration?) -> (
    after: Duration, error: VietnameseAIError
  )? {
    if let deadline, timeout <= .zero || deadline < timeout {
      return (
        deadline,
        VietnameseAIError(code: .deadlineExceeded, message: "the stream's deadline of \(deadline) passed")
      )
    }
    guard timeout > .zero else { return nil }
    return (
      timeout, VietnameseAIError(code: .streamTimeout, message: "stream exceeded its timeout of \(timeout)")
    )
  }

  /// Takes one of the client slots, or says why there is none.
  private func takeSlot(clientID: String?) -> VietnameseAIError? {
    state.withLock { state -> VietnameseAIError? in
      if state.active >= toiDaClient {
        state.rejected += 1
        return VietnameseAIError(
          code: .tooManyClients,
          message: "too many clients: \(state.active) of \(toiDaClient) streams running"
        )
      }
      if let clientID, let limit = toiDaMoiClient, state.perClient[clientID, default: 0] >= limit {
        state.rejected += 1
        return VietnameseAIError(
          code: .tooManyClients,
          message: "client \(clientID) already runs \(limit) streams, the most allowed per client"
        )
      }
      state.active += 1
      state.started += 1
      if let clientID { state.perClient[clientID, default: 0] += 1 }
      return nil
    }
  }

  // MARK: Streams driven by a front end

  /// Takes a slot for a stream whose tokens the caller produces and delivers itself.
  ///
  /// For a front end that pulls a plain-sequence generator (``TokenGenerator/makeTokens``) in
  /// bursts where it writes them, with no task per stream. The caller then owns pacing and
  /// the timeout (``tocDoToken``, ``timeout``); the slot keeps the cap on streams and the
  /// statistics, as for the streams this server runs itself.
  ///
  /// - Returns: The slot, or ``VietnameseAIError/Code/tooManyClients``.
  package func admit(clientID: String?) -> Result<StreamSlot, VietnameseAIError> {
    if let refusal = takeSlot(clientID: clientID) { return .failure(refusal) }
    return .success(StreamSlot(server: self, clientID: clientID, startedAt: clock.nowNanoseconds()))
  }

  /// Counts tokens handed to a consumer; the first of a stream also gives its latency.
  func delivered(_ count: Int, first: Bool, startedAt: Int64, progress: StreamProgress) {
    if first {
      let latency = clock.nowNanoseconds() - startedAt
      recordFirstToken(after: latency)
      progress.firstToken(after: latency)
    }
    tokensSent.add(count, ordering: .relaxed)
    progress.delivered(count)
  }

  /// Hands a report of every stream that ends from now on to `observer`, on the thread that
  /// ended it. One observer at a time; a metrics exporter.
  package func observe(_ observer: @escaping @Sendable (StreamReport) -> Void) {
    state.withLock { $0.observer = observer }
  }

  /// How a stream that ended with `result` counts, and what its consumer is told: an error
  /// that is not the design's own is the generator's failure.
  static func settle(_ result: Result<Void, any Error>) -> (Outcome, Result<Void, any Error>) {
    switch result {
    case .success:
      return (.done, .success(()))
    case .failure(let failure as PhienStream.ConsumerFailure):
      return (.cancelled, .failure(failure.error))
    case .failure(let error as CancellationError):
      return (.cancelled, .failure(error))
    case .failure(let error as VietnameseAIError):
      let timedOut = error.code == .streamTimeout || error.code == .deadlineExceeded
      return (timedOut ? .timedOut : .failed, .failure(error))
    case .failure(let error):
      let wrapped = VietnameseAIError(
        code: .generatorFailed,
        message: "the token generator failed",
        cause: error
      )
      return (.failed, .failure(wrapped))
    }
  }

  private func recordFirstToken(after nanoseconds: Int64) {
    state.withLock { $0.ttft.record(nanoseconds: nanoseconds) }
  }

  /// How a session ended, for the statistics.
  typealias Outcome = StreamReport.Outcome

  /// Frees a session's slot and counts how it ended.
  func release(clientID: String?, startedAt: Int64, outcome: Outcome, progress: StreamProgress) {
    let duration = clock.nowNanoseconds() - startedAt
    let observer = state.withLock { state in
      state.active -= 1
      if let clientID {
        let left = state.perClient[clientID, default: 1] - 1
        state.perClient[clientID] = left > 0 ? left : nil
      }
      state.finished += 1
      state.totalDuration += duration
      switch outcome {
      case .done: break
      case .failed: state.errors += 1
      case .timedOut: state.timeouts += 1
      case .cancelled: state.cancelled += 1
      }
      return state.observer
    }
    observer?(
      StreamReport(
        outcome: outcome,
        durationNanoseconds: duration,
        firstTokenNanoseconds: progress.firstTokenNanoseconds,
        tokens: progress.count
      )
    )
  }
}
