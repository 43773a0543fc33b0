public import NIOCore

/// Writes commands as RESP arrays of bulk strings, the form a Redis server reads.
public enum RESPEncoder {
  public static func write(command arguments: [String], into buffer: inout ByteBuffer) {
    buffer.writeString("*\(arguments.count)\r\n")
    for argument in arguments {
      buffer.writeString("$\(argument.utf8.count)\r\n")
      buffer.writeString(argument)
      buffer.writeString("\r\n")
    }
  }
}
