import DequeModule
import NIOCore

/// Matches a connection's replies to its commands, in order (Redis answers a pipeline in the
/// order it was sent). Confined to the connection's event loop.
///
/// A reply that cannot be decoded, a command past its timeout or the end of the connection
/// fails every command still waiting and closes the connection: after any of them, later
/// replies could not be matched to their commands.
final class RedisReplyHandler: ChannelInboundHandler {
  typealias InboundIn = ByteBuffer

  private var decoder: RESPDecoder
  private var received: ByteBuffer?
  private var waiting: Deque<EventLoopPromise<RESPValue>> = []
  private var context: ChannelHandlerContext?
  private var failure: RedisError?

  init(decoder: RESPDecoder) {
    self.decoder = decoder
  }

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.context = nil
  }

  /// Writes the commands, already encoded in `bytes`, and waits for one reply per promise.
  func send(_ bytes: ByteBuffer, promises: [EventLoopPromise<RESPValue>], timeout: Duration) {
    guard let context, failure == nil else {
      let error = failure ?? RedisError(.connectionClosed, "the connection to Redis is closed")
      for promise in promises { promise.fail(error) }
      return
    }
    waiting.append(contentsOf: promises)
    context.writeAndFlush(NIOAny(bytes), promise: nil)
    guard let last = promises.last else { return }
    let timer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) { [self] in
      fail(RedisError(.timedOut, "no reply from Redis within \(timeout)"))
    }
    last.futureResult.whenComplete { _ in timer.cancel() }
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    var bytes = unwrapInboundIn(data)
    if received == nil || received!.readableBytes == 0 {
      received = bytes
    } else {
      received!.writeBuffer(&bytes)
    }
    do {
      while let value = try decoder.decode(&received!) {
        guard let promise = waiting.popFirst() else {
          throw RedisError(.protocolError, "a reply to no command")
        }
        promise.succeed(value)
      }
      if received!.readableBytes == 0 {
        received = nil
      } else {
        received!.discardReadBytes()
      }
    } catch let error as RedisError {
      fail(error)
    } catch {
      fail(RedisError(.protocolError, "\(error)"))
    }
  }

  func channelInactive(context: ChannelHandlerContext) {
    fail(RedisError(.connectionClosed, "the connection to Redis closed"))
    context.fireChannelInactive()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    fail(RedisError(.connectionClosed, "the connection to Redis failed: \(error)"))
  }

  private func fail(_ error: RedisError) {
    if failure == nil { failure = error }
    let pending = waiting
    waiting.removeAll()
    for promise in pending { promise.fail(error) }
    context?.close(promise: nil)
  }
}
