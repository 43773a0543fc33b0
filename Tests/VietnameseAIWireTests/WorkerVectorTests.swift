import NIOCore
import TestSupport
import Testing
import VietnameseAIWire

@Suite("Worker protocol vectors")
struct WorkerVectorTests {
  /// Decodes `bytes` as a connection would: frame after frame until one is missing or an error.
  static func decode(_ vector: WorkerVector, splitAt split: Int? = nil) -> (
    frames: [WorkerFrame], error: WireError?
  ) {
    let codec = WorkerFrameCodec(role: vector.role, maxPayloadSize: vector.maxFrameSize)
    var buffer = ByteBuffer()
    var frames: [WorkerFrame] = []
    let pieces = split.map { [Array(vector.bytes[..<$0]), Array(vector.bytes[$0...])] } ?? [vector.bytes]
    do {
      for piece in pieces {
        buffer.writeBytes(piece)
        while let frame = try codec.decode(&buffer) { frames.append(frame) }
      }
      return (frames, nil)
    } catch {
      return (frames, error)
    }
  }

  @Test(
    "every vector decodes to what it describes, or fails with its documented error",
    arguments: try WorkerVector.all()
  )
  func decodes(vector: WorkerVector) {
    let (frames, error) = Self.decode(vector)
    #expect(frames == vector.results)
    #expect(error?.code == vector.connectionError, "\(error.map(String.init(describing:)) ?? "no error")")
    if let error { #expect(error.closesConnection) }
  }

  @Test("every valid vector re-encodes to the same bytes", arguments: try WorkerVector.all())
  func reencodes(vector: WorkerVector) throws {
    guard vector.reencode == "exact" else { return }
    var out = ByteBuffer()
    for frame in vector.results { try WorkerFrameCodec.encode(frame, into: &out) }
    #expect(Array(out.readableBytesView) == vector.bytes)
  }

  @Test("valid vectors decode the same however the bytes are split")
  func splitAnywhere() throws {
    for vector in try WorkerVector.all() where vector.reencode == "exact" {
      for split in 0...vector.bytes.count {
        #expect(
          Self.decode(vector, splitAt: split).frames == vector.results,
          "\(vector.name) split at \(split)"
        )
      }
    }
  }
}
