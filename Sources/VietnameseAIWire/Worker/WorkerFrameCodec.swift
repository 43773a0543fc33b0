public import NIOCore

/// Cuts a worker connection's bytes into ``WorkerFrame``s and turns frames into bytes.
///
/// Every check that needs only the header (length, version, flags, type, direction, request id)
/// happens before the payload is waited for. The worker protocol has no compression, so any
/// flag is a protocol error.
public struct WorkerFrameCodec: Sendable {
  /// Who reads: a server reads what workers send, a worker what servers send.
  public enum Role: Sendable {
    case server
    case worker
  }

  public let role: Role
  /// The largest payload this side accepts.
  public var maxPayloadSize: Int

  public init(role: Role, maxPayloadSize: Int = WireProtocol.defaultMaxFrameSize) {
    self.role = role
    self.maxPayloadSize = maxPayloadSize
  }

  /// The next whole frame in `buffer`, consumed; `nil` if more bytes are needed.
  ///
  /// - Throws: ``WireError``, always a connection error.
  public func decode(_ buffer: inout ByteBuffer) throws(WireError) -> WorkerFrame? {
    guard let (header, type) = try peekHeader(buffer) else { return nil }
    let total = FrameHeader.size + Int(header.payloadLength)
    guard buffer.readableBytes >= total else { return nil }
    let payload = buffer.getSlice(
      at: buffer.readerIndex + FrameHeader.size,
      length: Int(header.payloadLength)
    )!
    buffer.moveReaderIndex(forwardBy: total)
    return WorkerFrame(
      requestID: header.requestID,
      message: try WorkerMessage.decodePayload(type: type, payload: payload)
    )
  }

  private func peekHeader(_ buffer: ByteBuffer) throws(WireError) -> (FrameHeader, WorkerFrameType)? {
    guard buffer.readableBytes >= FrameHeader.size else { return nil }
    let start = buffer.readerIndex
    let header = FrameHeader(
      payloadLength: buffer.getInteger(at: start)!,
      version: buffer.getInteger(at: start + 4)!,
      type: buffer.getInteger(at: start + 5)!,
      flags: FrameFlags(rawValue: buffer.getInteger(at: start + 6)!),
      requestID: buffer.getInteger(at: start + 7)!
    )
    if UInt64(header.payloadLength) > UInt64(maxPayloadSize) {
      throw .frameTooLarge(header.payloadLength, limit: maxPayloadSize)
    }
    guard header.version == 1 else {
      throw WireError(
        code: .unsupportedVersion,
        message: "frame of worker protocol version \(header.version); this peer speaks 1",
        closesConnection: true
      )
    }
    guard let type = WorkerFrameType(rawValue: header.type) else {
      throw .protocolViolation("unknown worker frame type 0x\(String(header.type, radix: 16))")
    }
    guard header.flags.rawValue == 0 else {
      throw .protocolViolation("unknown flags 0x\(String(header.flags.rawValue, radix: 16)) on \(type.name)")
    }
    switch role {
    case .server where !type.sentByWorker:
      throw .protocolViolation("\(type.name) is sent by servers, not workers")
    case .worker where !type.sentByServer:
      throw .protocolViolation("\(type.name) is sent by workers, not servers")
    default:
      break
    }
    if type != .error {
      if type.isConnectionFrame, header.requestID != 0 {
        throw .protocolViolation("\(type.name) must use request id 0, not \(header.requestID)")
      }
      if !type.isConnectionFrame, header.requestID == 0 {
        throw .protocolViolation("\(type.name) must not use request id 0")
      }
    }
    return (header, type)
  }

  /// Appends one frame to `buffer`.
  ///
  /// - Throws: ``WireError`` with ``StatusCode/invalidArgument`` if a field does not fit its
  ///   length prefix. Nothing is appended then.
  public static func encode(_ frame: WorkerFrame, into buffer: inout ByteBuffer) throws(WireError) {
    let start = buffer.writerIndex
    buffer.writeMultipleIntegers(UInt32(0), UInt8(1), frame.message.type.rawValue, UInt8(0), frame.requestID)
    do {
      try frame.message.encodePayload(into: &buffer)
    } catch {
      buffer.moveWriterIndex(to: start)
      throw error
    }
    buffer.setInteger(UInt32(buffer.writerIndex - start - FrameHeader.size), at: start)
  }
}
