import Synchronization
@_spi(Locking) import VietnameseAIConcurrency

/// One running stream ("phiên": session) of a ``MayChuStream``: its generator task, its timer,
/// and the promise to end exactly once. ``MayChuStream/sinhCallback(_:clientID:onToken:onDone:onError:)``
/// returns it as the stream's handle; the stream sequences hold one for each iteration.
///
/// Whoever ends the stream first wins: the generator running out, the generator failing, the
/// timeout or deadline, or the consumer leaving (``huy()``). Ending frees the client slot,
/// cancels both tasks and reports the outcome; every later attempt is ignored. The slot is
/// freed before ``huy()`` returns, so a consumer that stops reading sees `clientHienTai` drop
/// before its next line runs. Dropping the handle does not stop the stream.
public final class PhienStream: Sendable {
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
  private let state: Locked<State>
  /// The tokens delivered so far, counted by the generator's task.
  let progress = StreamProgress()

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
    self.state = Locked(State())
  }

  /// The handle of a stream that was refused before it started: it has nothing to cancel.
  static func refused(by server: MayChuStream) -> PhienStream {
    let stream = PhienStream(server: server, clientID: nil, startedAt: 0, onEnd: { _ in })
    stream.state.withLock { $0.finished = true }
    return stream
  }

  /// Cancels the stream: its generator is cancelled, its slot freed, and `onError` receives
  /// `CancellationError` unless the stream had already ended.
  public func huy() {
    finish(.failure(CancellationError()))
  }

  /// Stores the stream's tasks; cancels them at once if the stream already ended.
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
    server.release(clientID: clientID, startedAt: startedAt, outcome: outcome, progress: progress)
    onEnd(reported)
  }
}
