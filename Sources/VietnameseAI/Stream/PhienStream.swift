/// A handle on a stream started with ``MayChuStream/sinhCallback(_:clientID:onToken:onDone:onError:)``.
///
/// Dropping the handle does not stop the stream; ``huy()`` does.
public struct PhienStream: Sendable {
  private let session: StreamSession?

  init(session: StreamSession?) {
    self.session = session
  }

  /// Cancels the stream: its generator is cancelled, its slot freed, and `onError` receives
  /// `CancellationError` unless the stream had already ended.
  public func huy() {
    session?.cancel()
  }
}
