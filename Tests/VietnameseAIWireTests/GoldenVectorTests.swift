import NIOCore
import NIOTestUtils
import TestSupport
import Testing
import VietnameseAIWire

@Suite("Golden vectors")
struct GoldenVectorTests {
  /// Decodes `bytes` the way a connection would: frame after frame until one is missing, a
  /// connection error, or (with `eof`) the end of the stream.
  static func decode(_ vector: GoldenVector) -> (results: [GoldenVector.Expected], error: WireError?) {
    var decoder = FrameDecoder(
      role: vector.role,
      maxPayloadSize: vector.maxFrameSize,
      decompressor: vector.compression ? Zlib.Decompressor() : nil
    )
    var buffer = ByteBuffer(bytes: vector.bytes)
    var results: [GoldenVector.Expected] = []
    do {
      while let next = try decoder.decode(buffer: &buffer) {
        results.append(Self.expected(next))
      }
      if vector.eof, let last = try decoder.decodeLast(buffer: &buffer, seenEOF: true) {
        results.append(Self.expected(last))
      }
      return (results, nil)
    } catch let error as WireError {
      return (results, error)
    } catch {
      Issue.record("decoder threw a non-WireError: \(error)")
      return (results, nil)
    }
  }

  private static func expected(_ result: Result<WireFrame, WireError>) -> GoldenVector.Expected {
    switch result {
    case .success(let frame): return .frame(frame)
    case .failure(let error): return .requestError(error.code, requestID: error.requestID ?? 0)
    }
  }

  @Test(
    "every vector decodes to what it describes, or fails with its documented error",
    arguments: try GoldenVector.all()
  )
  func decodes(vector: GoldenVector) {
    let (results, error) = Self.decode(vector)
    #expect(results == vector.results)
    #expect(error?.code == vector.connectionError, "\(error.map(String.init(describing:)) ?? "no error")")
    if let error { #expect(error.closesConnection) }
  }

  @Test(
    "every valid vector re-encodes to the same bytes (compressed ones to an equivalent frame)",
    arguments: try GoldenVector.all()
  )
  func reencodes(vector: GoldenVector) throws {
    let frames = vector.results.compactMap { result -> WireFrame? in
      if case .frame(let frame) = result { return frame }
      return nil
    }
    switch vector.reencode {
    case "exact":
      var out = ByteBuffer()
      for frame in frames { try FrameEncoder().encode(frame, into: &out) }
      #expect(Array(out.readableBytesView) == vector.bytes)
    case "roundtrip":
      var out = ByteBuffer()
      let encoder = FrameEncoder(compressor: Zlib.Compressor())
      for frame in frames { try encoder.encode(frame, into: &out) }
      var again = vector
      again.bytes = Array(out.readableBytesView)
      #expect(Self.decode(again).results == vector.results)
      #expect(out.readableBytes < vector.results.count * 1024, "compression did not shrink the frames")
    default:
      #expect(vector.reencode == "none")
    }
  }

  @Test("valid uncompressed vectors decode the same however the bytes are split")
  func splitAnywhere() throws {
    for vector in try GoldenVector.all() where vector.reencode == "exact" {
      let expected = vector.results.compactMap { result -> Result<WireFrame, WireError>? in
        if case .frame(let frame) = result { return .success(frame) }
        return nil
      }
      try ByteToMessageDecoderVerifier.verifyDecoder(
        inputOutputPairs: [(ByteBuffer(bytes: vector.bytes), expected)],
        decoderFactory: { FrameDecoder(role: vector.role, maxPayloadSize: vector.maxFrameSize) }
      )
    }
  }
}
