import NIOCore

/// Serves one connection: decodes every whole frame of a read, writes the answers into one
/// buffer, and flushes once per read burst. Streams are written 64 messages per loop turn so
/// that one stream cannot hold the loop, as a real token source would not.
final class EchoServerHandler: ChannelInboundHandler {
  typealias InboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  private var pending = ByteBuffer()
  private var output = ByteBuffer()
  private static let token: [UInt8] = Array("tok ".utf8)

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    var incoming = unwrapInboundIn(data)
    pending.writeBuffer(&incoming)
    while let (id, kind, payload) = EchoFrame.read(from: &pending) {
      switch kind {
      case EchoFrame.streamRequest:
        let count = Int(payload.getInteger(at: payload.readerIndex, as: UInt32.self) ?? 0)
        stream(id: id, remaining: count, context: context)
      default:
        EchoFrame.write(id: id, kind: EchoFrame.echo, payload: payload.readableBytesView, into: &output)
      }
    }
    pending.discardReadBytes()
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    flush(context: context)
  }

  private func flush(context: ChannelHandlerContext) {
    guard output.readableBytes > 0 else { return }
    context.writeAndFlush(wrapOutboundOut(output), promise: nil)
    output = context.channel.allocator.buffer(capacity: 1024)
  }

  private func stream(id: UInt64, remaining: Int, context: ChannelHandlerContext) {
    let chunk = min(remaining, 64)
    Self.token.withUnsafeBufferPointer { token in
      for _ in 0..<chunk {
        output.writeInteger(UInt32(13))
        output.writeInteger(id)
        output.writeInteger(EchoFrame.token)
        output.writeBytes(token)
      }
    }
    if remaining - chunk == 0 {
      EchoFrame.write(id: id, kind: EchoFrame.end, payload: nil, into: &output)
      return
    }
    let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
    context.eventLoop.execute {
      let (handler, context) = loopBound.value
      handler.stream(id: id, remaining: remaining - chunk, context: context)
      handler.flush(context: context)
    }
  }
}
