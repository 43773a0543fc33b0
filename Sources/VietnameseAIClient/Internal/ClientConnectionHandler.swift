import NIOCore
import VietnameseAIWire

/// The client's end of a connection, on its event loop: it sends the frames calls hand it,
/// coalescing them into one write per event-loop tick, and routes every frame the server sends
/// to its call in the ``CallTable``.
final class ClientConnectionHandler: ChannelInboundHandler {
  typealias InboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  private let calls: CallTable
  private var reader: FrameReader
  private var writer: FrameWriter
  private let compressionThreshold: Int
  private var welcome: EventLoopPromise<WireMessage.Welcome>?
  private var context: ChannelHandlerContext?
  private var bound: NIOLoopBound<ClientConnectionHandler>?

  init(
    calls: CallTable,
    maxFrameSize: Int,
    compressionThreshold: Int,
    welcome: EventLoopPromise<WireMessage.Welcome>
  ) {
    self.calls = calls
    self.reader = FrameReader(decoder: FrameDecoder(role: .client, maxPayloadSize: maxFrameSize))
    self.writer = FrameWriter()
    self.compressionThreshold = compressionThreshold
    self.welcome = welcome
  }

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
    self.bound = NIOLoopBound(self, eventLoop: context.eventLoop)
  }

  // MARK: Inbound

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    writer.beginReadBurst()
    reader.append(unwrapInboundIn(data))
    do {
      while let next = try reader.next() {
        switch next {
        case .success(let frame):
          handle(frame)
        case .failure(let error):
          calls.complete(error.requestID ?? 0, with: .failure(RPCError(error)))
        }
      }
    } catch {
      fail(RPCError(error))
    }
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    if let bytes = writer.endReadBurst() { context.writeAndFlush(wrapOutboundOut(bytes), promise: nil) }
    context.fireChannelReadComplete()
  }

  func channelInactive(context: ChannelHandlerContext) {
    let error = RPCError.unavailable("the connection to the server closed")
    welcome?.fail(error)
    welcome = nil
    calls.closeAll(with: error)
    context.fireChannelInactive()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    fail(.unavailable("connection error: \(error)"))
  }

  private func handle(_ frame: WireFrame) {
    let id = frame.requestID
    switch frame.message {
    case .welcome(let welcome):
      if welcome.compression == WireProtocol.compressionZlib {
        writer.encoder.compressor = Zlib.Compressor()
        writer.encoder.compressionThreshold = compressionThreshold
        reader.decoder.decompressor = Zlib.Decompressor()
      }
      writer.maxPayloadSize = Int(welcome.maxFrameSize)
      calls.setLimit(Int(welcome.maxConcurrentRequests))
      self.welcome?.succeed(welcome)
      self.welcome = nil
    case .token(let token):
      calls.token(token, for: id)
    case .result, .batchResult, .streamEnd, .stats:
      calls.complete(id, with: .success(frame.message))
    case .error(let info) where id == 0:
      fail(RPCError(info))
    case .error(let info):
      calls.complete(id, with: .failure(RPCError(info)))
    case .goAway:
      calls.goAway()
    case .ping(let value):
      send(WireFrame(requestID: 0, message: .pong(value)))
    case .pong(let value):
      calls.pong(value)
    case .hello, .predict, .batchPredict, .streamOpen, .cancel, .statsRequest:
      // The decoder refuses client-to-server types from a server.
      fail(RPCError(code: .protocolError, message: "the server sent \(frame.message.type.name)"))
    }
  }

  /// A connection error: every call fails with it and the connection closes.
  private func fail(_ error: RPCError) {
    welcome?.fail(error)
    welcome = nil
    calls.closeAll(with: error)
    context?.close(promise: nil)
  }

  // MARK: Outbound

  /// Queues a frame; it leaves with the others of this event-loop tick.
  func send(_ frame: WireFrame) {
    do {
      try writer.append(frame)
    } catch {
      calls.complete(frame.requestID, with: .failure(RPCError(error)))
      return
    }
    guard writer.claimFlush(), let bound, let loop = context?.eventLoop else { return }
    loop.execute { bound.value.flush() }
  }

  private func flush() {
    guard let context, let bytes = writer.takeForFlush() else { return }
    context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
  }
}

@available(*, unavailable)
extension ClientConnectionHandler: Sendable {}
