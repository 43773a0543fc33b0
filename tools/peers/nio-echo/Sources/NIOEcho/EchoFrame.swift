import NIOCore

/// The peer's wire format: `u32 length` (of what follows), `u64 request id`, `u8 kind`, then
/// the payload. Kind 0 is an echo (the answer repeats the frame); kind 1 asks for a stream
/// whose payload is a `u32` count, answered by that many kind-2 frames of 4 bytes and one empty
/// kind-3 frame that ends it.
enum EchoFrame {
  static let echo: UInt8 = 0
  static let streamRequest: UInt8 = 1
  static let token: UInt8 = 2
  static let end: UInt8 = 3
  static let headerSize = 13

  static func write(id: UInt64, kind: UInt8, payload: ByteBufferView?, into buffer: inout ByteBuffer) {
    let count = payload?.count ?? 0
    buffer.writeInteger(UInt32(9 + count))
    buffer.writeInteger(id)
    buffer.writeInteger(kind)
    if let payload { buffer.writeBytes(payload) }
  }

  /// Reads one whole frame from `buffer`, or returns nil and consumes nothing.
  static func read(from buffer: inout ByteBuffer) -> (id: UInt64, kind: UInt8, payload: ByteBuffer)? {
    guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self),
      length >= 9, buffer.readableBytes >= 4 + Int(length)
    else { return nil }
    buffer.moveReaderIndex(forwardBy: 4)
    let id = buffer.readInteger(as: UInt64.self)!
    let kind = buffer.readInteger(as: UInt8.self)!
    let payload = buffer.readSlice(length: Int(length) - 9)!
    return (id, kind, payload)
  }
}
