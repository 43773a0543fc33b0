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
    if encodeDirect(frame, into: &buffer) { return }
    try encodeGeneral(frame, into: &buffer)
  }

  /// The path every frame can take: header, payload field by field, then compression.
  func encodeGeneral(_ frame: WireFrame, into buffer: inout ByteBuffer) throws(WireError) {
    let start = buffer.writerIndex
    let type = frame.message.type
    // One capacity check for the header rather than five.
    buffer.writeMultipleIntegers(UInt32(0), WireProtocol.version, type.rawValue, UInt8(0), frame.requestID)
    let payloadStart = buffer.writerIndex
    do {
      try frame.message.encodePayload(into: &buffer)
    } catch {
      buffer.moveWriterIndex(to: start)
      throw error
    }
    var payloadLength = buffer.writerIndex - payloadStart
    if let compressor, payloadLength >= compressionThreshold, type != .hello, type != .welcome {
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

  /// Compresses the payload at `payloadStart` where it lies, if that makes it smaller, and sets
  /// the frame's COMPRESSED flag. Returns the payload's new length.
  ///
  /// zlib writes into the compressor's reusable scratch area, and the result is copied over
  /// the payload behind its 4-byte length prefix: the output buffer never needs more room than
  /// the uncompressed frame, and no compression allocates.
  private func compressInPlace(
    _ buffer: inout ByteBuffer,
    payloadStart: Int,
    payloadLength: Int,
    _ compressor: Zlib.Compressor
  ) -> Int {
    let bound = compressor.bound(for: payloadLength)
    let packed = compressor.withScratch(count: bound) { scratch -> Int? in
      buffer.withVeryUnsafeMutableBytes { storage -> Int? in
        let packed = compressor.compress(
          UnsafeRawBufferPointer(rebasing: storage[payloadStart..<payloadStart + payloadLength]),
          into: scratch
        )
        guard 4 + packed < payloadLength else { return nil }
        (storage.baseAddress! + payloadStart + 4).copyMemory(from: scratch.baseAddress!, byteCount: packed)
        return packed
      }
    }
    guard let packed else { return payloadLength }
    buffer.setInteger(UInt32(payloadLength), at: payloadStart)
    buffer.moveWriterIndex(to: payloadStart + 4 + packed)
    buffer.setInteger(FrameFlags.compressed.rawValue, at: payloadStart - FrameHeader.size + 6)
    return 4 + packed
  }
}
