@_spi(Locking) import VietnameseAIConcurrency

/// Whether the client of one HTTP connection is still there, and the queued work to withdraw
/// when it leaves.
///
/// A connection runs one request at a time, so one slot is enough. The door reads a closed
/// input as the client leaving, as Hummingbird's own inbound-close cancellation does: a client
/// cannot read an answer to a request it abandoned.
final class ClientPresence: Sendable {
  private enum State {
    case here(CancellableWork?)
    case gone
  }

  private let state = Locked(State.here(nil))

  /// Watches `work` until ``unwatch()``; cancels it at once if the client already left.
  func watch(_ work: CancellableWork) {
    let gone = state.withLock { state -> Bool in
      guard case .here = state else { return true }
      state = .here(work)
      return false
    }
    if gone { work.cancel() }
  }

  func unwatch() {
    state.withLock { state in
      if case .here = state { state = .here(nil) }
    }
  }

  /// The client closed its side or the connection went down: withdraws the watched work.
  func left() {
    let work = state.withLock { state -> CancellableWork? in
      defer { state = .gone }
      if case .here(let work) = state { return work }
      return nil
    }
    work?.cancel()
  }
}
