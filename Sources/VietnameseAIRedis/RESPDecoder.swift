public import NIOCore

/// Reads RESP2 replies off a byte stream, strictly and within limits, so that a broken or
/// hostile peer costs a bounded amount of memory and ends with ``RedisError/Code/protocolError``.
public struct RESPDecoder: Sendable {
  /// The longest bulk string accepted, in bytes.
  public var maxBulkLength = 16 << 20
  /// The most elements of an array accepted.
  public var maxArrayCount = 1 << 20
  /// How deeply arrays may nest.
  public var maxDepth = 16
  /// The longest simple string, error or integer line accepted, in bytes.
  public var maxLineLength = 64 << 10

  public init() {}

  /// The next complete reply in `buffer`, consumed; `nil`, consuming nothing, while it is
  /// incomplete.
  public func decode(_ buffer: inout ByteBuffer) throws(RedisError) -> RESPValue? {
    var cursor = buffer.readerIndex
    guard let value = try parse(buffer, at: &cursor, depth: 0) else { return nil }
    buffer.moveReaderIndex(to: cursor)
    return value
  }

  private func parse(_ buffer: ByteBuffer, at cursor: inout Int, depth: Int) throws(RedisError) -> RESPValue?
  {
    guard let kind: UInt8 = buffer.getInteger(at: cursor) else { return nil }
    var at = cursor + 1
    guard let line = try self.line(buffer, at: &at) else { return nil }
    let value: RESPValue
    switch kind {
    case UInt8(ascii: "+"):
      value = .simpleString(try text(line))
    case UInt8(ascii: "-"):
      value = .error(try text(line))
    case UInt8(ascii: ":"):
      value = .integer(try integer(line))
    case UInt8(ascii: "$"):
      if let count = try length(line, limit: maxBulkLength, of: "a bulk string") {
        guard buffer.writerIndex - at >= count + 2 else { return nil }
        guard buffer.getInteger(at: at + count, as: UInt16.self) == 0x0D0A else {
          throw RedisError(.protocolError, "a bulk string not ended by CRLF")
        }
        value = .bulkString(buffer.getSlice(at: at, length: count))
        at += count + 2
      } else {
        value = .bulkString(nil)
      }
    case UInt8(ascii: "*"):
      if let count = try length(line, limit: maxArrayCount, of: "an array") {
        guard depth < maxDepth else {
          throw RedisError(.protocolError, "arrays nested deeper than \(maxDepth)")
        }
        var elements: [RESPValue] = []
        elements.reserveCapacity(min(count, 1024))
        for _ in 0..<count {
          guard let element = try parse(buffer, at: &at, depth: depth + 1) else { return nil }
          elements.append(element)
        }
        value = .array(elements)
      } else {
        value = .array(nil)
      }
    default:
      throw RedisError(.protocolError, "a reply starting with byte \(kind)")
    }
    cursor = at
    return value
  }

  /// The bytes up to the next CRLF, after which `at` then points; `nil` while the line is
  /// incomplete.
  private func line(_ buffer: ByteBuffer, at: inout Int) throws(RedisError) -> ByteBufferView? {
    let view = buffer.readableBytesView
    let start = at - buffer.readerIndex
    let limit = min(view.count, start + maxLineLength + 2)
    var index = start
    while index < limit {
      if view[view.startIndex + index] == UInt8(ascii: "\r") {
        guard index + 1 < view.count else { return nil }
        guard view[view.startIndex + index + 1] == UInt8(ascii: "\n") else {
          throw RedisError(.protocolError, "a CR not followed by LF")
        }
        at = buffer.readerIndex + index + 2
        return view[(view.startIndex + start)..<(view.startIndex + index)]
      }
      index += 1
    }
    if view.count - start > maxLineLength + 1 {
      throw RedisError(.protocolError, "a line longer than \(maxLineLength) bytes")
    }
    return nil
  }

  /// A bulk string's or an array's length prefix: `nil` for -1 (the null value), else a
  /// count within `0...limit`.
  private func length(_ line: ByteBufferView, limit: Int, of what: String) throws(RedisError) -> Int? {
    let length = try integer(line)
    if length == -1 { return nil }
    guard length >= 0, length <= limit else {
      throw RedisError(.protocolError, "\(what) of length \(length)")
    }
    return Int(length)
  }

  private func text(_ bytes: ByteBufferView) throws(RedisError) -> String {
    guard let text = String(validating: bytes, as: UTF8.self) else {
      throw RedisError(.protocolError, "a reply line that is not UTF-8")
    }
    return text
  }

  private func integer(_ bytes: ByteBufferView) throws(RedisError) -> Int64 {
    guard let value = Int64(try text(bytes)) else {
      throw RedisError(.protocolError, "an integer that is not one")
    }
    return value
  }
}
