public import NIOCore

/// Gathers the frames a connection sends into one buffer, so that many frames leave in one
/// write and one system call.
///
/// A handler appends frames as answers become ready and flushes once per read burst or
/// event-loop tick rather than once per frame: it brackets each read with
/// ``beginReadBurst()``/``endReadBurst()``, and after appending outside a read it asks
/// ``claimFlush()`` whether to schedule a flush at the end of the tick.
public struct FrameWriter {
  /// Encodes each frame; set its compressor once compression is negotiated.
  public var encoder: FrameEncoder
  /// The largest payload (as sent) the peer accepts; a larger frame is refused here, for its
  /// request alone, instead of costing the whole connection at the peer.
  public var maxPayloadSize: Int?
  private var pending: ByteBuffer
  private var inReadBurst = false
  private var flushClaimed = false

  public init(encoder: FrameEncoder = FrameEncoder(), maxPayloadSize: Int? = WireProtocol.defaultMaxFrameSize)
  {
    self.encoder = encoder
    self.maxPayloadSize = maxPayloadSize
    self.pending = ByteBuffer()
  }

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

  /// How ``appendTokens(requestID:limit:from:)`` stopped.
  public enum TokenRun {
    /// It appended `limit` tokens; the source may have more.
    case more
    /// The source ran out.
    case exhausted
    /// A token could not be appended (it does not fit the peer's frame limit); the tokens
    /// before it were.
    case failed(WireError)

    public var isExhausted: Bool {
      if case .exhausted = self { true } else { false }
    }
  }

  /// Appends one `TOKEN` frame of request `requestID`: written in place when it goes out
  /// uncompressed, through ``append(_:)`` when it is worth compressing or too large.
  ///
  /// - Throws: as ``append(_:)``; nothing is appended then.
  public mutating func appendToken(_ token: String, requestID: UInt32) throws(WireError) {
    let frame = WireFrame(requestID: requestID, message: .token(token))
    let fits = maxPayloadSize.map { 4 + token.utf8.count <= $0 } ?? true
    if fits && encoder.encodeDirect(frame, into: &pending) { return }
    // The general path: a token worth compressing, or the refusal of one too large.
    try append(frame)
  }

  /// Appends up to `limit` `TOKEN` frames of request `requestID`, taking each token from
  /// `next`, which returns `nil` once it has no more.
  ///
  /// The streaming hot path: one call per burst of a stream, each token written in place.
  ///
  /// - Returns: How many tokens were appended, and why it stopped.
  public mutating func appendTokens(
    requestID: UInt32,
    limit: Int,
    from next: () -> String?
  ) -> (count: Int, end: TokenRun) {
    var count = 0
    while count < limit {
      guard let token = next() else { return (count, .exhausted) }
      do {
        try appendToken(token, requestID: requestID)
      } catch {
        return (count, .failed(error))
      }
      count += 1
    }
    return (count, .more)
  }

  /// Bytes appended and not yet taken for a flush.
  public var pendingBytes: Int { pending.readableBytes }

  /// A read has started: what is appended until ``endReadBurst()`` leaves with it.
  public mutating func beginReadBurst() {
    inReadBurst = true
  }

  /// The reads of this burst are done.
  ///
  /// - Returns: The bytes to write and flush now, if any.
  public mutating func endReadBurst() -> ByteBuffer? {
    inReadBurst = false
    return takeForFlush()
  }

  /// Whether the caller should schedule a flush for the end of this event-loop tick: true
  /// for the first frame appended outside a read burst, false while one is scheduled.
  public mutating func claimFlush() -> Bool {
    if inReadBurst || flushClaimed { return false }
    flushClaimed = true
    return true
  }

  /// Hands over everything appended so far, for a write and flush, and starts a new buffer.
  ///
  /// - Returns: `nil` if nothing is waiting.
  public mutating func takeForFlush() -> ByteBuffer? {
    flushClaimed = false
    guard pending.readableBytes > 0 else { return nil }
    // The taken buffer is still being written when the next frame arrives, so the next frame
    // goes into a fresh one rather than forcing a copy of this one.
    defer { pending = ByteBuffer() }
    return pending
  }
}
