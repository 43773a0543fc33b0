import NIOCore

/// One predict as a front door read it: the request id it answers under, the model, the input
/// and the deadline.
///
/// A struct, not a tuple: arrays of tuples are copied and destroyed through their runtime type
/// metadata.
struct PredictRequest {
  var id: UInt32
  var model: String
  var input: ByteBuffer
  /// Whole milliseconds the client will wait, from when the door read the request; 0 for none.
  var deadlineMilliseconds: UInt32
}
