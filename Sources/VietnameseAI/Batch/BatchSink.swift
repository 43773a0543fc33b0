/// Receives, together, the outcomes of the requests a front end submitted with it.
///
/// With a completion closure per request, a server pays one allocation per request, and one
/// hop to the connection's thread per request whenever the batch ran on another thread. A
/// connection instead submits its requests with one sink and a tag each (the request id):
/// when a batch finishes, the sink gets all of its requests' outcomes from that batch in one
/// call, which the connection turns into one hop.
package final class BatchSink<KetQua: Sendable>: Sendable {
  /// One request's outcome, under the tag it was submitted with.
  package typealias Outcome = (tag: UInt32, result: Result<KetQua, any Error>)

  private let receive: @Sendable ([Outcome]) -> Void

  /// A sink that hands each group of outcomes to `receive`, on whatever thread finished them.
  package init(_ receive: @escaping @Sendable ([Outcome]) -> Void) {
    self.receive = receive
  }

  func deliver(_ outcomes: [Outcome]) {
    receive(outcomes)
  }
}
