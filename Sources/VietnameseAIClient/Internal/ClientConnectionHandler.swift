import NIOCore
import VietnameseAIWire

/// The client's end of a connection, on its event loop: it sends the frames calls hand it,
/// coalescing them into one write per event-loop tick, and routes every frame the server sends
/// to its call in the ``CallTable``.
///
/// Tokens take a shorter way: the handler knows the buffer of every stream it opened, and
/// hands each run of one stream's tokens within a read to that buffer in one step, without
/// going through the table's lock. The table still decides how each stream ends.
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
  /// The buffers of the streams this connection opened, until their terminal frame.
  private var streams: [UInt32: TokenBuffer] = [:]
  /// Consecutive tokens of one stream from the current read, not yet handed over.
  private var run: (id: UInt32, buffer: TokenBuffer)?
  private var runTokens: [String] = []
  /// The requests queued since the last flush: if the connection goes before it, they never
  /// left this client.
  private var unflushed: [UInt32] = []

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

  func handlerRemoved(context: ChannelHandlerContext) {
    // Both point back at the handler: let them go, or a closed connection would be kept alive.
    self.context = nil
    self.bound = nil
  }

  // MARK: Inbound

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    writer.beginReadBurst()
    reader.append(unwrapInboundIn(data))
    do {
      while let next = try reader.next() {
        switch next {
        case .token(let id, let token):
          if run?.id != id {
            flushRun()
            guard let buffer = streams[id] else { continue }
            run = (id, buffer)
          }
          runTokens.append(token)
        case .frame(let frame):
          flushRun()
          handle(frame)
        case .refused(let error):
          flushRun()
          let id = error.requestID ?? 0
          forgetStream(id)
          calls.complete(id, with: .failure(RPCError(error)))
        }
      }
      flushRun()
    } catch {
      flushRun()
      fail(RPCError(error))
    }
  }

  /// Hands the current run of tokens to its stream.
  private func flushRun() {
    guard let run else { return }
    run.buffer.append(contentsOf: runTokens)
    runTokens.removeAll(keepingCapacity: true)
    self.run = nil
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    if let bytes = writer.endReadBurst() {
      unflushed.removeAll(keepingCapacity: true)
      context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
    }
    context.fireChannelReadComplete()
  }

  func channelInactive(context: ChannelHandlerContext) {
    let error = RPCError.unavailable("the connection to the server closed")
    welcome?.fail(error)
    welcome = nil
    streams.removeAll()
    failUnflushed(with: error)
    calls.closeAll(with: error)
    context.fireChannelInactive()
  }

  /// Ends the calls whose requests never left, as never sent.
  private func failUnflushed(with error: RPCError) {
    for id in unflushed { calls.complete(id, with: .failure(error.unsent)) }
    unflushed.removeAll()
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
      // Only a compressed token comes this way.
      streams[id]?.append(contentsOf: [token])
    case .result, .batchResult, .streamEnd, .stats:
      forgetStream(id)
      calls.complete(id, with: .success(frame.message))
    case .error(let info) where id == 0:
      fail(RPCError(info))
    case .error(let info):
      forgetStream(id)
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

  /// Drops the buffer of stream `id`, if `id` is a stream. Every answer ends its call, and
  /// most are not streams: with none open, that costs no hashing.
  private func forgetStream(_ id: UInt32) {
    if !streams.isEmpty { streams.removeValue(forKey: id) }
  }

  /// A connection error: every call fails with it and the connection closes.
  private func fail(_ error: RPCError) {
    welcome?.fail(error)
    welcome = nil
    failUnflushed(with: error)
    calls.closeAll(with: error)
    context?.close(promise: nil)
  }

  // MARK: Outbound

  /// Sends a stream's `STREAM_OPEN`; its tokens will go to `buffer`.
  func openStream(_ frame: WireFrame, into buffer: TokenBuffer) {
    streams[frame.requestID] = buffer
    send(frame)
  }

  /// Queues a frame; it leaves with the others of this event-loop tick.
  func send(_ frame: WireFrame) {
    do {
      try writer.append(frame)
    } catch {
      forgetStream(frame.requestID)
      calls.complete(frame.requestID, with: .failure(RPCError(error)))
      return
    }
    if frame.message.isRequest { unflushed.append(frame.requestID) }
    guard writer.claimFlush(), let bound, let loop = context?.eventLoop else { return }
    loop.execute { bound.value.flush() }
  }

  private func flush() {
    guard let context, let bytes = writer.takeForFlush() else { return }
    unflushed.removeAll(keepingCapacity: true)
    context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
  }
}

@available(*, unavailable)
extension ClientConnectionHandler: Sendable {}

extension WireMessage {
  /// Whether the message is a request, answered by its own terminal frame.
  fileprivate var isRequest: Bool {
    switch self {
    case .predict, .batchPredict, .streamOpen, .statsRequest: true
    default: false
    }
  }
}
