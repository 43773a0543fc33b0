/// Work queued in, or running on, a model's batcher: what a front door keeps to cancel it.
struct ModelTicket: Sendable {
  let model: ServedModel
  let ticket: UInt64

  /// Withdraws the work: queued inputs never reach the model, and its completion receives
  /// ``ServingError/Code/cancelled`` unless it was answered already.
  func cancel() {
    model.cancel(ticket)
  }
}
