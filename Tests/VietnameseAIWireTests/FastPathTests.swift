import NIOCore
import TestSupport
import Testing

@testable import VietnameseAIWire

/// The streaming hot paths (token encoding and decoding, UTF-8 validation) must agree with
/// the general code byte for byte.
@Suite("Fast paths")
struct FastPathTests {
  /// Random bytes that are often valid UTF-8 and often broken near a rule's boundary.
  static func randomText(_ rng: inout SplitMix64) -> [UInt8] {
    let pieces: [[UInt8]] = [
      Array("a".utf8), Array("Việt".utf8), Array("😀".utf8), Array("ữ".utf8),
      [0xC0, 0x80], [0xC2], [0xE0, 0x9F, 0x80], [0xE0, 0xA0, 0x80], [0xED, 0xA0, 0x80], [0xED, 0x9F, 0xBF],
      [0xF0, 0x8F, 0xBF, 0xBF], [0xF0, 0x90, 0x80, 0x80], [0xF4, 0x8F, 0xBF, 0xBF], [0xF4, 0x90, 0x80, 0x80],
      [0xF5, 0x80, 0x80, 0x80], [0xFF], [0x80], [0xE2, 0x82], [0x7F],
    ]
    var bytes: [UInt8] = []
    for _ in 0..<Int.random(in: 0...12, using: &rng) {
      if Bool.random(using: &rng) {
        bytes += pieces.randomElement(using: &rng)!
      } else {
        bytes.append(UInt8.random(in: 0...255, using: &rng))
      }
    }
    return bytes
  }

  @Test("durations round up to whole milliseconds exactly, 0 for none, clamped to u32")
  func millisecondsRoundingUp() {
    let cases: [(Duration, UInt32)] = [
      (.zero, 0), (.seconds(-1), 0), (.nanoseconds(-1), 0), (.nanoseconds(1), 1),
      (.milliseconds(1), 1), (.microseconds(1001), 2), (.milliseconds(30_000), 30_000),
      (.seconds(30) + .nanoseconds(1), 30_001), (.seconds(18) + .milliseconds(447), 18_447),
      (Duration(secondsComponent: 0, attosecondsComponent: 1), 1),
      (Duration(secondsComponent: 86_400, attosecondsComponent: 999_999_999_999_999_999), 86_401_000),
      (.milliseconds(Int64(UInt32.max) - 1), UInt32.max - 1), (.milliseconds(Int64(UInt32.max)), UInt32.max),
      (.seconds(Int64.max), UInt32.max),
    ]
    for (duration, expected) in cases {
      #expect(WireProtocol.milliseconds(roundingUp: duration) == expected, "\(duration)")
    }
    // Against exact arithmetic on the components, across the 2^64-attosecond boundary.
    var rng = SplitMix64(seed: 7)
    for _ in 0..<10_000 {
      let seconds = Int64(rng.next() % 100_000)
      let attoseconds = Int64(rng.next() % 1_000_000_000_000_000_000)
      let duration = Duration(secondsComponent: seconds, attosecondsComponent: attoseconds)
      let exact = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
      #expect(WireProtocol.milliseconds(roundingUp: duration) == UInt32(exact))
    }
  }

  @Test("UTF-8 validation agrees with the standard library on random and boundary inputs")
  func utf8Validation() {
    var rng = SplitMix64(seed: 0x5EED_0001)
    var valid = 0
    for _ in 0..<50_000 {
      let bytes = Self.randomText(&rng)
      let expected = String(validating: bytes, as: UTF8.self) != nil
      let actual = bytes.withUnsafeBytes { UTF8Validation.isValid($0) }
      #expect(actual == expected, "\(bytes.map { String($0, radix: 16) })")
      if expected { valid += 1 }
    }
    // Both outcomes were exercised in earnest.
    #expect(valid > 5_000 && valid < 45_000)
    let long = Array(String(repeating: "Trí tuệ nhân tạo 😀 ", count: 100).utf8)
    #expect(long.withUnsafeBytes { UTF8Validation.isValid($0) })
    #expect(!(long + [0xC3]).withUnsafeBytes { UTF8Validation.isValid($0) })
  }

  @Test("every frame written in one pass is the general encoder's, byte for byte")
  func directEncoding() throws {
    var messages = MessageGenerator(rng: SplitMix64(seed: 0x5EED_0004))
    var direct = 0
    for compressed in [false, true] {
      var encoder = FrameEncoder(compressionThreshold: 64)
      if compressed { encoder.compressor = Zlib.Compressor() }
      for _ in 0..<200 {
        for type in FrameType.allCases {
          let frame = messages.frame(type: type)
          var general = ByteBuffer()
          try encoder.encodeGeneral(frame, into: &general)
          var fast = ByteBuffer()
          if encoder.encodeDirect(frame, into: &fast) {
            #expect(fast == general, "\(type.name)")
            direct += 1
          }
        }
      }
    }
    #expect(direct > 2_000)
  }

  @Test("a token frame written by the fast path is the general encoder's, byte for byte")
  func tokenEncoding() throws {
    var rng = SplitMix64(seed: 0x5EED_0002)
    for compressed in [false, true] {
      var encoder = FrameEncoder(compressionThreshold: 64)
      if compressed { encoder.compressor = Zlib.Compressor() }
      for _ in 0..<2_000 {
        let token = String(decoding: Self.randomText(&rng), as: UTF8.self)
        let frame = WireFrame(requestID: UInt32.random(in: 1 ... .max, using: &rng), message: .token(token))
        var general = ByteBuffer()
        try encoder.encodeGeneral(frame, into: &general)
        var fast = ByteBuffer()
        if encoder.encodeDirect(frame, into: &fast) {
          #expect(fast == general)
        } else {
          #expect(compressed && 4 + token.utf8.count >= 64, "refused \(token.utf8.count) bytes")
        }
      }
    }
  }

  @Test("a writer's token runs stop at the limit, at the end, or at a token too large")
  func tokenRuns() throws {
    var writer = FrameWriter(maxPayloadSize: 16)
    var tokens = ["một ", "hai ", "ba "].makeIterator()
    let (two, more) = writer.appendTokens(requestID: 9, limit: 2) { tokens.next() }
    #expect(two == 2)
    guard case .more = more else { throw UnexpectedOutcome() }
    let (one, exhausted) = writer.appendTokens(requestID: 9, limit: 5) { tokens.next() }
    #expect(one == 1)
    guard case .exhausted = exhausted else { throw UnexpectedOutcome() }
    var oversized = ["ổn ", String(repeating: "x", count: 13)].makeIterator()
    let (fine, failed) = writer.appendTokens(requestID: 9, limit: 5) { oversized.next() }
    #expect(fine == 1)
    guard case .failed(let error) = failed else { throw UnexpectedOutcome() }
    #expect(error.code == .frameTooLarge)

    var decoder = FrameDecoder(role: .client)
    var bytes = writer.takeForFlush()!
    var decoded: [String] = []
    while let next = try decoder.decodeNext(&bytes) {
      guard case .token(9, let token) = next else { throw UnexpectedOutcome() }
      decoded.append(token)
    }
    #expect(decoded == ["một ", "hai ", "ba ", "ổn "])
  }

  @Test("a token frame decodes the same on the fast path and the general one; a bad one still fails")
  func tokenDecoding() throws {
    var rng = SplitMix64(seed: 0x5EED_0003)
    for _ in 0..<2_000 {
      let token = String(decoding: Self.randomText(&rng), as: UTF8.self)
      var bytes = ByteBuffer()
      try FrameEncoder().encode(WireFrame(requestID: 3, message: .token(token)), into: &bytes)
      var decoder = FrameDecoder(role: .client)
      guard case .token(3, let decoded)? = try decoder.decodeNext(&bytes) else { throw UnexpectedOutcome() }
      #expect(decoded == token)
    }
    // Invalid UTF-8 in a token is a connection error, on the fast path as on the general one.
    var bad = ByteBuffer()
    bad.writeInteger(UInt32(4 + 2))
    bad.writeInteger(WireProtocol.version)
    bad.writeInteger(FrameType.token.rawValue)
    bad.writeInteger(UInt8(0))
    bad.writeInteger(UInt32(3))
    bad.writeInteger(UInt32(2))
    bad.writeBytes([0xC3, 0x28])
    var decoder = FrameDecoder(role: .client)
    #expect(throws: WireError.self) { try decoder.decodeNext(&bad) }
  }
}

/// Thrown where a test meets an outcome of the wrong kind.
private struct UnexpectedOutcome: Error {}
