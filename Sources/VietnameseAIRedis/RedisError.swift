/// A command that got no reply: the reply was malformed, the connection failed or closed, or
/// the reply did not come in time. An error *reply* from Redis is ``RESPValue/error(_:)``,
/// which ``RedisConnection/send(_:)`` returns; a caller that needs a result turns it into
/// ``Code/commandFailed``.
public struct RedisError: Error, Hashable, Sendable, CustomStringConvertible {
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    let name: String
    /// Bytes that are not RESP, or a reply beyond the decoder's limits; the connection closes.
    public static let protocolError = Code(name: "protocol error")
    /// The connection could not be made, failed, or closed before the reply.
    public static let connectionClosed = Code(name: "connection closed")
    /// No reply within the command's timeout; the connection closes, since later replies
    /// could no longer be matched to their commands.
    public static let timedOut = Code(name: "timed out")
    /// An address that is not `redis://HOST[:PORT][/DB]`.
    public static let invalidURL = Code(name: "invalid URL")
    /// Redis answered with an error where the caller needed a result (a script that failed).
    public static let commandFailed = Code(name: "command failed")
    public var description: String { name }
  }

  public var code: Code
  public var message: String

  public init(_ code: Code, _ message: String) {
    self.code = code
    self.message = message
  }

  public var description: String { "Redis \(code): \(message)" }
}
