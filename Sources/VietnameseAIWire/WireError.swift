/// A violation of the wire protocol, or a request the protocol layer must refuse.
///
/// Decoding never traps on peer input: every malformed byte sequence becomes a `WireError`
/// whose ``code`` is the status to answer with. ``closesConnection`` separates the two kinds
/// the specification distinguishes:
/// - connection errors (the byte stream can no longer be trusted: an impossible length, an
///   unknown frame type, a bad compression stream): answer `ERROR` on request id 0, then close;
/// - request errors (the frame was well delimited but a field is unacceptable, e.g. a model
///   name that is not UTF-8): answer `ERROR` on that request id and carry on.
public struct WireError: Error, Hashable, Sendable, CustomStringConvertible {
  /// The status to report.
  public var code: StatusCode
  /// What was wrong, for a person.
  public var message: String
  /// The request concerned, or `nil` for the connection as a whole.
  public var requestID: UInt32?
  /// Whether the connection must be closed after reporting the error.
  public var closesConnection: Bool

  public init(code: StatusCode, message: String, requestID: UInt32? = nil, closesConnection: Bool) {
    self.code = code
    self.message = message
    self.requestID = requestID
    self.closesConnection = closesConnection
  }

  /// A connection-level protocol error.
  package static func protocolViolation(_ message: String) -> WireError {
    WireError(code: .protocolError, message: message, closesConnection: true)
  }

  /// A frame whose declared payload exceeds the receiver's limit: a connection error.
  static func frameTooLarge(_ length: UInt32, limit: Int) -> WireError {
    WireError(
      code: .frameTooLarge,
      message: "frame of \(length) bytes exceeds the limit of \(limit)",
      closesConnection: true
    )
  }

  /// A request-level invalid argument.
  static func invalidArgument(_ message: String, requestID: UInt32) -> WireError {
    WireError(code: .invalidArgument, message: message, requestID: requestID, closesConnection: false)
  }

  public var description: String {
    let scope = requestID.map { "request \($0)" } ?? "connection"
    return "\(code.name) (\(scope)\(closesConnection ? ", closes connection" : "")): \(message)"
  }
}
