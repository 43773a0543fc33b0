/// Receives, together, the outcomes of the requests a front end submitted with it.
///
/// With a completion closure per request, a server pays one allocation per request, and one
/// hop to the connection's thread per request whenever the batch ran on another thread. A
/// connection instead submits its requests with one sink and a tag each (the request id):
/// when a batch finishes, the sink gets all of its requests' outcomes from that batch in one
/// call, which the connection turns into one hop.
package final class BatchSink<KetQua: Sendable>: Sendable {
  /// One request's outcome, under the tag it was submitted with.
  ///
  /// A struct, not a tuple: arrays of a tuple with an enum inside are copied and destroyed
  /// through the tuple's runtime type metadata, element by element, several times per
  /// request.
  package struct Outcome {
    package var tag: UInt32
    package var result: Result<KetQua, any Error>

    @inlinable
    package init(tag: UInt32, result: Result<KetQua, any Error>) {
      self.tag = tag
      self.result = result
    }
  }

  /// The queue its requests wait in. A server gives each event loop a lane of its own.
  let lane: Int
  /// Where batches formed for the lane prefer to run: the lane's event loop.
  let executor: (any TaskExecutor)?
  private let receive: @Sendable ([Outcome]) -> Void

  /// A sink that hands each group of outcomes to `receive`, on whatever thread finished them.
  ///
  /// - Parameters:
  ///   - lane: The lane its requests queue in; lanes are numbered from 0, and a batcher keeps
  ///     as many as the highest number it saw.
  ///   - executor: Where batches formed for the lane prefer to run; `nil` lets Swift choose.
  package init(
    lane: Int = 0,
    executor: (any TaskExecutor)? = nil,
    _ receive: @escaping @Sendable ([Outcome]) -> Void
  ) {
    precondition(lane >= 0, "lanes are numbered from 0")
    self.lane = lane
    self.executor = executor
    self.receive = receive
  }

  func deliver(_ outcomes: [Outcome]) {
    receive(outcomes)
  }
}
