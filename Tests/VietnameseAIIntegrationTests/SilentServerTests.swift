import NIOCore
import NIOPosix
import Testing
import VietnameseAIClient
import VietnameseAIWire

/// A peer that completes the handshake and then never answers: the client's own deadline is
/// the only thing that ends a call.
@Suite("Client deadlines against a silent server")
struct SilentServerTests {
  /// Answers the first bytes it reads with WELCOME and ignores everything after.
  final class WelcomeThenSilence: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private var welcomed = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      guard !welcomed else { return }
      welcomed = true
      let welcome = WireMessage.Welcome(
        version: WireProtocol.version,
        compression: WireProtocol.compressionIdentity,
        maxFrameSize: 1 << 20,
        maxConcurrentRequests: 64,
        clientID: "silent"
      )
      var out = context.channel.allocator.buffer(capacity: 64)
      try? FrameEncoder().encode(WireFrame(requestID: 0, message: .welcome(welcome)), into: &out)
      context.writeAndFlush(wrapOutboundOut(out), promise: nil)
    }
  }

  @Test(
    "a call the server never answers fails DEADLINE_EXCEEDED soon after deadline + grace",
    .timeLimit(.minutes(3))
  )
  func givesUpLocally() async throws {
    let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(WelcomeThenSilence())
        }
      }
      .bind(host: "127.0.0.1", port: 0)
      .get()
    defer { server.close(promise: nil) }
    let client = try await RPCClient.connect(port: server.localAddress!.port!)
    let clock = ContinuousClock()
    let start = clock.now
    async let unary = expectRPCError(.deadlineExceeded) {
      try await client.predict(model: "echo", input: "x", deadline: .milliseconds(50))
    }
    async let streamed = expectRPCError(.deadlineExceeded) {
      for try await _ in client.stream(prompt: "x", deadline: .milliseconds(50)) {}
    }
    _ = await (unary, streamed)
    // Deadline 50 ms + grace 1 s, found by a sweep every 100 ms; a generous upper bound so
    // that a busy machine does not fail the test.
    let elapsed = clock.now - start
    #expect(elapsed >= .seconds(1))
    #expect(elapsed < .seconds(30))
    await client.close()
  }
}
