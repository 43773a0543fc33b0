public import NIOCore

/// A reply of the Redis serialization protocol, version 2 (RESP2): what a Redis server
/// answers a command with.
public enum RESPValue: Hashable, Sendable {
  case simpleString(String)
  /// An error reply (`-ERR ...`, `-NOSCRIPT ...`): the command failed, the connection is fine.
  case error(String)
  case integer(Int64)
  /// `nil` is the null bulk string (`$-1`), as `GET` answers for a missing key.
  case bulkString(ByteBuffer?)
  /// `nil` is the null array (`*-1`).
  case array([RESPValue]?)

  /// The value as text: a simple or bulk string (UTF-8), or an integer written out.
  public var text: String? {
    switch self {
    case .simpleString(let text): text
    case .bulkString(let bytes?): String(buffer: bytes)
    case .integer(let value): String(value)
    default: nil
    }
  }

  /// The value as an integer: an integer reply, or a string that holds one.
  public var integer: Int64? {
    if case .integer(let value) = self { return value }
    return text.flatMap { Int64($0) }
  }
}
