import NIOCore

// The field types of every payload, for both the client protocol and the worker protocol.
// All integers are big-endian; nothing is padded.
//
//   str16   = u16 byte length, then that many bytes of UTF-8
//   str32   = u32 byte length, then that many bytes of UTF-8
//   bytes32 = u32 byte length, then that many bytes
//   list8   = u8 count, then that many u8 values

/// Reads the fields of one payload strictly: every read is bounds-checked against what the
/// frame declared, and `finish` insists that nothing is left over.
struct PayloadReader {
  var buffer: ByteBuffer
  /// The message type's name, for error messages.
  let typeName: String
  let badTextIsRequestError: Bool
  let requestID: UInt32
  /// A request-level error found while reading (bad UTF-8). Reading goes on so that structural
  /// problems, which are worse, are still reported first.
  var deferredError: WireError?

  private func truncated(_ what: String) -> WireError {
    .protocolViolation("\(typeName) payload is truncated: \(what) runs past the end of the frame")
  }

  mutating func integer<T: FixedWidthInteger>(_ as: T.Type = T.self) throws(WireError) -> T {
    guard let value = buffer.readInteger(as: T.self) else { throw truncated("a \(T.bitWidth)-bit field") }
    return value
  }

  mutating func list8() throws(WireError) -> [UInt8] {
    let count = Int(try integer(UInt8.self))
    guard let bytes = buffer.readBytes(length: count) else { throw truncated("a list of \(count)") }
    return bytes
  }

  mutating func bytes32() throws(WireError) -> ByteBuffer {
    let length = Int(try integer(UInt32.self))
    guard let slice = buffer.readSlice(length: length) else { throw truncated("a \(length)-byte field") }
    return slice
  }

  /// A `u32` count of `bytes32` items. The count is checked against the bytes left (each item
  /// takes at least 4) before anything is allocated for it.
  mutating func bytesList() throws(WireError) -> [ByteBuffer] {
    let count = Int(try integer(UInt32.self))
    guard count <= buffer.readableBytes / 4 else { throw truncated("a list of \(count) items") }
    var items: [ByteBuffer] = []
    items.reserveCapacity(count)
    for _ in 0..<count { items.append(try bytes32()) }
    return items
  }

  mutating func string16(_ field: String) throws(WireError) -> String {
    try text(length: Int(try integer(UInt16.self)), field: field)
  }

  mutating func string32(_ field: String) throws(WireError) -> String {
    try text(length: Int(try integer(UInt32.self)), field: field)
  }

  private mutating func text(length: Int, field: String) throws(WireError) -> String {
    guard length <= buffer.readableBytes else { throw truncated("the \(length)-byte \(field)") }
    if let text = buffer.readValidatedUTF8(length: length) { return text }
    buffer.moveReaderIndex(forwardBy: length)
    let message = "\(field) of \(typeName) is not valid UTF-8"
    if badTextIsRequestError {
      if deferredError == nil { deferredError = .invalidArgument(message, requestID: requestID) }
      return ""
    }
    throw .protocolViolation(message)
  }

  /// Whether every byte of the payload has been read: an optional last field is absent.
  var isAtEnd: Bool { buffer.readableBytes == 0 }

  func finish() throws(WireError) {
    guard buffer.readableBytes == 0 else {
      throw .protocolViolation("\(typeName) payload has \(buffer.readableBytes) unexpected bytes at its end")
    }
  }
}

extension ByteBuffer {
  mutating func writeString16(_ string: String, field: String) throws(WireError) {
    let length = string.utf8.count
    guard length <= Int(UInt16.max) else { throw oversize(field, length, limit: Int(UInt16.max)) }
    writeInteger(UInt16(length))
    writeString(string)
  }

  mutating func writeString32(_ string: String, field: String) throws(WireError) {
    let length = string.utf8.count
    guard length <= Int(UInt32.max) else { throw oversize(field, length, limit: Int(UInt32.max)) }
    writeInteger(UInt32(length))
    writeString(string)
  }

  mutating func writeBytes32(_ bytes: ByteBuffer, field: String) throws(WireError) {
    guard bytes.readableBytes <= Int(UInt32.max) else {
      throw oversize(field, bytes.readableBytes, limit: Int(UInt32.max))
    }
    writeInteger(UInt32(bytes.readableBytes))
    writeImmutableBuffer(bytes)
  }

  mutating func writeBytesList(_ items: [ByteBuffer], field: String) throws(WireError) {
    guard items.count <= Int(UInt32.max) else { throw oversize(field, items.count, limit: Int(UInt32.max)) }
    writeInteger(UInt32(items.count))
    for item in items { try writeBytes32(item, field: field) }
  }

  mutating func writeList8(_ values: [UInt8], field: String) throws(WireError) {
    guard values.count <= Int(UInt8.max) else { throw oversize(field, values.count, limit: Int(UInt8.max)) }
    writeInteger(UInt8(values.count))
    writeBytes(values)
  }

  private func oversize(_ field: String, _ size: Int, limit: Int) -> WireError {
    WireError(
      code: .invalidArgument,
      message: "\(field) is \(size) long; its length prefix allows at most \(limit)",
      closesConnection: false
    )
  }
}
