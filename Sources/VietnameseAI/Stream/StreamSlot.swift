import Synchronization

/// One stream's hold on a slot of a ``MayChuStream``, for a front end that produces and
/// delivers the tokens itself (see ``MayChuStream/admit(clientID:)``).
///
/// The front end reports what it delivered and how the stream ended; the server counts it in
/// its statistics exactly as the streams it runs itself. Ending is idempotent: whoever ends
/// the stream first (the tokens running out, the timeout, the consumer leaving) decides the
/// outcome, and later calls change nothing.
package final class StreamSlot: Sendable {
  private let server: MayChuStream
  private let clientID: String?
  private let startedAt: Int64
  private let counted = Atomic<Bool>(false)
  private let ended = Atomic<Bool>(false)
  private let progress = StreamProgress()

  init(server: MayChuStream, clientID: String?, startedAt: Int64) {
    self.server = server
    self.clientID = clientID
    self.startedAt = startedAt
  }

  /// Counts `count` tokens handed to the consumer. Call it once per burst, not per token.
  package func delivered(_ count: Int) {
    guard count > 0 else { return }
    let first = !counted.load(ordering: .relaxed) && !counted.exchange(true, ordering: .relaxed)
    server.delivered(count, first: first, startedAt: startedAt, progress: progress)
  }

  /// Ends the stream and frees its slot, unless it has ended already.
  ///
  /// - Parameter result: `.success` when the tokens ran out; `CancellationError` when the
  ///   consumer left; a ``VietnameseAIError`` (`streamTimeout`) from the front end's timer;
  ///   any other error is the generator's.
  /// - Returns: What to tell the consumer (any other error is wrapped as
  ///   ``VietnameseAIError/Code/generatorFailed``), or `nil` if the stream had ended already.
  @discardableResult
  package func finish(_ result: Result<Void, any Error>) -> Result<Void, any Error>? {
    guard !ended.exchange(true, ordering: .acquiringAndReleasing) else { return nil }
    let (outcome, reported) = MayChuStream.settle(result)
    server.release(clientID: clientID, startedAt: startedAt, outcome: outcome, progress: progress)
    return reported
  }

  deinit {
    // A front end that drops a slot without ending it must not leak the server's capacity.
    if !ended.load(ordering: .acquiring) {
      server.release(clientID: clientID, startedAt: startedAt, outcome: .cancelled, progress: progress)
    }
  }
}
