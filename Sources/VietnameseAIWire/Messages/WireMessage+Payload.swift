public import NIOCore

// Payload layouts, version 1. All integers are big-endian; nothing is padded.
//
//   str16   = u16 byte length, then that many bytes of UTF-8
//   str32   = u32 byte length, then that many bytes of UTF-8
//   bytes32 = u32 byte length, then that many bytes
//   list8   = u8 count, then that many u8 values
//
//   HELLO          list8 versions | str16 client_id | str16 auth_token | list8 compressions
//                  [| u32 max_frame_size]   (optional: the client's receive limit)
//   WELCOME        u8 version | u8 compression | u32 max_frame_size | u32 max_concurrent_requests
//                  | str16 client_id
//   PREDICT        u32 deadline_ms | str16 model | bytes32 input
//   BATCH_PREDICT  u32 deadline_ms | str16 model | u32 count | count x bytes32 input
//   STREAM_OPEN    u32 deadline_ms | str16 model | str32 prompt
//   CANCEL         (empty)
//   STATS_REQUEST  (empty)
//   PING, PONG     u64 opaque
//   RESULT         bytes32 output
//   BATCH_RESULT   u32 count | count x bytes32 output
//   TOKEN          str32 token
//   STREAM_END     u32 token_count
//   STATS          str32 json
//   ERROR          u16 status | u32 retry_after_ms | str16 message
//   GOAWAY         u16 status | str16 message

extension WireMessage {
  /// Appends this message's payload, uncompressed, to `buffer`.
  ///
  /// - Throws: ``WireError`` with ``StatusCode/invalidArgument`` if a field does not fit its
  ///   length prefix (a string over 65,535 bytes in a `str16` field, more than 255 versions).
  public func encodePayload(into buffer: inout ByteBuffer) throws(WireError) {
    switch self {
    case .hello(let hello):
      try buffer.writeList8(hello.versions, field: "versions")
      try buffer.writeString16(hello.clientID, field: "client_id")
      try buffer.writeString16(hello.authToken, field: "auth_token")
      try buffer.writeList8(hello.compressions, field: "compressions")
      if let limit = hello.maxFrameSize { buffer.writeInteger(limit) }
    case .welcome(let welcome):
      buffer.writeInteger(welcome.version)
      buffer.writeInteger(welcome.compression)
      buffer.writeInteger(welcome.maxFrameSize)
      buffer.writeInteger(welcome.maxConcurrentRequests)
      try buffer.writeString16(welcome.clientID, field: "client_id")
    case .predict(let predict):
      buffer.writeInteger(predict.deadlineMilliseconds)
      try buffer.writeString16(predict.model, field: "model")
      try buffer.writeBytes32(predict.input, field: "input")
    case .batchPredict(let batch):
      buffer.writeInteger(batch.deadlineMilliseconds)
      try buffer.writeString16(batch.model, field: "model")
      try buffer.writeBytesList(batch.inputs, field: "inputs")
    case .streamOpen(let open):
      buffer.writeInteger(open.deadlineMilliseconds)
      try buffer.writeString16(open.model, field: "model")
      try buffer.writeString32(open.prompt, field: "prompt")
    case .cancel, .statsRequest:
      break
    case .ping(let value), .pong(let value):
      buffer.writeInteger(value)
    case .result(let output):
      try buffer.writeBytes32(output, field: "output")
    case .batchResult(let outputs):
      try buffer.writeBytesList(outputs, field: "outputs")
    case .token(let token):
      try buffer.writeString32(token, field: "token")
    case .streamEnd(let count):
      buffer.writeInteger(count)
    case .stats(let json):
      try buffer.writeString32(json, field: "json")
    case .error(let info):
      buffer.writeInteger(info.code.rawValue)
      buffer.writeInteger(info.retryAfterMilliseconds)
      try buffer.writeString16(info.message, field: "message")
    case .goAway(let goAway):
      buffer.writeInteger(goAway.code.rawValue)
      try buffer.writeString16(goAway.message, field: "message")
    }
  }

  /// Parses the payload of a frame of `type`, consuming all of it.
  ///
  /// - Throws: ``WireError``: a connection error for a payload that is truncated or has bytes
  ///   left over; a request error (``StatusCode/invalidArgument`` on `requestID`) for text that
  ///   is not UTF-8 in a request (`PREDICT`, `BATCH_PREDICT`, `STREAM_OPEN`), whose frame was
  ///   delimited correctly and so does not endanger the connection.
  public static func decodePayload(type: FrameType, requestID: UInt32, payload: ByteBuffer) throws(WireError)
    -> WireMessage
  {
    var reader = PayloadReader(
      buffer: payload,
      typeName: type.name,
      badTextIsRequestError: requestID != 0
        && (type == .predict || type == .batchPredict || type == .streamOpen),
      requestID: requestID
    )
    let message: WireMessage
    switch type {
    case .hello:
      message = .hello(
        Hello(
          versions: try reader.list8(),
          clientID: try reader.string16("client_id"),
          authToken: try reader.string16("auth_token"),
          compressions: try reader.list8(),
          maxFrameSize: reader.isAtEnd ? nil : try reader.integer()
        )
      )
    case .welcome:
      message = .welcome(
        Welcome(
          version: try reader.integer(),
          compression: try reader.integer(),
          maxFrameSize: try reader.integer(),
          maxConcurrentRequests: try reader.integer(),
          clientID: try reader.string16("client_id")
        )
      )
    case .predict:
      message = .predict(
        Predict(
          deadlineMilliseconds: try reader.integer(),
          model: try reader.string16("model"),
          input: try reader.bytes32()
        )
      )
    case .batchPredict:
      message = .batchPredict(
        BatchPredict(
          deadlineMilliseconds: try reader.integer(),
          model: try reader.string16("model"),
          inputs: try reader.bytesList()
        )
      )
    case .streamOpen:
      message = .streamOpen(
        StreamOpen(
          deadlineMilliseconds: try reader.integer(),
          model: try reader.string16("model"),
          prompt: try reader.string32("prompt")
        )
      )
    case .cancel:
      message = .cancel
    case .statsRequest:
      message = .statsRequest
    case .ping:
      message = .ping(try reader.integer())
    case .pong:
      message = .pong(try reader.integer())
    case .result:
      message = .result(try reader.bytes32())
    case .batchResult:
      message = .batchResult(try reader.bytesList())
    case .token:
      message = .token(try reader.string32("token"))
    case .streamEnd:
      message = .streamEnd(tokenCount: try reader.integer())
    case .stats:
      message = .stats(json: try reader.string32("json"))
    case .error:
      message = .error(
        ErrorInfo(
          code: StatusCode(rawValue: try reader.integer()),
          retryAfterMilliseconds: try reader.integer(),
          message: try reader.string16("message")
        )
      )
    case .goAway:
      message = .goAway(
        GoAway(code: StatusCode(rawValue: try reader.integer()), message: try reader.string16("message"))
      )
    }
    try reader.finish()
    if let deferred = reader.deferredError { throw deferred }
    return message
  }
}
