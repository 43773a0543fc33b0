import NIOCore
import Testing
import VietnameseAIWire

@Suite("Worker protocol frames")
struct WorkerFrameCodecTests {
  static let workerFrames: [WorkerFrame] = [
    WorkerFrame(
      requestID: 0,
      message: .hello(
        .init(
          versions: [1],
          workerName: "minilm-1",
          authToken: "bí mật",
          declarations: [
            .init(
              name: "minilm",
              kind: .model,
              input: .text,
              output: .vector,
              dimensions: 384,
              preferredBatchSize: 32
            ),
            .init(name: "smollm2", kind: .generator, input: .text, output: .text, concurrency: 4),
          ]
        )
      )
    ),
    WorkerFrame(requestID: 7, message: .batchDone([ByteBuffer(string: "một"), ByteBuffer()])),
    WorkerFrame(requestID: 9, message: .tokens(["xin ", "chào", ""])),
    WorkerFrame(requestID: 9, message: .generateDone(tokenCount: 3)),
    WorkerFrame(requestID: 0, message: .pong(42)),
    WorkerFrame(requestID: 7, message: .error(.init(code: .internal, message: "model failed"))),
  ]

  static let serverFrames: [WorkerFrame] = [
    WorkerFrame(
      requestID: 0,
      message: .welcome(
        .init(
          version: 1,
          maxFrameSize: 4 << 20,
          heartbeatIntervalMilliseconds: 1000,
          heartbeatTimeoutMilliseconds: 10_000
        )
      )
    ),
    WorkerFrame(
      requestID: 7,
      message: .runBatch(.init(deadlineMilliseconds: 250, model: "minilm", inputs: [ByteBuffer(string: "a")]))
    ),
    WorkerFrame(
      requestID: 9,
      message: .generate(
        .init(generator: "smollm2", prompt: "Viết", maxTokens: 16, window: 64, stops: ["\n", "。"])
      )
    ),
    WorkerFrame(requestID: 9, message: .credit(32)),
    WorkerFrame(requestID: 7, message: .cancelWork),
    WorkerFrame(requestID: 0, message: .shutdown(graceMilliseconds: 5000)),
    WorkerFrame(requestID: 0, message: .ping(42)),
  ]

  func bytes(_ frames: [WorkerFrame]) throws -> ByteBuffer {
    var buffer = ByteBuffer()
    for frame in frames { try WorkerFrameCodec.encode(frame, into: &buffer) }
    return buffer
  }

  func decodeAll(_ buffer: ByteBuffer, role: WorkerFrameCodec.Role) throws -> [WorkerFrame] {
    var buffer = buffer
    let codec = WorkerFrameCodec(role: role)
    var frames: [WorkerFrame] = []
    while let frame = try codec.decode(&buffer) { frames.append(frame) }
    #expect(buffer.readableBytes == 0)
    return frames
  }

  @Test("every message round-trips, read whole or a byte at a time")
  func roundTrips() throws {
    for (frames, role) in [(Self.workerFrames, WorkerFrameCodec.Role.server), (Self.serverFrames, .worker)] {
      let encoded = try bytes(frames)
      #expect(try decodeAll(encoded, role: role) == frames)
      var dribbled = ByteBuffer()
      var decoded: [WorkerFrame] = []
      let codec = WorkerFrameCodec(role: role)
      for byte in encoded.readableBytesView {
        dribbled.writeInteger(byte)
        while let frame = try codec.decode(&dribbled) { decoded.append(frame) }
      }
      #expect(decoded == frames)
    }
  }

  @Test("the header is the client protocol's: length, version 1, type, flags, request id")
  func layout() throws {
    let encoded = try bytes([WorkerFrame(requestID: 5, message: .credit(0x0102_0304))])
    #expect(Array(encoded.readableBytesView) == [0, 0, 0, 4, 1, 0xA4, 0, 0, 0, 0, 5, 1, 2, 3, 4])
  }

  func refusal(_ bytes: [UInt8], role: WorkerFrameCodec.Role = .server, maxPayloadSize: Int = 1 << 20)
    -> WireError?
  {
    var buffer = ByteBuffer(bytes: bytes)
    do {
      _ = try WorkerFrameCodec(role: role, maxPayloadSize: maxPayloadSize).decode(&buffer)
      return nil
    } catch {
      return error
    }
  }

  @Test("frames that break the specification are connection errors, caught from the header where possible")
  func refusals() throws {
    // A client's HELLO on the worker listener.
    #expect(refusal([0, 0, 0, 0, 1, 0x01, 0, 0, 0, 0, 0])?.code == .protocolError)
    // A server's frame from a worker, and a worker's frame from a server.
    #expect(refusal([0, 0, 0, 4, 1, 0xA4, 0, 0, 0, 0, 5])?.code == .protocolError)
    #expect(refusal([0, 0, 0, 4, 1, 0x83, 0, 0, 0, 0, 5], role: .worker)?.code == .protocolError)
    // Version, flags, request id rules, size: refused before the payload arrives.
    #expect(refusal([0, 0, 0, 4, 2, 0x83, 0, 0, 0, 0, 5])?.code == .unsupportedVersion)
    #expect(refusal([0, 0, 0, 4, 1, 0x83, 1, 0, 0, 0, 5])?.code == .protocolError)
    #expect(refusal([0, 0, 0, 4, 1, 0x83, 0, 0, 0, 0, 0])?.code == .protocolError)
    #expect(refusal([0, 0, 0, 8, 1, 0x08, 0, 0, 0, 0, 3])?.code == .protocolError)
    #expect(refusal([0xFF, 0, 0, 0, 1, 0x81, 0, 0, 0, 0, 1])?.code == .frameTooLarge)
    // Payloads: truncated, with bytes left over, with a count larger than the payload holds.
    #expect(refusal([0, 0, 0, 2, 1, 0x83, 0, 0, 0, 0, 5, 0, 0])?.code == .protocolError)
    #expect(refusal([0, 0, 0, 5, 1, 0x83, 0, 0, 0, 0, 5, 0, 0, 0, 1, 9])?.code == .protocolError)
    #expect(refusal([0, 0, 0, 4, 1, 0x82, 0, 0, 0, 0, 5, 0xFF, 0xFF, 0xFF, 0xFF])?.code == .protocolError)
    // A token that is not UTF-8.
    #expect(
      refusal([0, 0, 0, 9, 1, 0x82, 0, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 1, 0xFF])?.code == .protocolError
    )
    // A declaration of an unknown kind.
    var hello = ByteBuffer()
    try WorkerFrameCodec.encode(Self.workerFrames[0], into: &hello)
    var bytes = Array(hello.readableBytesView)
    let kindOffset =
      FrameHeader.size + 1 + 1 + 2 + "minilm-1".utf8.count + 2 + "bí mật".utf8.count + 2 + 2 + 6
    #expect(bytes[kindOffset] == 0)
    bytes[kindOffset] = 9
    #expect(refusal(bytes)?.code == .protocolError)
  }

  @Test("a GENERATE with more than four stop sequences cannot be sent")
  func tooManyStops() {
    var buffer = ByteBuffer()
    let generate = WorkerMessage.generate(
      .init(generator: "g", prompt: "p", window: 1, stops: ["a", "b", "c", "d", "e"])
    )
    #expect(throws: WireError.self) {
      try WorkerFrameCodec.encode(.init(requestID: 1, message: generate), into: &buffer)
    }
    #expect(buffer.readableBytes == 0)
  }
}
