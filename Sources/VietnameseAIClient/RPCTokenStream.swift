import DequeModule
@_spi(Locking) import VietnameseAIConcurrency

/// The tokens of one stream, as returned by ``RPCClient/stream(prompt:model:deadline:)``.
///
/// Iterate it once. It ends when the server sends `STREAM_END` and throws ``RPCError`` if
/// the stream fails. Dropping it before the end (breaking out of the loop, or never
/// iterating it), or cancelling the iterating task, cancels the stream on the server.
///
/// The event loop appends tokens as they are read; the consumer takes everything buffered in
/// one step and then reads its own copy without locking, so a fast stream costs one lock and at
/// most one wake-up per network read rather than per token. Tokens the caller has not read yet
/// are buffered without bound: the server is held back by TCP flow control only once the
/// client stops reading its socket.
public struct RPCTokenStream: AsyncSequence, Sendable {
  public typealias Element = String
  public typealias Failure = any Error

  let consumer: Consumer

  public func makeAsyncIterator() -> Iterator {
    Iterator(consumer: consumer)
  }

  public struct Iterator: AsyncIteratorProtocol {
    let consumer: Consumer
    private var ready: Deque<String> = []

    init(consumer: Consumer) {
      self.consumer = consumer
    }

    public mutating func next() async throws -> String? {
      if let token = ready.popFirst() { return token }
      switch try await consumer.buffer.take() {
      case .tokens(let tokens):
        ready = tokens
        return ready.popFirst()
      case .end:
        return nil
      }
    }
  }

  /// The reading end. When the last copy of the stream and its iterators is released before
  /// the stream ended, the stream is cancelled.
  final class Consumer: Sendable {
    let buffer: TokenBuffer
    let cancel: @Sendable () -> Void

    init(buffer: TokenBuffer, cancel: @escaping @Sendable () -> Void) {
      self.buffer = buffer
      self.cancel = cancel
    }

    deinit {
      if !buffer.isFinished { cancel() }
    }
  }
}

/// Tokens on their way from the event loop to the consumer of one stream.
///
/// The consumer's continuation only says "look again": tokens and the end always pass under
/// the lock, so the hand-over is ordered by the lock alone (which ThreadSanitizer also sees).
final class TokenBuffer: Sendable {
  enum Taken {
    case tokens(Deque<String>)
    case end
  }

  private struct State {
    var tokens: Deque<String> = []
    /// Every token that arrived, to check the count `STREAM_END` gives.
    var received: UInt32 = 0
    var end: Result<Void, any Error>?
    var endDelivered = false
    var waiter: CheckedContinuation<Void, Never>?
  }

  private let state = Locked(State())
  /// Called when the consuming task is cancelled while it waits.
  private let onCancel: Locked<(@Sendable () -> Void)?> = Locked(nil)

  /// Sets what a cancelled consumer does: cancel the stream, which finishes this buffer.
  func cancelsWith(_ cancel: @escaping @Sendable () -> Void) {
    onCancel.withLock { $0 = cancel }
  }

  /// Whether the stream has ended (its end may not have been read yet).
  var isFinished: Bool { state.withLock { $0.end != nil } }

  /// Tokens from the loop: a run of one stream's tokens from one read, under one lock.
  func append(contentsOf tokens: [String]) {
    let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
      guard state.end == nil else { return nil }
      state.tokens.append(contentsOf: tokens)
      state.received &+= UInt32(truncatingIfNeeded: tokens.count)
      defer { state.waiter = nil }
      return state.waiter
    }
    waiter?.resume()
  }

  /// Ends the stream at the server's `STREAM_END`, which counted `count` tokens: a count
  /// that differs from what arrived fails the stream instead.
  func finish(expecting count: UInt32) {
    let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
      guard state.end == nil else { return nil }
      if count == state.received {
        state.end = .success(())
      } else {
        state.end = .failure(
          RPCError(
            code: .protocolError,
            message: "the server counted \(count) tokens but \(state.received) arrived"
          )
        )
      }
      defer { state.waiter = nil }
      return state.waiter
    }
    waiter?.resume()
  }

  /// Ends the stream; tokens already buffered are still read first. Only the first call counts.
  func finish(_ result: Result<Void, any Error>) {
    let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
      guard state.end == nil else { return nil }
      state.end = result
      defer { state.waiter = nil }
      return state.waiter
    }
    waiter?.resume()
  }

  /// Everything buffered, or the end, waiting if there is neither.
  func take() async throws -> Taken {
    while true {
      if let ready = try state.withLock({ state throws -> Taken? in try Self.takeReady(&state) }) {
        return ready
      }
      await withTaskCancellationHandler {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
          let ready = state.withLock { state -> Bool in
            if !state.tokens.isEmpty || state.end != nil { return true }
            state.waiter = continuation
            return false
          }
          if ready { continuation.resume() }
        }
      } onCancel: {
        // Cancelling the stream finishes this buffer (with `cancelled`), which wakes the waiter.
        onCancel.withLock { $0 }?()
      }
    }
  }

  private static func takeReady(_ state: inout State) throws -> Taken? {
    if !state.tokens.isEmpty {
      defer { state.tokens = [] }
      return .tokens(state.tokens)
    }
    guard let end = state.end else { return nil }
    if state.endDelivered { return .end }
    state.endDelivered = true
    try end.get()
    return .end
  }
}
