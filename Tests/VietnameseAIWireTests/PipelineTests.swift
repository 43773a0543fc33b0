import NIOCore
import NIOEmbedded
import Testing
import VietnameseAIWire

@Suite("Codec in a channel pipeline")
struct PipelineTests {
  private static func channel(role: FrameDecoder.Role) throws -> EmbeddedChannel {
    let channel = EmbeddedChannel()
    try channel.pipeline.syncOperations.addHandlers([
      ByteToMessageHandler(FrameDecoder(role: role)),
      MessageToByteHandler(FrameEncoder()),
    ])
    return channel
  }

  @Test("frames written out come back in as the same frames")
  func outAndIn() throws {
    let client = try Self.channel(role: .client)
    let server = try Self.channel(role: .server)
    let request = WireFrame(
      requestID: 1,
      message: .predict(.init(model: "echo", input: ByteBuffer(string: "xin chào")))
    )
    try client.writeOutbound(request)
    while let bytes = try client.readOutbound(as: ByteBuffer.self) { try server.writeInbound(bytes) }
    #expect(try server.readInbound(as: Result<WireFrame, WireError>.self) == .success(request))
    _ = try client.finish()
    _ = try server.finish()
  }

  @Test("a request error is delivered in order and decoding goes on; a connection error stops it")
  func errorsInPipeline() throws {
    let server = try Self.channel(role: .server)
    var bytes = ByteBuffer()
    // PREDICT on request 11 whose model name is not UTF-8.
    bytes.writeInteger(UInt32(12))
    bytes.writeBytes([1, 0x02, 0])
    bytes.writeInteger(UInt32(11))
    bytes.writeInteger(UInt32(0))
    bytes.writeInteger(UInt16(2))
    bytes.writeBytes([0xC3, 0x28])
    bytes.writeInteger(UInt32(0))
    try FrameEncoder().encode(WireFrame(requestID: 12, message: .cancel), into: &bytes)
    try server.writeInbound(bytes)
    let first = try server.readInbound(as: Result<WireFrame, WireError>.self)
    #expect(first.map { (try? $0.get()) == nil } == true)
    if case .failure(let error)? = first {
      #expect(error.code == .invalidArgument)
      #expect(error.requestID == 11)
      #expect(!error.closesConnection)
    }
    #expect(
      try server.readInbound(as: Result<WireFrame, WireError>.self)
        == .success(WireFrame(requestID: 12, message: .cancel))
    )

    let garbage = ByteBuffer(string: "GET / HTTP/1.1\r\n")
    #expect(throws: WireError.self) { try server.writeInbound(garbage) }
    _ = try? server.finish()
  }
}
