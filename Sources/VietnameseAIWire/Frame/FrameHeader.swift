/// The fixed 11-byte header that starts every frame.
///
/// ```
///  0       1       2       3       4       5       6       7       8       9      10
/// +-------+-------+-------+-------+-------+-------+-------+-------+-------+-------+-------+
/// |        payload length         |version| type  | flags |          request id           |
/// |          (u32, BE)            | (u8)  | (u8)  | (u8)  |           (u32, BE)           |
/// +-------+-------+-------+-------+-------+-------+-------+-------+-------+-------+-------+
/// | payload (payload length bytes) ...
/// ```
///
/// The length comes first so that a reader can bound (and reject) a frame before it buffers any
/// of it. It counts the payload only, as it is on the wire (compressed, if the frame is).
public struct FrameHeader: Hashable, Sendable {
  /// Bytes in a header.
  public static let size = 11

  /// Payload bytes that follow the header.
  public var payloadLength: UInt32
  public var version: UInt8
  /// The raw type byte; ``FrameType`` gives its meaning when it is a known type.
  public var type: UInt8
  public var flags: FrameFlags
  /// The request this frame belongs to; 0 for frames about the connection.
  public var requestID: UInt32

  public init(payloadLength: UInt32, version: UInt8, type: UInt8, flags: FrameFlags, requestID: UInt32) {
    self.payloadLength = payloadLength
    self.version = version
    self.type = type
    self.flags = flags
    self.requestID = requestID
  }
}

/// Protocol-wide constants.
public enum WireProtocol {
  /// The version byte of every frame header: 1, the framing versions 1 and 2 share.
  public static let version: UInt8 = 1
  /// Protocol versions this implementation speaks, newest first; the handshake picks one.
  public static let supportedVersions: [UInt8] = [2, 1]
  /// Default largest payload a receiver accepts: 4 MiB, as gRPC's default message size.
  public static let defaultMaxFrameSize = 4 * 1024 * 1024
  /// The smallest frame limit a peer may set: every connection frame (`WELCOME`, `ERROR`,
  /// `GOAWAY`) a server sends fits it.
  public static let minMaxFrameSize = 1024
  /// Largest `HELLO` payload a server reads from a peer it has not authenticated yet.
  public static let maxHelloSize = 64 * 1024
  /// Default smallest payload worth compressing.
  public static let defaultCompressionThreshold = 1024
  /// Compression algorithm identifiers used in `HELLO` and `WELCOME`.
  public static let compressionIdentity: UInt8 = 0
  public static let compressionZlib: UInt8 = 1

  /// A duration as the protocol's `u32` milliseconds (`deadline_ms`, `retry_after_ms`):
  /// rounded up, so that a peer never acts early; 0 for zero or less; at most `UInt32.max`.
  ///
  /// A client converts every call's deadline, so this is one machine division: `Duration`
  /// counts attoseconds in 128 bits (its public `_high` and `_low` halves), and dividing them
  /// by 10^15 at once fits one 128-by-64-bit division, where `components` divides all 128
  /// bits by 10^18 in software.
  public static func milliseconds(roundingUp duration: Duration) -> UInt32 {
    let high = duration._high
    let low = duration._low
    if high < 0 || (high == 0 && low == 0) { return 0 }
    let attosecondsPerMillisecond: UInt64 = 1_000_000_000_000_000
    // Beyond this the quotient needs more than 64 bits (and is far beyond `UInt32.max`).
    guard UInt64(high) < attosecondsPerMillisecond else { return .max }
    let (quotient, remainder) = attosecondsPerMillisecond.dividingFullWidth((UInt64(high), low))
    guard quotient < UInt64(UInt32.max) else { return .max }
    return UInt32(quotient) + (remainder == 0 ? 0 : 1)
  }

  /// A `deadline_ms` as a duration: `nil` for 0, which means no deadline.
  public static func deadline(milliseconds: UInt32) -> Duration? {
    milliseconds == 0 ? nil : .milliseconds(Int64(milliseconds))
  }
}
