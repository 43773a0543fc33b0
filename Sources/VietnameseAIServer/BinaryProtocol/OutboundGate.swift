import DequeModule
@_spi(Locking) import VietnameseAIConcurrency

/// Lets generator tasks hand tokens to a connection's event loop without outrunning the
/// socket.
///
/// A generator takes a slot before it hands a token over and the event loop gives the slot
/// back once the token is written into the connection's buffer. When the channel stops being
/// writable (the peer reads slowly and the kernel's buffer is full) or too many tokens are on
/// their way, generators wait here: the stream slows down instead of the server buffering
/// without bound. Closing the gate fails every waiter, so generators of a closed connection
/// stop at once.
///
/// Tokens also travel through the gate: ``push(_:id:)`` queues one and says whether the event
/// loop must be asked to drain the queue, so a generator producing a burst of tokens costs the
/// loop one scheduled job per burst rather than one per token.
final class OutboundGate: Sendable {
  private struct State {
    var writable = true
    var inTransit = 0
    var closed = false
    var nextWaiter: UInt64 = 0
    var waiters = Deque<(id: UInt64, continuation: CheckedContinuation<Void, any Error>)>()
    var pending: [(id: UInt32, token: String)] = []
    var drainScheduled = false

    /// Hands free slots to waiters, first come first served.
    /// Appends a token whose slot is taken; true if a drain must be scheduled.
    mutating func enqueue(_ token: String, id: UInt32) -> Bool {
      pending.append((id, token))
      if drainScheduled { return false }
      drainScheduled = true
      return true
    }

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

  /// Queues a token for the event loop to write, waiting first for a free slot if the channel
  /// is not writable or too many tokens are on their way.
  ///
  /// - Returns: Whether the caller must schedule ``takePending()`` on the loop: true for the
  ///   first token since the last drain.
  func push(_ token: String, id: UInt32) async throws -> Bool {
    // The common case takes the lock once: a slot is free and nobody waits before us.
    let queued = try state.withLock { state throws -> Bool? in
      if state.closed { throw CancellationError() }
      guard state.writable && state.inTransit < limit && state.waiters.isEmpty else { return nil }
      state.inTransit += 1
      return state.enqueue(token, id: id)
    }
    if let queued { return queued }
    try await acquire()
    return state.withLock { $0.enqueue(token, id: id) }
  }

  /// Takes the queued tokens, oldest first, and frees their slots. Called on the event loop,
  /// which writes them into the connection's buffer before anything else happens.
  func takePending() -> [(id: UInt32, token: String)] {
    let (tokens, admitted) = state.withLock { state in
      let tokens = state.pending
      state.pending.removeAll(keepingCapacity: true)
      state.drainScheduled = false
      state.inTransit -= tokens.count
      return (tokens, state.admitWaiters(limit: limit))
    }
    for waiter in admitted { waiter.resume() }
    return tokens
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
