public import NIOCore

/// Turns ``WireFrame``s into bytes, compressing payloads when that pays.
///
/// The header is written with a zero length, the payload after it, then the length is filled
/// in, so a frame is built in place with no intermediate buffer. A payload is compressed only
/// when compression was negotiated (``compressor`` is set), the payload is at least
/// ``compressionThreshold`` bytes, it is not a handshake frame, and the compressed form
/// (with its 4-byte length prefix) is smaller; otherwise the frame goes out as it is.
///
/// ```swift
/// var out = ByteBuffer()
/// try FrameEncoder().encode(WireFrame(requestID: 7, message: .cancel), into: &out)
/// ```
public struct FrameEncoder: MessageToByteEncoder {
  public typealias OutboundIn = WireFrame

  /// Deflates large payloads; `nil` until compression is negotiated.
  public var compressor: Zlib.Compressor?
  /// The smallest payload worth compressing.
  public var compressionThreshold: Int

  public init(
    compressor: Zlib.Compressor? = nil,
    compressionThreshold: Int = WireProtocol.defaultCompressionThreshold
  ) {
    self.compressor = compressor
    self.compressionThreshold = compressionThreshold
  }

  public func encode(data: WireFrame, out: inout ByteBuffer) throws {
    try encode(data, into: &out)
  }

  /// Appends one frame to `buffer`.
  ///
  /// - Throws: ``WireError`` with ``StatusCode/invalidArgument`` if a field does not fit its
  ///   length prefix. Nothing is appended then.
  public func encode(_ frame: WireFrame, into buffer: inout ByteBuffer) throws(WireError) {
    let start = buffer.writerIndex
    buffer.writeInteger(UInt32(0))
    buffer.writeInteger(WireProtocol.version)
    buffer.writeInteger(frame.message.type.rawValue)
    buffer.writeInteger(UInt8(0))
    buffer.writeInteger(frame.requestID)
    let payloadStart = buffer.writerIndex
    do {
      try frame.message.encodePayload(into: &buffer)
    } catch {
      buffer.moveWriterIndex(to: start)
      throw error
    }
    var payloadLength = buffer.writerIndex - payloadStart
    if let compressor, payloadLength >= compressionThreshold, frame.message.type != .hello,
      frame.message.type != .welcome
    {
      payloadLength = compressInPlace(
        &buffer,
        payloadStart: payloadStart,
        payloadLength: payloadLength,
        compressor
      )
    }
    guard payloadLength <= Int(UInt32.max) else {
      buffer.moveWriterIndex(to: start)
      throw WireError(
        code: .invalidArgument,
        message: "payload of \(payloadLength) bytes",
        closesConnection: false
      )
    }
    buffer.setInteger(UInt32(payloadLength), at: start)
  }

  /// Appends one `TOKEN` frame, the hot path of streaming: the frame is written in one step,
  /// without building a ``WireFrame``. Produces exactly the bytes ``encode(_:into:)`` does.
  ///
  /// - Returns: `false`, with nothing appended, when the general path must take the token
  ///   instead: when it is large enough to be compressed.
  public func encodeToken(_ token: String, requestID: UInt32, into buffer: inout ByteBuffer) -> Bool {
    let length = token.utf8.count
    if compressor != nil && 4 + length >= compressionThreshold { return false }
    guard length <= Int(UInt32.max) - 4 else { return false }
    var token = token
    _ = token.withUTF8 { bytes in
      buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: FrameHeader.size + 4 + length) { out in
        out.storeBytes(of: UInt32(4 + length).bigEndian, toByteOffset: 0, as: UInt32.self)
        out.storeBytes(of: WireProtocol.version, toByteOffset: 4, as: UInt8.self)
        out.storeBytes(of: FrameType.token.rawValue, toByteOffset: 5, as: UInt8.self)
        out.storeBytes(of: 0, toByteOffset: 6, as: UInt8.self)
        out.storeBytes(of: requestID.bigEndian, toByteOffset: 7, as: UInt32.self)
        out.storeBytes(of: UInt32(length).bigEndian, toByteOffset: 11, as: UInt32.self)
        if length > 0 {
          UnsafeMutableRawBufferPointer(rebasing: out[15..<15 + length]).copyMemory(
            from: UnsafeRawBufferPointer(bytes)
          )
        }
        return FrameHeader.size + 4 + length
      }
    }
    return true
  }

  /// Compresses the payload at `payloadStart` where it lies, if that makes it smaller, and sets
  /// the frame's COMPRESSED flag. Returns the payload's new length.
  ///
  /// The zlib output goes into the buffer's spare capacity right after the payload and is then
  /// moved down behind its 4-byte length prefix: no second buffer, no copy of the frame.
  private func compressInPlace(
    _ buffer: inout ByteBuffer,
    payloadStart: Int,
    payloadLength: Int,
    _ compressor: Zlib.Compressor
  ) -> Int {
    let bound = compressor.bound(for: payloadLength)
    buffer.reserveCapacity(minimumWritableBytes: bound)
    let scratch = buffer.writerIndex
    let packed = buffer.withVeryUnsafeMutableBytes { storage in
      compressor.compress(
        UnsafeRawBufferPointer(rebasing: storage[payloadStart..<payloadStart + payloadLength]),
        into: UnsafeMutableRawBufferPointer(rebasing: storage[scratch..<scratch + bound])
      )
    }
    guard 4 + packed < payloadLength else { return payloadLength }
    buffer.withVeryUnsafeMutableBytes { storage in
      storage.baseAddress!.advanced(by: payloadStart + 4)
        .copyMemory(from: storage.baseAddress!.advanced(by: scratch), byteCount: packed)
    }
    buffer.setInteger(UInt32(payloadLength), at: payloadStart)
    buffer.moveWriterIndex(to: payloadStart + 4 + packed)
    buffer.setInteger(FrameFlags.compressed.rawValue, at: payloadStart - FrameHeader.size + 6)
    return 4 + packed
  }
}
