import VietnameseAIWire

extension StatusCode {
  /// The status that answers a request the serving core refused or failed with `code`.
  init(_ code: ServingError.Code) {
    switch code {
    case .invalidArgument: self = .invalidArgument
    case .unknownModel: self = .unknownModel
    case .rateLimited: self = .rateLimited
    case .queueFull: self = .queueFull
    case .tooManyStreams: self = .tooManyStreams
    case .deadlineExceeded: self = .deadlineExceeded
    case .cancelled: self = .cancelled
    case .unavailable: self = .unavailable
    case .refused: self = .refused
    case .unauthenticated: self = .unauthenticated
    case .resourceExhausted: self = .resourceExhausted
    case .internal: self = .internal
    }
  }
}

extension WireMessage.ErrorInfo {
  /// The longest message the server puts in an `ERROR`, in bytes: with its fixed fields, an
  /// `ERROR` then fits the smallest frame limit a client may have (1 KiB).
  static let maxMessageBytes = 1000

  /// The `ERROR` for a request the serving core refused or failed.
  init(_ error: ServingError) {
    self.init(
      code: StatusCode(error.code),
      retryAfterMilliseconds: error.retryAfter.map(WireProtocol.milliseconds(roundingUp:)) ?? 0,
      fitting: error.message
    )
  }

  /// An `ERROR` whose message is cut, at a character boundary, to ``maxMessageBytes``.
  init(code: StatusCode, retryAfterMilliseconds: UInt32 = 0, fitting message: String) {
    self.init(
      code: code,
      retryAfterMilliseconds: retryAfterMilliseconds,
      message: message.truncated(toUTF8Bytes: Self.maxMessageBytes)
    )
  }
}
