import Synchronization
@_spi(Locking) import VietnameseAIConcurrency

/// One running stream: its generator task, its timeout task, and the promise to end exactly
/// once.
///
/// Whoever ends the stream first wins: the generator running out, the generator failing, the
/// timeout, or the consumer leaving. `finish` frees the client slot, cancels both tasks and
/// reports the outcome; every later call is ignored. The slot is freed inside `finish` itself,
/// so a consumer that stops reading sees `clientHienTai` drop before its next line runs.
final class StreamSession: Sendable {
  private struct State {
    var finished = false
    var producer: Task<Void, Never>?
    var timer: Task<Void, Never>?
  }

  /// Wraps an error thrown while handing a token over, so that it is not mistaken for a
  /// failure of the generator.
  struct ConsumerFailure: Error {
    var error: any Error
  }

  private let server: MayChuStream
  private let clientID: String?
  private let startedAt: Int64
  private let onEnd: @Sendable (Result<Void, any Error>) -> Void
  private let state = Locked(State())

  init(
    server: MayChuStream,
    clientID: String?,
    startedAt: Int64,
    onEnd: @escaping @Sendable (Result<Void, any Error>) -> Void
  ) {
    self.server = server
    self.clientID = clientID
    self.startedAt = startedAt
    self.onEnd = onEnd
  }

  /// Stores the session's tasks; cancels them at once if the session already ended.
  func attach(producer: Task<Void, Never>, timer: Task<Void, Never>?) {
    let ended = state.withLock { state -> Bool in
      if state.finished { return true }
      state.producer = producer
      state.timer = timer
      return false
    }
    if ended {
      producer.cancel()
      timer?.cancel()
    }
  }

  /// Ends the stream with `result` unless it has ended already.
  func finish(_ result: Result<Void, any Error>) {
    let tasks = state.withLock { state -> (Task<Void, Never>?, Task<Void, Never>?)? in
      if state.finished { return nil }
      state.finished = true
      defer {
        state.producer = nil
        state.timer = nil
      }
      return (state.producer, state.timer)
    }
    guard let (producer, timer) = tasks else { return }
    producer?.cancel()
    timer?.cancel()

    let (outcome, reported) = MayChuStream.settle(result)
    server.release(clientID: clientID, startedAt: startedAt, outcome: outcome)
    onEnd(reported)
  }

  /// Ends the stream on behalf of its consumer.
  func cancel() {
    finish(.failure(CancellationError()))
  }
}
