import VietnameseAIWire

extension ServingError.Code {
  /// The code of a worker's `ERROR` for its work: the statuses a worker may send keep their
  /// meaning; any other is the worker's failure.
  init(_ status: StatusCode) {
    switch status {
    case .invalidArgument: self = .invalidArgument
    case .deadlineExceeded: self = .deadlineExceeded
    case .cancelled: self = .cancelled
    case .unavailable: self = .unavailable
    case .resourceExhausted: self = .resourceExhausted
    default: self = .internal
    }
  }
}
