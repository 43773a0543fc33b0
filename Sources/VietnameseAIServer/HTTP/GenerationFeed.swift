import Synchronization
import VietnameseAI
@_spi(Locking) import VietnameseAIConcurrency

/// A stream the HTTP door opened through the serving core, as the batches of tokens its
/// response reads.
///
/// A generator that is a plain sequence is pulled by the response itself, a batch at a time,
/// and only when the previous batch was written: no task, no hand-off between threads, and a
/// client that reads slowly holds its generator still. Any other generator runs as the stream
/// server's task and hands its tokens over through a ``TokenPipe``; while no token has come, a
/// ticker asks for keep-alives, so that proxies do not cut a quiet stream.
final class GenerationFeed: Sendable {
  /// Tokens one batch carries at most, pulled or gathered.
  static let batchSize = 256

  private let pipe = TokenPipe()
  private let sawToken = Atomic<Bool>(false)
  private let state = Locked(State())

  private struct State {
    var end: Result<Void, ServingError>?
    var session: PhienStream?
    var pulled: Pulled?
  }

  /// A pulled stream: the generator's iterator, its slot and its pace.
  private struct Pulled {
    let tokens: Tokens
    let slot: StreamSlot
    let pace: Duration
    var lastToken: ContinuousClock.Instant?
    var watchdog: Task<Void, Never>?
  }

  /// The generator's iterator, which the core made for this stream alone.
  ///
  /// `@unchecked Sendable` is safe: the feed touches it only while it holds its lock, so one
  /// thread at a time advances it, and nothing else holds a reference to it.
  private final class Tokens: @unchecked Sendable {
    let iterator: AnyIterator<String>

    init(_ iterator: AnyIterator<String>) {
      self.iterator = iterator
    }
  }

  private init() {}

  /// Opens a stream of `generator` for `client`; the refusal, if the core refuses it.
  static func open(
    core: ServingCore,
    generator: String,
    prompt: String,
    deadline: Duration?,
    client: String
  ) async -> Result<GenerationFeed, ServingError> {
    let feed = GenerationFeed()
    var verdict: LimitVerdict?
    while true {
      let opened = core.openStream(
        generator: generator,
        prompt: prompt,
        deadline: deadline,
        client: client,
        verdict: verdict,
        pullable: true,
        executor: nil,
        onToken: { token in await feed.pipe.send(token) },
        onEnd: { result in feed.ended(result) }
      )
      switch opened {
      case .started(.task(let session)):
        feed.state.withLock { $0.session = session }
      case .started(.pulled(let source)):
        feed.pull(source)
      case .refused(let refusal):
        return .failure(refusal)
      case .awaitingLimit(let later):
        verdict = await LimitVerdict.waited(later)
        continue
      }
      return .success(feed)
    }
  }

  private func pull(_ source: PulledTokens) {
    let tokens = Tokens(source.tokens)
    state.withLock {
      $0.pulled = Pulled(tokens: tokens, slot: source.slot, pace: source.pace)
    }
    // The stream's time limit holds even while the response waits on a client that does not
    // read: the slot is freed then, as the stream server's own timer would.
    guard let limit = source.limit else { return }
    let watchdog = Task { [weak self] in
      try? await Task.sleep(for: limit.after)
      guard !Task.isCancelled else { return }
      self?.finishPulled(.failure(limit.error))
    }
    let ended = state.withLock { state -> Bool in
      state.pulled?.watchdog = watchdog
      return state.end != nil
    }
    if ended { watchdog.cancel() }
  }

  /// The next batch of tokens (empty with `keepAlive` when a keep-alive is due), or `nil`
  /// once the stream has ended; ``end`` then says how.
  func next() async -> TokenPipe.Batch? {
    // One lock: whether the stream is pulled, and when a paced one may take its next token.
    let (pulled, nextToken) = state.withLock { state -> (Bool, ContinuousClock.Instant?) in
      guard let pulled = state.pulled else { return (false, nil) }
      return (true, pulled.lastToken.map { $0 + pulled.pace })
    }
    guard pulled else { return await pipe.next() }
    if Task.isCancelled {
      finishPulled(.failure(CancellationError()))
      return nil
    }
    if let wait = nextToken, wait > .now {
      do {
        try await Task.sleep(until: wait)
      } catch {
        finishPulled(.failure(CancellationError()))
        return nil
      }
    }
    let (tokens, slot, exhausted) = state.withLock {
      state -> ([String], StreamSlot?, Bool) in
      guard state.end == nil, var pulled = state.pulled else { return ([], nil, false) }
      let count = pulled.pace > .zero ? 1 : Self.batchSize
      var tokens: [String] = []
      tokens.reserveCapacity(count)
      var exhausted = false
      while tokens.count < count {
        guard let token = pulled.tokens.iterator.next() else {
          exhausted = true
          break
        }
        tokens.append(token)
      }
      if pulled.pace > .zero { pulled.lastToken = .now }
      state.pulled = pulled
      return (tokens, pulled.slot, exhausted)
    }
    guard let slot else { return nil }
    slot.delivered(tokens.count)
    if exhausted { finishPulled(.success(())) }
    if tokens.isEmpty { return nil }
    return TokenPipe.Batch(tokens: tokens, keepAlive: false)
  }

  /// The tokens a running generator has handed over since the last batch, without waiting.
  func takeWaiting() -> [String] {
    pipe.takeWaiting()
  }

  private func finishPulled(_ result: Result<Void, any Error>) {
    let pulled = state.withLock { $0.pulled }
    guard let pulled, let reported = pulled.slot.finish(result) else { return }
    pulled.watchdog?.cancel()
    ended(reported.mapError(ServingError.init))
  }

  private func ended(_ result: Result<Void, ServingError>) {
    state.withLock { $0.end = result }
    pipe.finish()
  }

  /// How the stream ended, once ``next()`` has returned `nil`.
  var end: Result<Void, ServingError> {
    state.withLock { $0.end } ?? .failure(ServingError(.cancelled, "the stream was abandoned"))
  }

  /// Notes that a token reached the response: keep-alives stop.
  func tokenArrived() {
    sawToken.store(true, ordering: .relaxed)
  }

  /// Stops the generator and frees the stream's slot, unless it ended already.
  func cancel() {
    pipe.leave()
    finishPulled(.failure(CancellationError()))
    let session = state.withLock { $0.session }
    session?.huy()
  }

  /// Sends a keep-alive event every `interval` until the first token arrives; run it in a
  /// task the response cancels when it is done.
  func tickKeepAlive(every interval: Duration) async {
    while !sawToken.load(ordering: .relaxed) {
      do {
        try await Task.sleep(for: interval)
      } catch {
        return
      }
      if sawToken.load(ordering: .relaxed) { return }
      pipe.keepAlive()
    }
  }
}
