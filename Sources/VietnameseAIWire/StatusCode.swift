/// The status of a request or a connection, as carried by `ERROR` and `GOAWAY` frames.
///
/// A struct over the raw `UInt16` rather than an enum: a peer may send a code this version does
/// not know, which must still be representable (and is handled like ``internal``). See
/// `Protocol/PROTOCOL.md`, "Status codes".
public struct StatusCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt16

  public init(rawValue: UInt16) {
    self.rawValue = rawValue
  }

  /// Success. Never sent in an `ERROR` frame.
  public static let ok = StatusCode(rawValue: 0)
  /// A field of the request is malformed or out of range (bad UTF-8, empty batch, ...).
  public static let invalidArgument = StatusCode(rawValue: 1)
  /// No model or generator of that name.
  public static let unknownModel = StatusCode(rawValue: 2)
  /// The client's rate limit is exhausted; `retry_after_ms` says when to come back.
  public static let rateLimited = StatusCode(rawValue: 3)
  /// The model's batching queue is full.
  public static let queueFull = StatusCode(rawValue: 4)
  /// Too many streams at once, on the server or for this client.
  public static let tooManyStreams = StatusCode(rawValue: 5)
  /// The request's deadline passed before it had a result.
  public static let deadlineExceeded = StatusCode(rawValue: 6)
  /// The client cancelled the request.
  public static let cancelled = StatusCode(rawValue: 7)
  /// The server is shutting down or not serving.
  public static let unavailable = StatusCode(rawValue: 8)
  /// Missing or invalid auth token.
  public static let unauthenticated = StatusCode(rawValue: 9)
  /// The peer broke the protocol; the connection closes.
  public static let protocolError = StatusCode(rawValue: 10)
  /// A frame is larger than the receiver's maximum; the connection closes.
  public static let frameTooLarge = StatusCode(rawValue: 11)
  /// The server failed (a model threw, a bug).
  public static let `internal` = StatusCode(rawValue: 12)
  /// Client and server share no protocol version; the connection closes.
  public static let unsupportedVersion = StatusCode(rawValue: 13)
  /// A per-connection limit was reached (concurrent requests, connections).
  public static let resourceExhausted = StatusCode(rawValue: 14)
  /// The server did not start the request and never will: it had begun draining when the
  /// request arrived. Sending it again, to another server, cannot run it twice. Version 2;
  /// a version-1 connection gets ``unavailable`` instead.
  public static let refused = StatusCode(rawValue: 15)

  /// Every code this version defines, in numeric order.
  public static let allKnown: [StatusCode] = [
    .ok, .invalidArgument, .unknownModel, .rateLimited, .queueFull, .tooManyStreams,
    .deadlineExceeded, .cancelled, .unavailable, .unauthenticated, .protocolError,
    .frameTooLarge, .internal, .unsupportedVersion, .resourceExhausted, .refused,
  ]

  private static let names = [
    "OK", "INVALID_ARGUMENT", "UNKNOWN_MODEL", "RATE_LIMITED", "QUEUE_FULL", "TOO_MANY_STREAMS",
    "DEADLINE_EXCEEDED", "CANCELLED", "UNAVAILABLE", "UNAUTHENTICATED", "PROTOCOL_ERROR",
    "FRAME_TOO_LARGE", "INTERNAL", "UNSUPPORTED_VERSION", "RESOURCE_EXHAUSTED", "REFUSED",
  ]

  /// The specification's name of the code, e.g. `RATE_LIMITED`, or `UNKNOWN(n)`.
  public var name: String {
    Int(rawValue) < Self.names.count ? Self.names[Int(rawValue)] : "UNKNOWN(\(rawValue))"
  }

  /// The code named `name` in the specification, if any.
  public init?(name: String) {
    guard let index = Self.names.firstIndex(of: name) else { return nil }
    self.init(rawValue: UInt16(index))
  }

  public var description: String { name }
}
