public import NIOCore

/// Cuts the bytes a connection receives into frames.
///
/// A connection handler appends what each read brought and pulls frames one at a time, so it
/// can change the decoder between two frames: after the handshake, the server raises the
/// payload limit from the `HELLO` limit to its frame limit and turns decompression on, and
/// the frames pipelined right behind the `HELLO` are already decoded under the new settings.
///
/// Bytes are not copied while a read holds whole frames; only a frame split across reads is
/// gathered into one buffer, and consumed bytes are dropped as it goes.
public struct FrameReader {
  /// Decodes each frame; its settings may change between two calls to ``next()``.
  public var decoder: FrameDecoder
  private var buffered = ByteBuffer()

  public init(decoder: FrameDecoder) {
    self.decoder = decoder
  }

  /// Adds the bytes of one read.
  public mutating func append(_ bytes: ByteBuffer) {
    if buffered.readableBytes == 0 {
      buffered = bytes
    } else {
      var bytes = bytes
      buffered.writeBuffer(&bytes)
    }
  }

  /// The next complete frame, or `nil` until more bytes arrive.
  ///
  /// - Throws: a connection error (``WireError/closesConnection``); the connection must close.
  public mutating func next() throws(WireError) -> FrameDecoder.Decoded? {
    guard let frame = try decoder.decodeNext(&buffered) else {
      if buffered.readerIndex > 0 && buffered.readableBytes == 0 {
        // Let go of the read's buffer rather than clearing it: the channel reuses its
        // receive buffers once nothing else holds them, and clearing one that the frames just
        // read still share (their payloads are slices of it) would allocate a copy.
        buffered = ByteBuffer()
      } else if buffered.readerIndex >= 64 * 1024 {
        buffered.discardReadBytes()
      }
      return nil
    }
    return frame
  }
}
