import NIOCore

/// The hot frames written in one pass over raw memory.
///
/// Every `ByteBuffer` write costs a capacity check, a uniqueness check and a dynamic
/// exclusivity check on the buffer's storage (NIO is built with them on). Frames whose layout
/// is fixed apart from their text and bytes (`PREDICT`, `RESULT`, `TOKEN`, `STREAM_END`,
/// `ERROR`, `CANCEL`, `STATS_REQUEST`, `PING`, `PONG`) are instead sized first and written with
/// one reservation; the bytes are exactly those of the general path, which the tests check.
extension FrameEncoder {
  /// Appends `frame` in one write if it is a hot frame that goes out uncompressed.
  ///
  /// - Returns: `false`, with nothing appended, when the general path must take it: another
  ///   type, a payload worth compressing, or a field too long for its prefix (which the
  ///   general path reports).
  func encodeDirect(_ frame: WireFrame, into buffer: inout ByteBuffer) -> Bool {
    let id = frame.requestID
    switch frame.message {
    case .predict(let predict):
      var model = predict.model
      let modelLength = model.utf8.count
      let inputLength = predict.input.readableBytes
      guard modelLength <= Int(UInt16.max), inputLength <= Int(UInt32.max) - 16 - modelLength else {
        return false
      }
      let payload = 4 + 2 + modelLength + 4 + inputLength
      guard goesUncompressed(payload) else { return false }
      predict.input.withUnsafeReadableBytes { input in
        model.withUTF8 { modelBytes in
          write(.predict, id: id, payload: payload, into: &buffer) { writer in
            writer.put(predict.deadlineMilliseconds)
            writer.put(UInt16(modelLength))
            writer.put(UnsafeRawBufferPointer(modelBytes))
            writer.put(UInt32(inputLength))
            writer.put(input)
          }
        }
      }
    case .result(let output):
      let length = output.readableBytes
      guard length <= Int(UInt32.max) - 4, goesUncompressed(4 + length) else { return false }
      output.withUnsafeReadableBytes { bytes in
        write(.result, id: id, payload: 4 + length, into: &buffer) { writer in
          writer.put(UInt32(length))
          writer.put(bytes)
        }
      }
    case .token(var token):
      let length = token.utf8.count
      guard length <= Int(UInt32.max) - 4, goesUncompressed(4 + length) else { return false }
      token.withUTF8 { bytes in
        write(.token, id: id, payload: 4 + length, into: &buffer) { writer in
          writer.put(UInt32(length))
          writer.put(UnsafeRawBufferPointer(bytes))
        }
      }
    case .streamEnd(let count):
      guard goesUncompressed(4) else { return false }
      write(.streamEnd, id: id, payload: 4, into: &buffer) { $0.put(count) }
    case .error(let info):
      var message = info.message
      let length = message.utf8.count
      guard length <= Int(UInt16.max), goesUncompressed(8 + length) else { return false }
      message.withUTF8 { bytes in
        write(.error, id: id, payload: 8 + length, into: &buffer) { writer in
          writer.put(info.code.rawValue)
          writer.put(info.retryAfterMilliseconds)
          writer.put(UInt16(length))
          writer.put(UnsafeRawBufferPointer(bytes))
        }
      }
    case .cancel, .statsRequest:
      guard goesUncompressed(0) else { return false }
      write(frame.message.type, id: id, payload: 0, into: &buffer) { _ in }
    case .ping(let value), .pong(let value):
      guard goesUncompressed(8) else { return false }
      write(frame.message.type, id: id, payload: 8, into: &buffer) { $0.put(value) }
    case .hello, .welcome, .batchPredict, .streamOpen, .batchResult, .stats, .goAway:
      return false
    }
    return true
  }

  /// Whether a payload of `length` bytes goes out as it is.
  private func goesUncompressed(_ length: Int) -> Bool {
    compressor == nil || length < compressionThreshold
  }

  /// Writes the header and then `body`, which must write exactly `payload` bytes.
  private func write(
    _ type: FrameType,
    id: UInt32,
    payload: Int,
    into buffer: inout ByteBuffer,
    _ body: (inout RawWriter) -> Void
  ) {
    let total = FrameHeader.size + payload
    buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { out in
      var writer = RawWriter(out: out)
      writer.put(UInt32(payload))
      writer.put(WireProtocol.version)
      writer.put(type.rawValue)
      writer.put(UInt8(0))
      writer.put(id)
      body(&writer)
      assert(writer.offset == total, "a direct frame wrote \(writer.offset) bytes, not \(total)")
      return total
    }
  }

  /// Writes big-endian fields into raw memory sized beforehand.
  struct RawWriter {
    let out: UnsafeMutableRawBufferPointer
    var offset = 0

    mutating func put<T: FixedWidthInteger>(_ value: T) {
      out.storeBytes(of: value.bigEndian, toByteOffset: offset, as: T.self)
      offset += MemoryLayout<T>.size
    }

    mutating func put(_ bytes: UnsafeRawBufferPointer) {
      guard let source = bytes.baseAddress, bytes.count > 0 else { return }
      (out.baseAddress! + offset).copyMemory(from: source, byteCount: bytes.count)
      offset += bytes.count
    }
  }
}
