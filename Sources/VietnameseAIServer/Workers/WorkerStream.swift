import NIOCore
@_spi(Locking) import VietnameseAIConcurrency
import VietnameseAIWire

/// One generation on a worker (`Protocol/PROTOCOL.md` §11.2): the tokens the worker sent and
/// the consumer has not taken, its end, and the credit the consumer gives back.
///
/// The worker may send at most ``window`` tokens ahead of the consumer; each half window the
/// consumer takes is granted again, so a slow client slows the worker's generation down.
final class WorkerStream: Sendable {
  static let window: UInt32 = 32

  private let state = Locked(State())
  /// Sends a frame about this stream to the worker.
  private let send: @Sendable (WorkerMessage) -> Void

  private struct State {
    var tokens: [String] = []
    var taken = 0
    var end: Result<Void, ServingError>?
    var waiter: CheckedContinuation<Void, Never>?
    var consumedSinceCredit: UInt32 = 0
    var abandoned = false
  }

  init(send: @escaping @Sendable (WorkerMessage) -> Void) {
    self.send = send
  }

  // MARK: From the worker

  /// Tokens arrived; `false` if the worker sent more than its credit allows.
  func deliver(_ tokens: [String]) -> Bool {
    let (waiter, withinCredit) = state.withLock { state -> (CheckedContinuation<Void, Never>?, Bool) in
      if state.abandoned || state.end != nil { return (nil, true) }
      state.tokens += tokens
      defer { state.waiter = nil }
      return (state.waiter, state.tokens.count - state.taken <= Int(Self.window))
    }
    waiter?.resume()
    return withinCredit
  }

  /// The generation ended (its terminal frame, or the connection's end).
  func finish(_ result: Result<Void, ServingError>) {
    let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
      if state.end == nil { state.end = result }
      defer { state.waiter = nil }
      return state.waiter
    }
    waiter?.resume()
  }

  // MARK: From the consumer

  /// The next token, `nil` at the end.
  ///
  /// - Throws: the worker's error, or `CancellationError` when the calling task is cancelled
  ///   (the worker is then told to stop).
  func next() async throws -> String? {
    while true {
      let (token, end, credit) = state.withLock { state -> (String?, Result<Void, ServingError>?, UInt32) in
        if state.taken < state.tokens.count {
          let token = state.tokens[state.taken]
          state.taken += 1
          if state.taken > 64, state.taken * 2 > state.tokens.count {
            state.tokens.removeFirst(state.taken)
            state.taken = 0
          }
          state.consumedSinceCredit += 1
          guard state.consumedSinceCredit >= Self.window / 2 else { return (token, nil, 0) }
          defer { state.consumedSinceCredit = 0 }
          return (token, nil, state.consumedSinceCredit)
        }
        return (nil, state.end, 0)
      }
      if credit > 0 { send(.credit(credit)) }
      if let token { return token }
      if let end {
        try end.get()
        return nil
      }
      if Task.isCancelled {
        abandon()
        throw CancellationError()
      }
      await withTaskCancellationHandler {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
          let now = state.withLock { state -> Bool in
            if state.taken < state.tokens.count || state.end != nil || state.abandoned { return true }
            state.waiter = continuation
            return false
          }
          if now { continuation.resume() }
        }
      } onCancel: {
        abandon()
      }
    }
  }

  /// The consumer is gone: the worker is told to stop, and what it still sends is dropped.
  func abandon() {
    let (waiter, cancel) = state.withLock { state -> (CheckedContinuation<Void, Never>?, Bool) in
      let cancel = !state.abandoned && state.end == nil
      state.abandoned = true
      state.tokens = []
      state.taken = 0
      defer { state.waiter = nil }
      return (state.waiter, cancel)
    }
    waiter?.resume()
    if cancel { send(.cancelWork) }
  }
}

/// The tokens of a generator served by workers, for a ``TokenGenerator``: the generation
/// starts on an idle worker when the first token is asked for.
struct WorkerTokens: AsyncSequence, Sendable {
  typealias Element = String

  let pool: WorkerPool
  let prompt: String

  struct AsyncIterator: AsyncIteratorProtocol {
    let pool: WorkerPool
    let prompt: String
    var stream: Handle?

    /// Tells the worker to stop when the consumer drops the iterator without finishing.
    final class Handle: Sendable {
      let stream: WorkerStream
      init(_ stream: WorkerStream) { self.stream = stream }
      deinit { stream.abandon() }
    }

    mutating func next() async throws -> String? {
      if stream == nil { stream = Handle(try await pool.generate(prompt)) }
      return try await stream!.stream.next()
    }
  }

  func makeAsyncIterator() -> AsyncIterator {
    AsyncIterator(pool: pool, prompt: prompt)
  }
}
