import DequeModule
import NIOCore
import VietnameseAIWire

/// Decides when a connection's pulled streams give tokens: turns after the loop's polls for
/// I/O, bursts per turn, pacing, and each stream's time limit.
///
/// A turn happens after the loop's next poll (``PollYield``), never within the current tick,
/// even for a paced stream whose timer fired. A loop runs every job and timer that falls due
/// before it polls again, so turns run straight from the timers would, once the streams'
/// tokens cost more than their pace leaves, keep the loop in its queue for good: no read, no
/// `CANCEL`, no handshake on that loop while the streams last. Through the poll, a timer only
/// marks its stream due, and streams fall behind their pace instead of taking the loop.
///
/// Confined to the connection's event loop.
final class PulledStreamScheduler {
  /// Tokens one unpaced stream gives per turn: enough to amortise the turn, few enough that a
  /// hundred streams on one connection take turns fairly.
  static let tokensPerTurn = 64
  /// Bytes after which a turn stops, so that its output stays bounded.
  static let turnBytes = 64 * 1024

  /// How a stream's burst in a turn ended, if it ended the stream.
  enum End {
    /// The generator has no more tokens.
    case exhausted
    /// A token could not be written (larger than the client accepts).
    case refused(WireError)
  }

  private let loop: any EventLoop
  private let yield: PollYield
  private let onTurn: () -> Void
  private let onLimit: (PulledStream) -> Void
  /// Streams whose next tokens are due, in turn order.
  private var runnable = Deque<PulledStream>()
  private var turnRequested = false

  /// - Parameters:
  ///   - onTurn: Runs a turn (the connection calls ``runTurn(write:report:)`` from it).
  ///   - onLimit: A stream reached its time limit.
  init(
    loop: any EventLoop,
    yield: PollYield,
    onTurn: @escaping () -> Void,
    onLimit: @escaping (PulledStream) -> Void
  ) {
    self.loop = loop
    self.yield = yield
    self.onTurn = onTurn
    self.onLimit = onLimit
  }

  /// Whether streams wait for a turn.
  var hasRunnable: Bool { !runnable.isEmpty }

  /// Starts a stream: arms its limit and queues it for the next turn.
  func start(_ stream: PulledStream) {
    if let limit = stream.limit {
      let onLimit = self.onLimit
      stream.limitTimer = loop.assumeIsolated().scheduleTask(in: TimeAmount(limit.after)) { onLimit(stream) }
    }
    makeRunnable(stream)
  }

  /// Asks for a turn if streams wait and the connection can take their bytes: after a turn's
  /// flush, and when the connection becomes writable again.
  func resume(writable: Bool) {
    if writable && hasRunnable { requestTurn() }
  }

  /// Forgets every stream: the connection closed.
  func stopAll() {
    for stream in runnable { stream.stop() }
    runnable.removeAll()
  }

  /// Gives every runnable stream its tokens for this turn.
  ///
  /// `write` writes up to the given number of a stream's tokens (taking them from
  /// ``PulledStream/next()``) and says how many it wrote, how it stopped, and how many bytes
  /// now wait to be flushed. A turn stops early once a turn's worth of bytes waits; the streams
  /// left keep their place. Streams with more to give are queued again (a paced one when its
  /// pace allows). `report` is told of each stream that wrote or ended, after its write.
  func runTurn(
    write: (PulledStream, Int) -> (sent: Int, run: FrameWriter.TokenRun, pendingBytes: Int),
    report: (PulledStream, _ sent: Int, End?) -> Void
  ) {
    var turns = runnable.count
    while turns > 0, let stream = runnable.popFirst() {
      turns -= 1
      // A stream that ended since it was queued (cancelled, timed out) is dropped.
      guard !stream.isStopped else { continue }
      let (sent, run, pendingBytes) = write(stream, stream.isPaced ? 1 : Self.tokensPerTurn)
      if sent > 0 { stream.delivered(sent) }
      var end: End?
      if case .failed(let failure) = run {
        end = .refused(failure)
      } else if run.isExhausted || (stream.isPaced && !stream.hasMore) {
        end = .exhausted
      } else if stream.isPaced {
        stream.paceTimer = loop.assumeIsolated().scheduleTask(in: stream.pace) { [weak self] in
          stream.paceTimer = nil
          self?.makeRunnable(stream)
        }
      } else {
        runnable.append(stream)
      }
      if sent > 0 || end != nil { report(stream, sent, end) }
      if pendingBytes >= Self.turnBytes { break }
    }
  }

  private func makeRunnable(_ stream: PulledStream) {
    guard !stream.isStopped else { return }
    runnable.append(stream)
    requestTurn()
  }

  private func requestTurn() {
    guard !turnRequested else { return }
    turnRequested = true
    yield.afterNextPoll { [weak self] in
      guard let self else { return }
      self.turnRequested = false
      self.onTurn()
    }
  }
}

@available(*, unavailable)
extension PulledStreamScheduler: Sendable {}
