import VietnameseAIWire

/// Why a call failed: the server's status, or what went wrong on the way to it.
///
/// The codes mirror the protocol's status codes, so a caller can react to each: back off for
/// ``Code/rateLimited`` (``retryAfter`` says how long), retry elsewhere on ``Code/queueFull``
/// or ``Code/unavailable``, give up on ``Code/invalidArgument``. A connection that could not
/// be made or was lost is ``Code/unavailable``; a call whose deadline passed is
/// ``Code/deadlineExceeded``; a call whose task was cancelled is ``Code/cancelled``.
public struct RPCError: Error, Hashable, Sendable, CustomStringConvertible {
  public var code: Code
  public var message: String
  /// For ``Code/rateLimited``: how long until a request would be allowed.
  public var retryAfter: Duration?
  /// No server can have run the request: it never left this client (the connection was gone,
  /// draining or full before it was written), or the server refused it unstarted
  /// (``Code/refused``). Sending it again, anywhere, cannot run it twice. ``RPCClientPool``
  /// retries such calls on another server.
  public var neverSent: Bool

  public init(code: Code, message: String, retryAfter: Duration? = nil, neverSent: Bool = false) {
    self.code = code
    self.message = message
    self.retryAfter = retryAfter
    self.neverSent = neverSent
  }

  public var description: String {
    var text = "\(code): \(message)"
    if let retryAfter { text += " (retry after \(retryAfter))" }
    return text
  }

  /// A status code. A struct rather than an enum, so that codes added by later protocol
  /// versions never break a caller's `switch`.
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    /// The protocol's number for the code.
    public var rawValue: UInt16

    public init(rawValue: UInt16) {
      self.rawValue = rawValue
    }

    public static let invalidArgument = Code(.invalidArgument)
    public static let unknownModel = Code(.unknownModel)
    public static let rateLimited = Code(.rateLimited)
    public static let queueFull = Code(.queueFull)
    public static let tooManyStreams = Code(.tooManyStreams)
    public static let deadlineExceeded = Code(.deadlineExceeded)
    public static let cancelled = Code(.cancelled)
    public static let unavailable = Code(.unavailable)
    public static let unauthenticated = Code(.unauthenticated)
    public static let protocolError = Code(.protocolError)
    public static let frameTooLarge = Code(.frameTooLarge)
    public static let `internal` = Code(.internal)
    public static let unsupportedVersion = Code(.unsupportedVersion)
    public static let resourceExhausted = Code(.resourceExhausted)
    /// The server had begun draining and never started the request; ``RPCError/neverSent``
    /// is true (protocol version 2).
    public static let refused = Code(.refused)

    init(_ status: StatusCode) {
      self.rawValue = status.rawValue
    }

    /// The protocol's name for the code, such as `RATE_LIMITED`.
    public var name: String { StatusCode(rawValue: rawValue).name }
    public var description: String { name }
  }
}

extension RPCError {
  init(_ info: WireMessage.ErrorInfo) {
    let code = StatusCode.allKnown.contains(info.code) && info.code != .ok ? info.code : .internal
    self.init(
      code: Code(code),
      message: info.message,
      retryAfter: info.code == .rateLimited ? .milliseconds(Int64(info.retryAfterMilliseconds)) : nil,
      // The server never started it: as safe to send again as a request that never left.
      neverSent: code == .refused
    )
  }

  init(_ error: WireError) {
    self.init(code: Code(error.code), message: error.message)
  }

  static func unavailable(_ message: String) -> RPCError {
    RPCError(code: .unavailable, message: message)
  }

  /// The same error, for a request that never left this client.
  var unsent: RPCError {
    var error = self
    error.neverSent = true
    return error
  }

  static let cancelledByCaller = RPCError(code: .cancelled, message: "the call's task was cancelled")
}
