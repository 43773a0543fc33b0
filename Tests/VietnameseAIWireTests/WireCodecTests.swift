import NIOCore
import TestSupport
import Testing
import VietnameseAIWire

/// Random messages of every type, for round-trip tests.
struct MessageGenerator {
  var rng: SplitMix64

  private static let alphabet = Array("abc xyz ĐđƯưỜờệ 😀\"\\\n\t\u{0}")

  mutating func int<T: FixedWidthInteger>(_: T.Type = T.self) -> T {
    T.random(in: .min ... .max, using: &rng)
  }

  mutating func text(max: Int = 40) -> String {
    String((0..<Int.random(in: 0...max, using: &rng)).map { _ in Self.alphabet.randomElement(using: &rng)! })
  }

  mutating func bytes(max: Int = 64) -> ByteBuffer {
    let count = Int.random(in: 0...max, using: &rng)
    return ByteBuffer(bytes: (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) })
  }

  mutating func list() -> [ByteBuffer] { (0..<Int.random(in: 0...5, using: &rng)).map { _ in bytes() } }

  /// A random frame whose request id obeys the rules for its type.
  mutating func frame(type: FrameType) -> WireFrame {
    let message: WireMessage
    switch type {
    case .hello:
      message = .hello(
        .init(versions: [1, int()], clientID: text(), authToken: text(), compressions: [0, 1])
      )
    case .welcome:
      message = .welcome(
        .init(
          version: 1,
          compression: int(),
          maxFrameSize: int(),
          maxConcurrentRequests: int(),
          clientID: text()
        )
      )
    case .predict: message = .predict(.init(deadlineMilliseconds: int(), model: text(), input: bytes()))
    case .batchPredict:
      message = .batchPredict(.init(deadlineMilliseconds: int(), model: text(), inputs: list()))
    case .streamOpen:
      message = .streamOpen(.init(deadlineMilliseconds: int(), model: text(), prompt: text(max: 300)))
    case .cancel: message = .cancel
    case .statsRequest: message = .statsRequest
    case .ping: message = .ping(int())
    case .pong: message = .pong(int())
    case .result: message = .result(bytes(max: 3000))
    case .batchResult: message = .batchResult(list())
    case .token: message = .token(text(max: 8))
    case .streamEnd: message = .streamEnd(tokenCount: int())
    case .stats: message = .stats(json: text(max: 2000))
    case .error:
      message = .error(
        .init(code: StatusCode(rawValue: int()), retryAfterMilliseconds: int(), message: text())
      )
    case .goAway: message = .goAway(.init(code: StatusCode(rawValue: int()), message: text()))
    }
    let connectionFrame = [.hello, .welcome, .ping, .pong, .goAway].contains(type)
    let id: UInt32 = connectionFrame ? 0 : (type == .error && int(UInt8.self) < 32 ? 0 : max(1, int()))
    return WireFrame(requestID: id, message: message)
  }
}

@Suite("Frame codec")
struct WireCodecTests {
  private static func decodeAll(
    _ bytes: ByteBuffer,
    role: FrameDecoder.Role,
    compression: Bool = false,
    max: Int = WireProtocol.defaultMaxFrameSize
  ) throws -> [WireFrame] {
    var decoder = FrameDecoder(
      role: role,
      maxPayloadSize: max,
      decompressor: compression ? Zlib.Decompressor() : nil
    )
    var buffer = bytes
    var frames: [WireFrame] = []
    while let next = try decoder.decode(buffer: &buffer) { frames.append(try next.get()) }
    #expect(buffer.readableBytes == 0)
    return frames
  }

  @Test(
    "random messages of every type survive encode then decode, with and without compression",
    arguments: [false, true]
  )
  func roundTrip(compression: Bool) throws {
    var generator = MessageGenerator(rng: SplitMix64(seed: compression ? 7 : 3))
    let encoder = FrameEncoder(compressor: compression ? Zlib.Compressor() : nil, compressionThreshold: 64)
    for role in [FrameDecoder.Role.server, .client] {
      let types = FrameType.allCases.filter { role == .server ? $0.sentByClient : $0.sentByServer }
      var frames: [WireFrame] = []
      var out = ByteBuffer()
      for _ in 0..<500 {
        let frame = generator.frame(type: types.randomElement(using: &generator.rng)!)
        frames.append(frame)
        try encoder.encode(frame, into: &out)
      }
      #expect(try Self.decodeAll(out, role: role, compression: compression) == frames)
    }
  }

  @Test("a payload of exactly the limit passes; one byte more is refused on its header alone")
  func limitIsExact() throws {
    let frame = WireFrame(requestID: 1, message: .result(ByteBuffer(repeating: 7, count: 996)))
    var out = ByteBuffer()
    try FrameEncoder().encode(frame, into: &out)
    #expect(out.readableBytes == FrameHeader.size + 1000)
    #expect(try Self.decodeAll(out, role: .client, max: 1000) == [frame])
    // The header alone, with no payload behind it, is enough to refuse.
    var decoder = FrameDecoder(role: .client, maxPayloadSize: 999)
    var header = out.getSlice(at: 0, length: FrameHeader.size)!
    #expect(throws: WireError.self) { try decoder.decode(buffer: &header) }
    do {
      _ = try decoder.decode(buffer: &header)
    } catch let error as WireError {
      #expect(error.code == .frameTooLarge)
      #expect(error.closesConnection)
    }
  }

  @Test("an incomplete frame consumes nothing and waits for more bytes")
  func incompleteFrameWaits() throws {
    var out = ByteBuffer()
    try FrameEncoder().encode(WireFrame(requestID: 5, message: .token("xin chào")), into: &out)
    var decoder = FrameDecoder(role: .client)
    for cut in [0, 5, FrameHeader.size, out.readableBytes - 1] {
      var partial = out.getSlice(at: 0, length: cut)!
      #expect(try decoder.decode(buffer: &partial) == nil)
      #expect(partial.readerIndex == 0)
    }
  }

  @Test("compression is used only above the threshold and only when it makes the frame smaller")
  func compressionPolicy() throws {
    let encoder = FrameEncoder(compressor: Zlib.Compressor(), compressionThreshold: 1024)
    func flags(_ message: WireMessage) throws -> FrameFlags {
      var out = ByteBuffer()
      try encoder.encode(WireFrame(requestID: 1, message: message), into: &out)
      return FrameFlags(rawValue: out.getInteger(at: 6)!)
    }
    #expect(try flags(.result(ByteBuffer(repeating: 0, count: 1000))) == [])
    #expect(try flags(.result(ByteBuffer(repeating: 0, count: 5000))) == .compressed)
    var rng = SplitMix64(seed: 1)
    let noise = ByteBuffer(bytes: (0..<5000).map { _ in UInt8.random(in: 0...255, using: &rng) })
    #expect(try flags(.result(noise)) == [], "incompressible data must go out as it is")
    var hello = ByteBuffer()
    let bigHello = WireMessage.hello(
      .init(versions: [1], clientID: String(repeating: "a", count: 5000), compressions: [1])
    )
    try encoder.encode(WireFrame(requestID: 0, message: bigHello), into: &hello)
    #expect(hello.getInteger(at: 6, as: UInt8.self) == 0, "handshake frames are never compressed")
  }

  @Test("a decompression bomb stops at the declared length plus one byte")
  func zipBomb() throws {
    let compressor = Zlib.Compressor(level: 9)
    var packed = ByteBuffer()
    compressor.compress(ByteBuffer(repeating: 0, count: 64 * 1024 * 1024), into: &packed)
    #expect(packed.readableBytes < 100_000)
    var out = ByteBuffer()
    do {
      try Zlib.Decompressor().decompress(packed, expectedLength: 1024, into: &out)
      Issue.record("inflated a bomb")
    } catch {
      #expect(error.code == .protocolError)
    }
    #expect(out.readableBytes == 0)
    #expect(out.capacity <= 64 * 1024, "the decompressor allocated \(out.capacity) bytes")
  }

  @Test("zlib output decompresses back to its input, byte for byte")
  func zlibRoundTrip() throws {
    var rng = SplitMix64(seed: 9)
    let compressor = Zlib.Compressor()
    let decompressor = Zlib.Decompressor()
    for size in [0, 1, 100, 65_536, 1_000_000] {
      let input = ByteBuffer(bytes: (0..<size).map { _ in UInt8.random(in: 0...15, using: &rng) })
      var packed = ByteBuffer()
      compressor.compress(input, into: &packed)
      var unpacked = ByteBuffer()
      try decompressor.decompress(packed, expectedLength: size, into: &unpacked)
      #expect(unpacked == input)
    }
  }

  @Test("a field too long for its length prefix is refused by the encoder, which writes nothing")
  func oversizeField() {
    var out = ByteBuffer()
    let predict = WireMessage.predict(
      .init(model: String(repeating: "m", count: 70_000), input: ByteBuffer())
    )
    #expect(throws: WireError.self) {
      try FrameEncoder().encode(WireFrame(requestID: 1, message: predict), into: &out)
    }
    #expect(out.readableBytes == 0)
  }

  @Test("status codes have the specification's names and numbers")
  func statusCodes() {
    #expect(StatusCode.allKnown.map(\.rawValue) == Array(0...15))
    #expect(StatusCode.refused.name == "REFUSED")
    #expect(StatusCode.rateLimited.name == "RATE_LIMITED")
    #expect(StatusCode(name: "QUEUE_FULL") == .queueFull)
    #expect(StatusCode(rawValue: 999).name == "UNKNOWN(999)")
  }

  @Test("the vectors cover every frame type")
  func vectorsCoverEveryType() throws {
    let types = try GoldenVector.all().flatMap { vector in
      vector.results.compactMap { result -> FrameType? in
        if case .frame(let frame) = result { return frame.message.type }
        return nil
      }
    }
    #expect(Set(types) == Set(FrameType.allCases))
  }
}
