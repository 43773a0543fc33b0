import DequeModule
import Synchronization
@_spi(Locking) import VietnameseAIConcurrency

/// A bounded single-producer, single-consumer channel of tokens with backpressure.
///
/// `AsyncThrowingStream` cannot be used here: its `yield` never waits, so a generator faster
/// than its reader would either grow the buffer without bound or drop tokens. `send` here
/// suspends while `capacity` tokens are unread, so a slow reader slows the generator down.
///
/// The consumer side ends in three ways: the producer finishes (normally or with an error),
/// the consumer's task is cancelled while it waits (`next` throws `CancellationError`), or the
/// consumer goes away (its owner calls `consumerGone`). In the latter two cases a waiting
/// producer is woken with `CancellationError`, and later sends fail at once.
final class TokenChannel: Sendable {
  private struct State {
    var buffer = Deque<String>()
    /// Set once by `finish`; `.success` is a normal end.
    var terminal: Result<Void, any Error>?
    /// Whether the terminal result was handed to the consumer already.
    var terminalDelivered = false
    var consumerGone = false
    var consumer: CheckedContinuation<String?, any Error>?
    var producer: CheckedContinuation<Void, any Error>?

    /// Takes the next buffered token, or the end once the buffer is empty (the terminal result
    /// is reported once, then a plain end).
    mutating func takeReady() -> Ready? {
      if let token = buffer.popFirst() {
        defer { producer = nil }
        return .token(token, unblocking: producer)
      }
      guard let terminal else { return nil }
      defer { terminalDelivered = true }
      return .end(terminalDelivered ? .success(()) : terminal)
    }
  }

  private let capacity: Int
  private let state = Locked(State())
  init(capacity: Int) {
    self.capacity = max(capacity, 1)
  }

  // MARK: Producer

  /// Hands one token to the consumer, suspending while the buffer is full.
  ///
  /// - Throws: `CancellationError` if the consumer is gone or the channel finished, or if the
  ///   producing task is cancelled while it waits.
  func send(_ token: String) async throws {
    enum Step {
      case done
      case handOff(CheckedContinuation<String?, any Error>)
      case wait
      case closed
    }
    let step = state.withLock { state -> Step in
      if state.consumerGone || state.terminal != nil { return .closed }
      if let consumer = state.consumer {
        state.consumer = nil
        return .handOff(consumer)
      }
      if state.buffer.count < capacity {
        state.buffer.append(token)
        return .done
      }
      return .wait
    }
    switch step {
    case .done: return
    case .closed: throw CancellationError()
    case .handOff(let consumer):
      consumer.resume(returning: token)
      return
    case .wait:
      break
    }
    // Buffer full: wait for room, then append.
    try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        let resumeNow: Result<Void, any Error>? = state.withLock { state in
          if state.consumerGone || state.terminal != nil || Task.isCancelled {
            return .failure(CancellationError())
          }
          if state.buffer.count < capacity { return .success(()) }
          state.producer = continuation
          return nil
        }
        if let resumeNow { continuation.resume(with: resumeNow) }
      }
    } onCancel: {
      let producer = state.withLock { state in
        defer { state.producer = nil }
        return state.producer
      }
      producer?.resume(throwing: CancellationError())
    }
    try await send(token)
  }

  /// Ends the stream. Tokens already buffered are still delivered, then the consumer sees the
  /// end (`nil`) or the error. Only the first call has an effect.
  func finish(_ result: Result<Void, any Error>) {
    let (consumer, producer) = state.withLock {
      state -> (CheckedContinuation<String?, any Error>?, CheckedContinuation<Void, any Error>?) in
      guard state.terminal == nil else { return (nil, nil) }
      state.terminal = result
      defer {
        state.producer = nil
        state.consumer = nil
      }
      // A waiting consumer has, by construction, an empty buffer: it gets the end now.
      if state.consumer != nil { state.terminalDelivered = true }
      return (state.consumer, state.producer)
    }
    producer?.resume(throwing: CancellationError())
    consumer?.resume(with: result.map { nil })
  }

  // MARK: Consumer

  /// The next token, or `nil` at the end.
  ///
  /// - Throws: the error the stream finished with, or `CancellationError` if the consuming
  ///   task is cancelled (which also ends the stream for the producer).
  func next() async throws -> String? {
    if let ready = state.withLock({ $0.takeReady() }) {
      return try ready.deliver()
    }
    return try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<String?, any Error>) in
        enum Now {
          case ready(Ready)
          case cancelled
          case parked
        }
        let now = state.withLock { state -> Now in
          if let ready = state.takeReady() { return .ready(ready) }
          if Task.isCancelled { return .cancelled }
          state.consumer = continuation
          return .parked
        }
        switch now {
        case .ready(let ready):
          continuation.resume(with: Result { try ready.deliver() })
        case .cancelled:
          continuation.resume(throwing: CancellationError())
          consumerGone()
        case .parked:
          break
        }
      }
    } onCancel: {
      let consumer = state.withLock { state in
        defer { state.consumer = nil }
        return state.consumer
      }
      if let consumer {
        consumer.resume(throwing: CancellationError())
        consumerGone()
      }
    }
  }

  /// What the consumer can have without waiting: a buffered token (whose removal may unblock
  /// the producer) or the end of the stream.
  fileprivate enum Ready {
    case token(String, unblocking: CheckedContinuation<Void, any Error>?)
    case end(Result<Void, any Error>)

    /// Wakes the producer if needed and returns the token, `nil` at the end, or throws the
    /// stream's error.
    func deliver() throws -> String? {
      switch self {
      case .token(let token, let producer):
        producer?.resume()
        return token
      case .end(let result):
        try result.get()
        return nil
      }
    }
  }

  /// The consumer will read no more: drop the buffer and wake the producer.
  func consumerGone() {
    let producer = state.withLock { state -> CheckedContinuation<Void, any Error>? in
      state.consumerGone = true
      state.buffer.removeAll()
      defer { state.producer = nil }
      return state.producer
    }
    producer?.resume(throwing: CancellationError())
  }
}
