import NIOCore
import NIOPosix
import TestSupport
import Testing
@_spi(Locking) import VietnameseAIConcurrency
import VietnameseAIWire

/// A TCP connection that sends exactly the bytes a test gives it and decodes what the server
/// answers, for tests of hostile and malformed input that the client SDK would never send.
final class RawConnection: Sendable {
  /// What the server sent, shared by the connection and its channel handler.
  private final class Inbox: Sendable {
    struct State {
      /// Bytes not yet decoded: the end of a frame still to come.
      var bytes = ByteBuffer()
      /// Every frame decoded so far; each byte is decoded once however often tests look.
      var frames: [WireFrame] = []
      var closed = false
    }
    let state = Locked(State())

    @discardableResult
    func withLock<T>(_ body: (inout State) -> T) -> T { state.withLock { body(&$0) } }
  }

  private let channel: any Channel
  private let inbox: Inbox

  private init(channel: any Channel, inbox: Inbox) {
    self.channel = channel
    self.inbox = inbox
  }

  /// Collects every byte the server sends and notes when it closes.
  private final class Collector: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let inbox: Inbox

    init(inbox: Inbox) { self.inbox = inbox }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      var bytes = unwrapInboundIn(data)
      inbox.withLock { $0.bytes.writeBuffer(&bytes) }
    }

    func channelInactive(context: ChannelHandlerContext) {
      inbox.withLock { $0.closed = true }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
      if case .inputClosed = event as? ChannelEvent { inbox.withLock { $0.closed = true } }
      context.fireUserInboundEventTriggered(event)
    }
  }

  /// - Parameter reading: Whether the connection reads what arrives; a connection that does
  ///   not read leaves the server's answers in the kernel's buffers, as a stalled client does,
  ///   until ``startReading()``.
  static func connect(port: Int, reading: Bool = true) async throws -> RawConnection {
    let inbox = Inbox()
    let collector = Collector(inbox: inbox)
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .channelOption(.autoRead, value: reading)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
      }
      .connect(host: "127.0.0.1", port: port)
      .get()
    return RawConnection(channel: channel, inbox: inbox)
  }

  /// Connects and completes the handshake.
  static func connected(port: Int, compression: Bool = false, maxFrameSize: UInt32? = nil) async throws
    -> RawConnection
  {
    let connection = try await connect(port: port)
    try await connection.handshake(compression: compression, maxFrameSize: maxFrameSize)
    return connection
  }

  /// Sends `HELLO` and waits for `WELCOME`; on a connection that does not read, reads just
  /// enough for it.
  func handshake(compression: Bool = false, maxFrameSize: UInt32? = nil) async throws {
    let connection = self
    try await connection.send(Self.hello(compression: compression, maxFrameSize: maxFrameSize))
    if try await !channel.getOption(.autoRead).get() { channel.read() }
    let welcome = try await connection.frames(count: 1)
    guard case .welcome = welcome.first?.message else { throw VectorError("no WELCOME: \(welcome)") }
  }

  /// A `HELLO` as the client SDK sends it.
  static func hello(compression: Bool = false, maxFrameSize: UInt32? = nil) -> WireFrame {
    let hello = WireMessage.Hello(
      versions: [WireProtocol.version],
      clientID: "raw",
      authToken: "",
      compressions: compression ? [WireProtocol.compressionZlib] : [WireProtocol.compressionIdentity],
      maxFrameSize: maxFrameSize
    )
    return WireFrame(requestID: 0, message: .hello(hello))
  }

  /// Starts reading everything that arrives, on a connection made with `reading: false`.
  func startReading() async throws {
    try await channel.setOption(.autoRead, value: true).get()
  }

  func send(_ bytes: [UInt8]) async throws {
    try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
  }

  func send(_ frame: WireFrame) async throws {
    var bytes = ByteBuffer()
    try FrameEncoder().encode(frame, into: &bytes)
    try await channel.writeAndFlush(bytes)
  }

  /// Ends the sending side; the server sees end-of-file.
  func finishSending() async throws {
    try await channel.close(mode: .output)
  }

  func close() async {
    try? await channel.close()
  }

  var isClosed: Bool { inbox.withLock { $0.closed } }

  /// Every complete frame received so far, decoded as a client decodes them.
  func receivedFrames() throws -> [WireFrame] {
    // The decoder keeps nothing between frames but its settings, so a new one per look is
    // the same decoder.
    var decoder = FrameDecoder(role: .client, decompressor: Zlib.Decompressor())
    return try inbox.withLock { state -> Result<[WireFrame], any Error> in
      do {
        while let next = try decoder.decodeFrame(&state.bytes) {
          state.frames.append(try next.get())
        }
        state.bytes.discardReadBytes()
        return .success(state.frames)
      } catch {
        return .failure(error)
      }
    }.get()
  }

  /// Waits until at least `count` frames have arrived (or the server closed), then returns
  /// every frame received.
  func frames(count: Int, timeout: Duration = .seconds(60)) async throws -> [WireFrame] {
    try await eventually("\(count) frames from the server", timeout: timeout) {
      ((try? receivedFrames().count) ?? 0) >= count || isClosed
    }
    return try receivedFrames()
  }

  /// Waits until the server has closed the connection.
  func waitUntilClosed(timeout: Duration = .seconds(60)) async throws {
    try await eventually("the server closes the connection", timeout: timeout) { isClosed }
  }

  /// Proves the connection still serves: a `PING` gets its `PONG`.
  func expectAlive(sourceLocation: SourceLocation = #_sourceLocation) async throws {
    let value = UInt64.random(in: 1 ... .max)
    try await send(WireFrame(requestID: 0, message: .ping(value)))
    try await eventually("PONG \(value)") {
      (try? receivedFrames())?.contains { $0.message == .pong(value) } ?? false
    }
  }
}
