@_spi(Locking) import VietnameseAIConcurrency

/// Tokens from a generator's task to the response that writes them, in batches.
///
/// The generator appends; once `capacity` tokens wait, it suspends until the response has
/// taken them, so a client that reads slowly slows its generator down and the tokens in
/// between stay bounded. The response takes everything waiting at once and writes it in one
/// piece: a fast generator costs a hand-off per batch, not per token. One producer, one
/// consumer; either side's cancellation releases the other.
final class TokenPipe: Sendable {
  /// What the response takes at once.
  struct Batch {
    var tokens: [String]
    /// Whether a keep-alive was asked for since the last batch.
    var keepAlive: Bool
  }

  private struct State {
    var tokens: [String] = []
    var keepAlive = false
    var finished = false
    var consumerGone = false
    var producerCancelled = false
    var consumer: CheckedContinuation<Void, Never>?
    var producer: CheckedContinuation<Void, Never>?
  }

  let capacity: Int
  private let state = Locked(State())

  init(capacity: Int = 256) {
    self.capacity = capacity
  }

  // MARK: Producer

  /// Appends a token; waits while `capacity` tokens are waiting. A token sent after the
  /// consumer left is dropped.
  func send(_ token: String) async {
    let (consumer, full) = state.withLock { state -> (CheckedContinuation<Void, Never>?, Bool) in
      if state.finished || state.consumerGone { return (nil, false) }
      state.tokens.append(token)
      defer { state.consumer = nil }
      return (state.consumer, state.tokens.count >= capacity)
    }
    consumer?.resume()
    guard full else { return }
    await withTaskCancellationHandler {
      await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let resumeNow = state.withLock { state -> Bool in
          if state.tokens.count < capacity || state.finished || state.consumerGone || state.producerCancelled
          {
            return true
          }
          state.producer = continuation
          return false
        }
        if resumeNow { continuation.resume() }
      }
    } onCancel: {
      let producer = state.withLock { state in
        state.producerCancelled = true
        defer { state.producer = nil }
        return state.producer
      }
      producer?.resume()
    }
  }

  /// Asks the consumer to send a keep-alive, if it has nothing else to send.
  func keepAlive() {
    let consumer = state.withLock { state in
      state.keepAlive = true
      defer { state.consumer = nil }
      return state.consumer
    }
    consumer?.resume()
  }

  /// No more tokens: the consumer gets what is waiting, then `nil`.
  func finish() {
    end { $0.finished = true }
  }

  // MARK: Consumer

  /// Everything waiting, once there is something; `nil` once finished and drained, or when
  /// the calling task is cancelled.
  func next() async -> Batch? {
    while true {
      let (batch, producer, done) = state.withLock {
        state -> (Batch?, CheckedContinuation<Void, Never>?, Bool) in
        if !state.tokens.isEmpty || state.keepAlive {
          let batch = Batch(tokens: state.tokens, keepAlive: state.keepAlive)
          state.tokens = []
          state.keepAlive = false
          defer { state.producer = nil }
          return (batch, state.producer, false)
        }
        return (nil, nil, state.finished || state.consumerGone)
      }
      producer?.resume()
      if let batch { return batch }
      if done { return nil }
      await withTaskCancellationHandler {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
          let resumeNow = state.withLock { state -> Bool in
            if !state.tokens.isEmpty || state.keepAlive || state.finished || state.consumerGone {
              return true
            }
            state.consumer = continuation
            return false
          }
          if resumeNow { continuation.resume() }
        }
      } onCancel: {
        leave()
      }
    }
  }

  /// The tokens waiting now, without waiting for any; releases a producer waiting for room.
  func takeWaiting() -> [String] {
    let (tokens, producer) = state.withLock { state -> ([String], CheckedContinuation<Void, Never>?) in
      let tokens = state.tokens
      state.tokens = []
      defer { state.producer = nil }
      return (tokens, state.producer)
    }
    producer?.resume()
    return tokens
  }

  /// The consumer is gone: pending and later tokens are dropped, a waiting producer released.
  func leave() {
    end { state in
      state.consumerGone = true
      state.tokens = []
    }
  }

  /// Applies `change`, then releases whichever side waits.
  private func end(_ change: (inout State) -> Void) {
    let (consumer, producer) = state.withLock { state in
      change(&state)
      defer {
        state.consumer = nil
        state.producer = nil
      }
      return (state.consumer, state.producer)
    }
    consumer?.resume()
    producer?.resume()
  }
}
