import DequeModule
import VietnameseAI

/// Lets generator tasks hand tokens to a connection's event loop without outrunning the
/// socket.
///
/// A generator takes a slot before it hands a token over and the event loop gives the slot
/// back once the token is written into the connection's buffer. When the channel stops being
/// writable (the peer reads slowly and the kernel's buffer is full) or too many tokens are on
/// their way, generators wait here: the stream slows down instead of the server buffering
/// without bound. Closing the gate fails every waiter, so generators of a closed connection
/// stop at once.
final class OutboundGate: Sendable {
  private struct State {
    var writable = true
    var inTransit = 0
    var closed = false
    var nextWaiter: UInt64 = 0
    var waiters = Deque<(id: UInt64, continuation: CheckedContinuation<Void, any Error>)>()

    /// Hands free slots to waiters, first come first served.
    mutating func admitWaiters(limit: Int) -> [CheckedContinuation<Void, any Error>] {
      var admitted: [CheckedContinuation<Void, any Error>] = []
      while writable, inTransit < limit, let waiter = waiters.popFirst() {
        inTransit += 1
        admitted.append(waiter.continuation)
      }
      return admitted
    }
  }

  /// Tokens that may be on their way to the event loop at once, over all streams of the
  /// connection.
  let limit: Int
  private let state = Locked(State())

  init(limit: Int = 256) {
    self.limit = limit
  }

  /// Takes a slot, waiting while the connection is not writable or full.
  ///
  /// - Throws: `CancellationError` if the gate is closed or the task is cancelled while
  ///   waiting.
  func acquire() async throws {
    let id = try state.withLock { state throws -> UInt64? in
      if state.closed { throw CancellationError() }
      if state.writable && state.inTransit < limit && state.waiters.isEmpty {
        state.inTransit += 1
        return nil
      }
      state.nextWaiter += 1
      return state.nextWaiter
    }
    guard let id else { return }
    try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        let (admitted, refused) = state.withLock { state -> ([CheckedContinuation<Void, any Error>], Bool) in
          if state.closed || Task.isCancelled { return ([], true) }
          state.waiters.append((id, continuation))
          return (state.admitWaiters(limit: limit), false)
        }
        if refused { continuation.resume(throwing: CancellationError()) }
        for waiter in admitted { waiter.resume() }
      }
    } onCancel: {
      let waiter = state.withLock { state -> CheckedContinuation<Void, any Error>? in
        guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
        return state.waiters.remove(at: index).continuation
      }
      waiter?.resume(throwing: CancellationError())
    }
  }

  /// Gives a slot back once its token is written.
  func release() {
    let admitted = state.withLock { state in
      state.inTransit -= 1
      return state.admitWaiters(limit: limit)
    }
    for waiter in admitted { waiter.resume() }
  }

  /// Follows the channel's writability.
  func setWritable(_ writable: Bool) {
    let admitted = state.withLock { state in
      state.writable = writable
      return state.admitWaiters(limit: limit)
    }
    for waiter in admitted { waiter.resume() }
  }

  /// Fails every waiter and every later ``acquire()``.
  func close() {
    let waiters = state.withLock { state in
      state.closed = true
      defer { state.waiters.removeAll() }
      return state.waiters.map(\.continuation)
    }
    for waiter in waiters { waiter.resume(throwing: CancellationError()) }
  }
}
