@_spi(Locking) import VietnameseAIConcurrency

/// Work an awaiting caller may cancel before or after it is queued: a cancellation that comes
/// first is applied when the ticket arrives.
final class CancellableWork: Sendable {
  private enum State {
    case waiting
    case queued(ModelTicket)
    case cancelled
  }

  private let state = Locked(State.waiting)

  /// Records the work's ticket; cancels it at once if the caller already gave up.
  func attach(_ ticket: ModelTicket) {
    let cancelled = state.withLock { state -> Bool in
      if case .cancelled = state { return true }
      state = .queued(ticket)
      return false
    }
    if cancelled { ticket.cancel() }
  }

  func cancel() {
    let ticket = state.withLock { state -> ModelTicket? in
      defer { state = .cancelled }
      if case .queued(let ticket) = state { return ticket }
      return nil
    }
    ticket?.cancel()
  }
}
