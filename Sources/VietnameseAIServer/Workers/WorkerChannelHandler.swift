import Logging
import NIOCore
import VietnameseAIWire

/// The NIO handler of one worker connection: cuts frames, runs the handshake through
/// ``WorkerSupervisor``'s admission, hands answers to the ``WorkerLink``, and keeps the
/// heartbeat (`Protocol/PROTOCOL.md` §11.4).
final class WorkerChannelHandler: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = ByteBuffer
  typealias OutboundOut = ByteBuffer

  struct Settings {
    var handshakeTimeout: Duration
    var heartbeatInterval: Duration
    var heartbeatTimeout: Duration
    var maxFrameSize: Int
  }

  /// Decides on a `WORKER_HELLO`: the link to serve, or the refusal to send before closing.
  typealias Admission = @Sendable (WorkerMessage.Hello, any Channel) -> Result<WorkerLink, WireError>

  private let settings: Settings
  private let admit: Admission
  /// Tells the supervisor that the link is gone (and, for a hung worker, that its process
  /// must be killed).
  private let onClose: @Sendable (WorkerLink, _ hung: Bool) -> Void
  private let logger: Logger
  private var codec: WorkerFrameCodec
  /// Bytes read and not yet framed.
  private var buffered = ByteBuffer()
  private var link: WorkerLink?
  private var timer: Scheduled<Void>?
  private var lastPong = NIODeadline.now()
  private var pings: UInt64 = 0
  private var hung = false

  init(
    settings: Settings,
    admit: @escaping Admission,
    onClose: @escaping @Sendable (WorkerLink, Bool) -> Void,
    logger: Logger
  ) {
    self.settings = settings
    self.admit = admit
    self.onClose = onClose
    self.logger = logger
    self.codec = WorkerFrameCodec(role: .server, maxPayloadSize: WireProtocol.maxHelloSize)
  }

  func handlerAdded(context: ChannelHandlerContext) {
    let timeout = settings.handshakeTimeout
    timer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(timeout)) { [self] in
      guard link == nil else { return }
      refuse(context: context, .protocolError, "no WORKER_HELLO within \(timeout)")
    }
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    var bytes = unwrapInboundIn(data)
    if buffered.readableBytes == 0 {
      buffered = bytes
    } else {
      buffered.writeBuffer(&bytes)
    }
    do {
      while let frame = try codec.decode(&buffered) {
        handle(frame, context: context)
        if !context.channel.isActive { return }
      }
      // As FrameReader does: let go of a consumed read, and drop consumed bytes before a
      // partial frame instead of letting them pile up.
      if buffered.readableBytes == 0 {
        buffered = ByteBuffer()
      } else if buffered.readerIndex >= 64 * 1024 {
        buffered.discardReadBytes()
      }
    } catch {
      buffered = ByteBuffer()
      logger.warning(
        "worker broke the protocol",
        metadata: ["worker": "\(link?.workerName ?? "?")", "error": "\(error.message)"]
      )
      refuse(context: context, error.code, error.message)
    }
  }

  private func handle(_ frame: WorkerFrame, context: ChannelHandlerContext) {
    guard let link else {
      guard case .hello(let hello) = frame.message else {
        refuse(context: context, .protocolError, "the first frame must be WORKER_HELLO")
        return
      }
      switch admit(hello, context.channel) {
      case .success(let admitted):
        self.link = admitted
        codec.maxPayloadSize = settings.maxFrameSize
        send(
          WorkerFrame(
            requestID: 0,
            message: .welcome(
              .init(
                version: 1,
                maxFrameSize: UInt32(settings.maxFrameSize),
                heartbeatIntervalMilliseconds: WireProtocol.milliseconds(
                  roundingUp: settings.heartbeatInterval
                ),
                heartbeatTimeoutMilliseconds: WireProtocol.milliseconds(roundingUp: settings.heartbeatTimeout)
              )
            )
          ),
          context: context
        )
        timer?.cancel()
        lastPong = .now()
        scheduleHeartbeat(context: context)
      case .failure(let refusal):
        refuse(context: context, refusal.code, refusal.message)
      }
      return
    }
    switch frame.message {
    case .batchDone(let outputs):
      if !link.finish(frame.requestID, .success(outputs)) { unknownWork(frame, context: context) }
    case .error(let info) where frame.requestID != 0:
      let error = ServingError(ServingError.Code(info.code), info.message)
      if !link.fail(frame.requestID, error) { unknownWork(frame, context: context) }
    case .error(let info):
      logger.warning(
        "worker closed its connection",
        metadata: ["worker": "\(link.workerName)", "error": "\(info.message)"]
      )
      context.close(promise: nil)
    case .pong:
      lastPong = .now()
    case .ping(let value):
      send(WorkerFrame(requestID: 0, message: .pong(value)), context: context)
    case .hello:
      refuse(context: context, .protocolError, "WORKER_HELLO after the handshake")
    case .tokens(let texts):
      if !link.tokens(frame.requestID, texts) {
        refuse(
          context: context,
          .protocolError,
          "TOKENS for work \(frame.requestID) beyond its credit, or not in flight"
        )
      }
    case .generateDone:
      if !link.end(frame.requestID, .success(())) { unknownWork(frame, context: context) }
    case .welcome, .runBatch, .generate, .cancelWork, .credit, .shutdown:
      // The codec refuses these from a worker before they get here.
      refuse(context: context, .protocolError, "\(frame.message.type.name) from a worker")
    }
  }

  private func unknownWork(_ frame: WorkerFrame, context: ChannelHandlerContext) {
    refuse(
      context: context,
      .protocolError,
      "\(frame.message.type.name) for work \(frame.requestID), which is not in flight"
    )
  }

  private func scheduleHeartbeat(context: ChannelHandlerContext) {
    timer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(settings.heartbeatInterval)) {
      [self] in
      guard context.channel.isActive, let link else { return }
      if NIODeadline.now() - lastPong > TimeAmount(settings.heartbeatTimeout) {
        hung = true
        logger.error(
          "worker hung: no PONG within the heartbeat timeout",
          metadata: ["worker": "\(link.workerName)", "timeout": "\(settings.heartbeatTimeout)"]
        )
        context.close(promise: nil)
        return
      }
      pings &+= 1
      send(WorkerFrame(requestID: 0, message: .ping(pings)), context: context)
      scheduleHeartbeat(context: context)
    }
  }

  private func send(_ frame: WorkerFrame, context: ChannelHandlerContext) {
    var buffer = context.channel.allocator.buffer(capacity: 64)
    do {
      try WorkerFrameCodec.encode(frame, into: &buffer)
    } catch {
      return
    }
    context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
  }

  private func refuse(context: ChannelHandlerContext, _ code: StatusCode, _ message: String) {
    let info = WireMessage.ErrorInfo(
      code: code,
      message: String(decoding: message.utf8.prefix(1000), as: UTF8.self)
    )
    var buffer = context.channel.allocator.buffer(capacity: 64)
    try? WorkerFrameCodec.encode(WorkerFrame(requestID: 0, message: .error(info)), into: &buffer)
    let channel = context.channel
    context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in channel.close(promise: nil) }
  }

  func channelInactive(context: ChannelHandlerContext) {
    timer?.cancel()
    if let link {
      link.closed(reason: hung ? "it stopped answering the heartbeat" : "its connection closed")
      onClose(link, hung)
    }
    context.fireChannelInactive()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    context.close(promise: nil)
  }
}
