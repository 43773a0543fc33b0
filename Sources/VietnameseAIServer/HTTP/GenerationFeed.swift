import Synchronization
import VietnameseAI
@_spi(Locking) import VietnameseAIConcurrency

/// A stream the HTTP door opened through the serving core, as the batches of tokens its
/// response reads (see ``TokenPipe``). While no token has come, a ticker asks for keep-alives,
/// so that proxies do not cut a quiet stream.
final class GenerationFeed: Sendable {
  let tokens = TokenPipe()
  private let sawToken = Atomic<Bool>(false)
  private let state = Locked(State())

  private struct State {
    var end: Result<Void, ServingError>?
    var session: PhienStream?
  }

  private init() {}

  /// Opens a stream of `generator` for `client`; the refusal, if the core refuses it.
  static func open(
    core: ServingCore,
    generator: String,
    prompt: String,
    deadline: Duration?,
    client: String
  ) -> Result<GenerationFeed, ServingError> {
    let feed = GenerationFeed()
    let opened = core.openStream(
      generator: generator,
      prompt: prompt,
      deadline: deadline,
      client: client,
      pullable: false,
      executor: nil,
      onToken: { token in await feed.tokens.send(token) },
      onEnd: { result in feed.ended(result) }
    )
    switch opened {
    case .success(.task(let session)):
      feed.state.withLock { $0.session = session }
      return .success(feed)
    case .success(.pulled(let tokens)):
      // Not asked for; end it rather than leak its slot.
      tokens.slot.finish(.failure(CancellationError()))
      return .failure(ServingError(.internal, "the stream could not be started"))
    case .failure(let refusal):
      return .failure(refusal)
    }
  }

  private func ended(_ result: Result<Void, ServingError>) {
    state.withLock { $0.end = result }
    tokens.finish()
  }

  /// How the stream ended, once `tokens` has finished.
  var end: Result<Void, ServingError> {
    state.withLock { $0.end } ?? .failure(ServingError(.cancelled, "the stream was abandoned"))
  }

  /// Notes that a token reached the response: keep-alives stop.
  func tokenArrived() {
    sawToken.store(true, ordering: .relaxed)
  }

  /// Stops the generator and frees the stream's slot, unless it ended already.
  func cancel() {
    tokens.leave()
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
      tokens.keepAlive()
    }
  }
}
