public import NIOCore

// Worker protocol payloads, version 1 (`Protocol/PROTOCOL.md` §11.6). Field types as in
// `Internal/PayloadFields.swift`.
//
//   WORKER_HELLO    list8 versions | str16 worker_name | str16 auth_token | u16 count
//                   | count x declaration
//   declaration     str16 name | u8 kind | u8 input | u8 output | u32 dimensions
//                   | u32 preferred_batch_size | u32 concurrency
//   WORKER_WELCOME  u8 version | u32 max_frame_size | u32 heartbeat_interval_ms
//                   | u32 heartbeat_timeout_ms
//   RUN_BATCH       u32 deadline_ms | str16 model | u32 count | count x bytes32 input
//   BATCH_DONE      u32 count | count x bytes32 output
//   GENERATE        u32 deadline_ms | str16 generator | str32 prompt | u32 max_tokens | u32 window
//                   | u8 stop_count | stop_count x str16 stop
//   TOKENS          u32 count | count x str32 token
//   GENERATE_DONE   u32 token_count
//   CANCEL_WORK     (empty)
//   CREDIT          u32 tokens
//   SHUTDOWN        u32 grace_ms
//   PING, PONG      u64 opaque
//   ERROR           u16 status | u32 retry_after_ms | str16 message

extension WorkerMessage {
  /// Appends this message's payload to `buffer`.
  ///
  /// - Throws: ``WireError`` with ``StatusCode/invalidArgument`` if a field does not fit its
  ///   length prefix.
  public func encodePayload(into buffer: inout ByteBuffer) throws(WireError) {
    switch self {
    case .hello(let hello):
      try buffer.writeList8(hello.versions, field: "versions")
      try buffer.writeString16(hello.workerName, field: "worker_name")
      try buffer.writeString16(hello.authToken, field: "auth_token")
      guard hello.declarations.count <= Int(UInt16.max) else {
        throw WireError(code: .invalidArgument, message: "too many declarations", closesConnection: false)
      }
      buffer.writeInteger(UInt16(hello.declarations.count))
      for declaration in hello.declarations {
        try buffer.writeString16(declaration.name, field: "name")
        buffer.writeMultipleIntegers(
          declaration.kind.rawValue,
          declaration.input.rawValue,
          declaration.output.rawValue,
          declaration.dimensions,
          declaration.preferredBatchSize,
          declaration.concurrency
        )
      }
    case .welcome(let welcome):
      buffer.writeMultipleIntegers(
        welcome.version,
        welcome.maxFrameSize,
        welcome.heartbeatIntervalMilliseconds,
        welcome.heartbeatTimeoutMilliseconds
      )
    case .runBatch(let batch):
      buffer.writeInteger(batch.deadlineMilliseconds)
      try buffer.writeString16(batch.model, field: "model")
      try buffer.writeBytesList(batch.inputs, field: "inputs")
    case .batchDone(let outputs):
      try buffer.writeBytesList(outputs, field: "outputs")
    case .generate(let generate):
      buffer.writeInteger(generate.deadlineMilliseconds)
      try buffer.writeString16(generate.generator, field: "generator")
      try buffer.writeString32(generate.prompt, field: "prompt")
      buffer.writeMultipleIntegers(generate.maxTokens, generate.window)
      guard generate.stops.count <= Self.maxStops else {
        throw WireError(
          code: .invalidArgument,
          message: "at most \(Self.maxStops) stop sequences, not \(generate.stops.count)",
          closesConnection: false
        )
      }
      buffer.writeInteger(UInt8(generate.stops.count))
      for stop in generate.stops { try buffer.writeString16(stop, field: "stop") }
    case .tokens(let tokens):
      buffer.writeInteger(UInt32(tokens.count))
      for token in tokens { try buffer.writeString32(token, field: "token") }
    case .generateDone(let count), .credit(let count), .shutdown(let count):
      buffer.writeInteger(count)
    case .cancelWork:
      break
    case .ping(let value), .pong(let value):
      buffer.writeInteger(value)
    case .error(let info):
      buffer.writeInteger(info.code.rawValue)
      buffer.writeInteger(info.retryAfterMilliseconds)
      try buffer.writeString16(info.message, field: "message")
    }
  }

  /// Stop sequences a `GENERATE` carries at most, as the OpenAI API allows.
  public static let maxStops = 4

  /// Parses the payload of a frame of `type`, consuming all of it.
  ///
  /// - Throws: ``WireError``, a connection error: a worker connection carries one party's work,
  ///   so a payload that breaks the specification ends it.
  public static func decodePayload(type: WorkerFrameType, payload: ByteBuffer) throws(WireError)
    -> WorkerMessage
  {
    var reader = PayloadReader(
      buffer: payload,
      typeName: type.name,
      badTextIsRequestError: false,
      requestID: 0
    )
    let message: WorkerMessage
    switch type {
    case .workerHello:
      let versions = try reader.list8()
      let workerName = try reader.string16("worker_name")
      let authToken = try reader.string16("auth_token")
      let count = Int(try reader.integer(UInt16.self))
      var declarations: [Declaration] = []
      for _ in 0..<count {
        let name = try reader.string16("name")
        let (kind, input, output) = (
          try reader.integer(UInt8.self), try reader.integer(UInt8.self), try reader.integer(UInt8.self)
        )
        guard let kind = Declaration.Kind(rawValue: kind), let input = Declaration.Input(rawValue: input),
          let output = Declaration.Output(rawValue: output)
        else {
          throw .protocolViolation("declaration of \(name) has an unknown kind, input or output")
        }
        declarations.append(
          Declaration(
            name: name,
            kind: kind,
            input: input,
            output: output,
            dimensions: try reader.integer(),
            preferredBatchSize: try reader.integer(),
            concurrency: try reader.integer()
          )
        )
      }
      message = .hello(
        Hello(versions: versions, workerName: workerName, authToken: authToken, declarations: declarations)
      )
    case .workerWelcome:
      message = .welcome(
        Welcome(
          version: try reader.integer(),
          maxFrameSize: try reader.integer(),
          heartbeatIntervalMilliseconds: try reader.integer(),
          heartbeatTimeoutMilliseconds: try reader.integer()
        )
      )
    case .runBatch:
      message = .runBatch(
        RunBatch(
          deadlineMilliseconds: try reader.integer(),
          model: try reader.string16("model"),
          inputs: try reader.bytesList()
        )
      )
    case .batchDone:
      message = .batchDone(try reader.bytesList())
    case .generate:
      let deadline: UInt32 = try reader.integer()
      let generator = try reader.string16("generator")
      let prompt = try reader.string32("prompt")
      let maxTokens: UInt32 = try reader.integer()
      let window: UInt32 = try reader.integer()
      let stopCount = Int(try reader.integer(UInt8.self))
      guard stopCount <= maxStops else {
        throw .protocolViolation("GENERATE carries at most \(maxStops) stop sequences, not \(stopCount)")
      }
      var stops: [String] = []
      for _ in 0..<stopCount { stops.append(try reader.string16("stop")) }
      message = .generate(
        Generate(
          deadlineMilliseconds: deadline,
          generator: generator,
          prompt: prompt,
          maxTokens: maxTokens,
          window: window,
          stops: stops
        )
      )
    case .tokens:
      let count = Int(try reader.integer(UInt32.self))
      guard count <= reader.buffer.readableBytes / 4 else {
        throw .protocolViolation("TOKENS payload is truncated: a list of \(count) items")
      }
      var tokens: [String] = []
      tokens.reserveCapacity(count)
      for _ in 0..<count { tokens.append(try reader.string32("token")) }
      message = .tokens(tokens)
    case .generateDone:
      message = .generateDone(tokenCount: try reader.integer())
    case .cancelWork:
      message = .cancelWork
    case .credit:
      message = .credit(try reader.integer())
    case .shutdown:
      message = .shutdown(graceMilliseconds: try reader.integer())
    case .ping:
      message = .ping(try reader.integer())
    case .pong:
      message = .pong(try reader.integer())
    case .error:
      message = .error(
        WireMessage.ErrorInfo(
          code: StatusCode(rawValue: try reader.integer()),
          retryAfterMilliseconds: try reader.integer(),
          message: try reader.string16("message")
        )
      )
    }
    try reader.finish()
    return message
  }
}
