public import NIOCore

/// Turns bytes into ``WireFrame``s, enforcing every rule of the frame layer.
///
/// It reads the 11-byte header, rejects a declared length above ``maxPayloadSize`` before
/// buffering any of the payload, waits (without copying) until the whole payload is there,
/// inflates a compressed payload under the same limit, and parses the message strictly.
///
/// Errors come in the two kinds of ``WireError``:
/// - connection errors are *thrown*: the byte stream can no longer be trusted, the caller
///   answers `ERROR` on request id 0 and closes;
/// - request errors are *returned* as `.failure`, so that decoding goes on with the next frame
///   (a `ByteToMessageHandler` stops for good after a throw).
///
/// ```swift
/// var decoder = FrameDecoder(role: .server)
/// while let next = try decoder.decode(buffer: &bytes) {
///   switch next {
///   case .success(let frame): handle(frame)
///   case .failure(let error): answer(error)   // that request only
///   }
/// }
/// ```
public struct FrameDecoder: NIOSingleStepByteToMessageDecoder {
  public typealias InboundOut = Result<WireFrame, WireError>

  /// Which end of the connection decodes: a server accepts what clients send, and vice versa.
  public enum Role: Sendable {
    case server
    case client
  }

  public let role: Role
  /// The largest payload accepted, both as sent and after decompression.
  public var maxPayloadSize: Int
  /// Inflates compressed payloads; `nil` until compression is negotiated, and while it is `nil`
  /// a compressed frame is a protocol error.
  public var decompressor: Zlib.Decompressor?

  /// - Parameters:
  ///   - role: The end of the connection this decoder serves.
  ///   - maxPayloadSize: The largest payload accepted (default 4 MiB).
  ///   - decompressor: Set once zlib has been negotiated.
  public init(
    role: Role,
    maxPayloadSize: Int = WireProtocol.defaultMaxFrameSize,
    decompressor: Zlib.Decompressor? = nil
  ) {
    self.role = role
    self.maxPayloadSize = maxPayloadSize
    self.decompressor = decompressor
  }

  public mutating func decode(buffer: inout ByteBuffer) throws -> InboundOut? {
    try decodeFrame(&buffer)
  }

  public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> InboundOut? {
    if let frame = try decodeFrame(&buffer) { return frame }
    if seenEOF && buffer.readableBytes > 0 {
      throw WireError.protocolViolation(
        "the connection closed \(buffer.readableBytes) bytes into a frame"
      )
    }
    return nil
  }

  /// What ``decodeNext(_:)`` found.
  ///
  /// Not a `Result`: a generic enum around a message costs the hot path runtime type
  /// look-ups on every copy.
  public enum Decoded: Sendable {
    case frame(WireFrame)
    /// A `TOKEN` frame (client side only), decoded without building a ``WireMessage``: the
    /// hot path of streams.
    case token(requestID: UInt32, String)
    /// A well-delimited frame whose content is refused: only its request fails (a request
    /// error of ``WireError``).
    case refused(WireError)
  }

  /// Decodes the next frame of `buffer`, or returns `nil` (consuming nothing) if it is not all
  /// there yet.
  public mutating func decodeFrame(_ buffer: inout ByteBuffer) throws(WireError) -> InboundOut? {
    switch try decodeNext(&buffer) {
    case nil: return nil
    case .frame(let frame)?: return .success(frame)
    case .token(let requestID, let token)?:
      return .success(WireFrame(requestID: requestID, message: .token(token)))
    case .refused(let error)?: return .failure(error)
    }
  }

  /// Decodes the next frame of `buffer`, or returns `nil` (consuming nothing) if it is not all
  /// there yet.
  ///
  /// - Throws: a connection error; the connection must close.
  public mutating func decodeNext(_ buffer: inout ByteBuffer) throws(WireError) -> Decoded? {
    guard let header = try peekHeader(buffer) else { return nil }
    guard buffer.readableBytes - FrameHeader.size >= Int(header.payloadLength) else { return nil }
    buffer.moveReaderIndex(forwardBy: FrameHeader.size)
    var payload = buffer.readSlice(length: Int(header.payloadLength))!
    // The type was validated by peekHeader.
    let type = FrameType(rawValue: header.type)!

    if header.flags.contains(.compressed) {
      payload = try inflate(payload, type: type)
    } else if type == .token, let token = Self.plainToken(payload) {
      return .token(requestID: header.requestID, token)
    } else if type == .predict, let predict = Self.plainPredict(payload) {
      return .frame(WireFrame(requestID: header.requestID, message: .predict(predict)))
    } else if type == .result, let output = Self.soleField32(payload) {
      return .frame(WireFrame(requestID: header.requestID, message: .result(output)))
    }
    do {
      let message = try WireMessage.decodePayload(type: type, requestID: header.requestID, payload: payload)
      return .frame(WireFrame(requestID: header.requestID, message: message))
    } catch  where !error.closesConnection {
      return .refused(error)
    }
  }

  /// A well-formed `PREDICT` payload, read in one pass; `nil` sends the payload down the
  /// general path, which reports what is wrong with it (bad text is a request error there).
  private static func plainPredict(_ payload: ByteBuffer) -> WireMessage.Predict? {
    let fields = payload.withUnsafeReadableBytes { bytes -> (UInt32, String, Int, Int)? in
      guard bytes.count >= 10 else { return nil }
      let deadline = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
      let modelLength = Int(UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt16.self)))
      guard bytes.count >= 10 + modelLength else { return nil }
      let inputLength = Int(
        UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 6 + modelLength, as: UInt32.self))
      )
      guard bytes.count == 10 + modelLength + inputLength else { return nil }
      let model = UnsafeRawBufferPointer(rebasing: bytes[6..<6 + modelLength])
      guard UTF8Validation.isValid(model) else { return nil }
      return (deadline, String(decoding: model, as: UTF8.self), 10 + modelLength, inputLength)
    }
    guard let (deadline, model, inputStart, inputLength) = fields,
      let input = payload.getSlice(at: payload.readerIndex + inputStart, length: inputLength)
    else { return nil }
    return WireMessage.Predict(deadlineMilliseconds: deadline, model: model, input: input)
  }

  /// The token of a well-formed `TOKEN` payload (`str32`, nothing after it); `nil` sends the
  /// payload down the general path, which reports what is wrong with it.
  private static func plainToken(_ payload: ByteBuffer) -> String? {
    guard var text = soleField32(payload) else { return nil }
    return text.readValidatedUTF8(length: text.readableBytes)
  }

  /// The bytes of a payload that is exactly one field with a `u32` length prefix, as a slice:
  /// a well-formed `RESULT`'s output (`bytes32`), or a `TOKEN`'s text before validation.
  /// `nil` sends the payload down the general path, which reports what is wrong with it.
  private static func soleField32(_ payload: ByteBuffer) -> ByteBuffer? {
    guard let length = payload.getInteger(at: payload.readerIndex, as: UInt32.self),
      Int(length) == payload.readableBytes - 4
    else { return nil }
    return payload.getSlice(at: payload.readerIndex + 4, length: Int(length))
  }

  /// Reads and validates the header without consuming it. Every check that needs only the
  /// header happens here, before the payload is waited for.
  private func peekHeader(_ buffer: ByteBuffer) throws(WireError) -> FrameHeader? {
    guard buffer.readableBytes >= FrameHeader.size else { return nil }
    // One read of the eleven bytes rather than five bounds-checked ones.
    let header = buffer.withUnsafeReadableBytes { bytes in
      FrameHeader(
        payloadLength: UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self)),
        version: bytes[4],
        type: bytes[5],
        flags: FrameFlags(rawValue: bytes[6]),
        requestID: UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 7, as: UInt32.self))
      )
    }
    if UInt64(header.payloadLength) > UInt64(maxPayloadSize) {
      throw .frameTooLarge(header.payloadLength, limit: maxPayloadSize)
    }
    guard header.version == WireProtocol.version else {
      throw WireError(
        code: .unsupportedVersion,
        message: "frame of protocol version \(header.version); this peer speaks \(WireProtocol.version)",
        closesConnection: true
      )
    }
    guard let type = FrameType(rawValue: header.type) else {
      throw .protocolViolation("unknown frame type 0x\(String(header.type, radix: 16))")
    }
    guard FrameFlags.known.isSuperset(of: header.flags) else {
      throw .protocolViolation("unknown flags 0x\(String(header.flags.rawValue, radix: 16)) on \(type.name)")
    }
    switch role {
    case .server where !type.sentByClient:
      throw .protocolViolation("\(type.name) is sent by servers, not clients")
    case .client where !type.sentByServer:
      throw .protocolViolation("\(type.name) is sent by clients, not servers")
    default:
      break
    }
    switch type {
    case .hello, .welcome, .ping, .pong, .goAway:
      guard header.requestID == 0 else {
        throw .protocolViolation("\(type.name) must use request id 0, not \(header.requestID)")
      }
    case .predict, .batchPredict, .streamOpen, .cancel, .statsRequest, .result, .batchResult, .token,
      .streamEnd, .stats:
      guard header.requestID != 0 else { throw .protocolViolation("\(type.name) must not use request id 0") }
    case .error:
      break
    }
    if header.flags.contains(.compressed) && (type == .hello || type == .welcome) {
      throw .protocolViolation("\(type.name) is never compressed")
    }
    return header
  }

  /// Inflates a compressed payload: `u32 uncompressed length | zlib stream`.
  private func inflate(_ payload: ByteBuffer, type: FrameType) throws(WireError) -> ByteBuffer {
    guard let decompressor else {
      throw .protocolViolation("compressed \(type.name) frame, but compression was not negotiated")
    }
    var payload = payload
    guard let declared = payload.readInteger(as: UInt32.self) else {
      throw .protocolViolation("compressed \(type.name) payload has no uncompressed length")
    }
    if UInt64(declared) > UInt64(maxPayloadSize) {
      throw WireError(
        code: .frameTooLarge,
        message:
          "compressed frame declares \(declared) bytes uncompressed, over the limit of \(maxPayloadSize)",
        closesConnection: true
      )
    }
    var inflated = ByteBuffer()
    try decompressor.decompress(payload, expectedLength: Int(declared), into: &inflated)
    return inflated
  }
}
