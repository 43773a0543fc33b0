import NIOCore
import PeerBenchSupport
import Synchronization

/// Drives one connection of the load from its event loop: keeps `concurrency` calls in
/// flight, starts the next one as each answer arrives, and flushes once per read burst. No
/// Swift task and no thread hop per call, so this is the fastest client NIO allows.
final class EchoLoadHandler: ChannelInboundHandler {
  typealias InboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  /// Shared by all connections: how many calls may still start, and when to stop.
  final class Budget: Sendable {
    let remaining: Atomic<Int>
    let end: NIODeadline
    init(count: Int?, end: NIODeadline) {
      self.remaining = Atomic(count ?? .max)
      self.end = end
    }
    func take() -> Bool {
      NIODeadline.now() < end && remaining.subtract(1, ordering: .relaxed).oldValue > 0
    }
  }

  private let options: LoadOptions
  private let budget: Budget
  private let done: EventLoopPromise<LoadTally>
  private var tally = LoadTally()
  private var started: [UInt64: NIODeadline] = [:]
  private var nextID: UInt64 = 1
  private var pending = ByteBuffer()
  private var output = ByteBuffer()
  private let payload: ByteBuffer

  init(options: LoadOptions, budget: Budget, done: EventLoopPromise<LoadTally>) {
    self.options = options
    self.budget = budget
    self.done = done
    if options.mode == .stream {
      var request = ByteBuffer()
      request.writeInteger(UInt32(options.tokens))
      self.payload = request
    } else {
      self.payload = ByteBuffer(repeating: UInt8(ascii: "a"), count: options.payloadSize)
    }
  }

  func channelActive(context: ChannelHandlerContext) {
    for _ in 0..<options.concurrency { startCall() }
    flush(context: context)
    finishIfIdle()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    var incoming = unwrapInboundIn(data)
    pending.writeBuffer(&incoming)
    while let (id, kind, _) = EchoFrame.read(from: &pending) {
      if kind == EchoFrame.token {
        tally.tokens += 1
        continue
      }
      guard let began = started.removeValue(forKey: id) else { continue }
      tally.recordSuccess(nanoseconds: (NIODeadline.now() - began).nanoseconds)
      startCall()
    }
    pending.discardReadBytes()
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    flush(context: context)
    finishIfIdle()
  }

  func channelInactive(context: ChannelHandlerContext) {
    tally.errors["connection closed", default: 0] += started.count
    started.removeAll()
    done.succeed(tally)
  }

  private func startCall() {
    guard budget.take() else { return }
    let id = nextID
    nextID += 1
    started[id] = NIODeadline.now()
    let kind = options.mode == .stream ? EchoFrame.streamRequest : EchoFrame.echo
    EchoFrame.write(id: id, kind: kind, payload: payload.readableBytesView, into: &output)
  }

  private func flush(context: ChannelHandlerContext) {
    guard output.readableBytes > 0 else { return }
    context.writeAndFlush(wrapOutboundOut(output), promise: nil)
    output = context.channel.allocator.buffer(capacity: 1024)
  }

  private func finishIfIdle() {
    if started.isEmpty { done.succeed(tally) }
  }
}
