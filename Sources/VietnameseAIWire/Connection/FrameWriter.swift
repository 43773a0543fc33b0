public import NIOCore

/// Gathers the frames a connection sends into one buffer, so that many frames leave in one
/// write and one system call.
///
/// A handler appends frames as answers become ready and takes the buffer when it flushes:
/// once per read burst or event-loop tick rather than once per frame.
public struct FrameWriter {
  /// Encodes each frame; set its compressor once compression is negotiated.
  public var encoder: FrameEncoder
  private var pending: ByteBuffer

  public init(encoder: FrameEncoder = FrameEncoder()) {
    self.encoder = encoder
    self.pending = ByteBuffer()
  }

  /// Whether frames are waiting to be written.
  public var hasPending: Bool { pending.readableBytes > 0 }

  /// Bytes waiting to be written.
  public var pendingBytes: Int { pending.readableBytes }

  /// Appends one frame.
  ///
  /// - Throws: ``StatusCode/invalidArgument`` if a field does not fit its length prefix;
  ///   nothing is appended then.
  public mutating func append(_ frame: WireFrame) throws(WireError) {
    try encoder.encode(frame, into: &pending)
  }

  /// Hands over everything appended so far and starts a new buffer.
  public mutating func take() -> ByteBuffer {
    // The taken buffer is still being written when the next frame arrives, so the next frame
    // goes into a fresh one rather than forcing a copy of this one.
    defer { pending = ByteBuffer() }
    return pending
  }
}
