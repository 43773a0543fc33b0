public import NIOCore

/// Gathers the frames a connection sends into one buffer, so that many frames leave in one
/// write and one system call.
///
/// A handler appends frames as answers become ready and takes the buffer when it flushes:
/// once per read burst or event-loop tick rather than once per frame.
public struct FrameWriter {
  /// Encodes each frame; set its compressor once compression is negotiated.
  public var encoder: FrameEncoder
  /// The largest payload (as sent) the peer accepts; a larger frame is refused here, for its
  /// request alone, instead of costing the whole connection at the peer.
  public var maxPayloadSize: Int?
  private var pending: ByteBuffer

  public init(encoder: FrameEncoder = FrameEncoder(), maxPayloadSize: Int? = WireProtocol.defaultMaxFrameSize)
  {
    self.encoder = encoder
    self.maxPayloadSize = maxPayloadSize
    self.pending = ByteBuffer()
  }

  /// Whether frames are waiting to be written.
  public var hasPending: Bool { pending.readableBytes > 0 }

  /// Bytes waiting to be written.
  public var pendingBytes: Int { pending.readableBytes }

  /// Appends one frame.
  ///
  /// - Throws: ``StatusCode/invalidArgument`` if a field does not fit its length prefix,
  ///   ``StatusCode/frameTooLarge`` if the frame exceeds ``maxPayloadSize``; nothing is
  ///   appended then.
  public mutating func append(_ frame: WireFrame) throws(WireError) {
    let start = pending.writerIndex
    try encoder.encode(frame, into: &pending)
    let payloadSize = pending.writerIndex - start - FrameHeader.size
    if let maxPayloadSize, payloadSize > maxPayloadSize {
      pending.moveWriterIndex(to: start)
      throw WireError(
        code: .frameTooLarge,
        message:
          "a \(frame.message.type.name) of \(payloadSize) bytes exceeds the peer's limit of \(maxPayloadSize)",
        requestID: frame.requestID,
        closesConnection: false
      )
    }
  }

  /// Hands over everything appended so far and starts a new buffer.
  public mutating func take() -> ByteBuffer {
    // The taken buffer is still being written when the next frame arrives, so the next frame
    // goes into a fresh one rather than forcing a copy of this one.
    defer { pending = ByteBuffer() }
    return pending
  }
}
