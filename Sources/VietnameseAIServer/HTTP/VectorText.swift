import NIOCore

/// Vectors of little-endian binary32 floats, as JSON.
enum VectorText {
  /// `[0.1,-0.25,...]`; a value that is not finite, which JSON cannot hold, is `null`.
  static func jsonArray(_ bytes: ByteBuffer) -> String {
    var text = "["
    text.reserveCapacity(bytes.readableBytes * 3)
    var index = bytes.readerIndex
    var first = true
    while index + 4 <= bytes.writerIndex {
      let value = Float(bitPattern: bytes.getInteger(at: index, endianness: .little, as: UInt32.self)!)
      if !first { text += "," }
      first = false
      text += value.isFinite ? "\(value)" : "null"
      index += 4
    }
    text += "]"
    return text
  }

  /// The floats of `bytes`.
  static func floats(_ bytes: ByteBuffer) -> [Float] {
    var values: [Float] = []
    values.reserveCapacity(bytes.readableBytes / 4)
    var index = bytes.readerIndex
    while index + 4 <= bytes.writerIndex {
      values.append(Float(bitPattern: bytes.getInteger(at: index, endianness: .little, as: UInt32.self)!))
      index += 4
    }
    return values
  }
}
