/// What one batch did, for an observer that exports metrics (see
/// ``MayChuBatch/observe(_:)``): reported once per batch, after its requests are answered.
package struct BatchReport: Sendable {
  /// Requests in the batch.
  package var size: Int
  /// How long each request waited in the queue before the model received the batch, in
  /// nanoseconds, in the batch's order.
  package var queueNanoseconds: [Int64]
  /// How long the model took on the batch, in nanoseconds.
  package var computeNanoseconds: Int64
  /// Whether the model answered the batch (one output per input).
  package var succeeded: Bool
}

/// The observer of a batcher's reports, held by reference: a closure kept in a generic
/// container is re-wrapped in a conversion thunk each time it is read out, and calling
/// through those thunks cost more than the batches themselves.
final class BatchObserver: Sendable {
  let report: @Sendable (BatchReport) -> Void

  init(report: @escaping @Sendable (BatchReport) -> Void) {
    self.report = report
  }
}
