import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Counts the HTTP door's connections and turns away those above the limit: the first request
/// of such a connection is answered 503 with `Connection: close`, and the connection closed.
///
/// Answering with a status rather than refusing the TCP connection tells a client why, and
/// when to come back (`Retry-After`). The gate also answers `Expect: 100-continue`, and tells
/// the connection's ``ClientPresence`` when the client leaves, so that its queued work is
/// withdrawn.
final class HTTPConnectionGate: ChannelDuplexHandler, RemovableChannelHandler {
  typealias InboundIn = HTTPRequestPart
  typealias InboundOut = HTTPRequestPart
  typealias OutboundIn = HTTPResponsePart
  typealias OutboundOut = HTTPResponsePart

  private let connections: HTTPConnections
  private var counted: (any Channel)?
  private var phase = Phase.serving

  private enum Phase {
    case serving
    /// Over the limit: the first request gets the refusal.
    case refusing
    /// Refused: everything else is dropped until the connection closes.
    case refused
  }

  init(connections: HTTPConnections) {
    self.connections = connections
  }

  func handlerAdded(context: ChannelHandlerContext) {
    if context.channel.isActive { count(context.channel) }
  }

  func channelActive(context: ChannelHandlerContext) {
    count(context.channel)
    context.fireChannelActive()
  }

  private func count(_ channel: any Channel) {
    guard counted == nil else { return }
    counted = channel
    if !connections.opened(channel) { phase = .refusing }
  }

  func channelInactive(context: ChannelHandlerContext) {
    uncount()
    context.fireChannelInactive()
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    uncount()
  }

  /// Remote half-closure is on, so a client that closes its socket shows first as a closed
  /// input, not as an inactive channel.
  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if case ChannelEvent.inputClosed = event {
      connections.presence(of: context.channel)?.left()
    }
    context.fireUserInboundEventTriggered(event)
  }

  private func uncount() {
    guard let channel = counted else { return }
    counted = nil
    connections.closed(channel)
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch phase {
    case .serving:
      if case .head(var head) = unwrapInboundIn(data),
        head.headerFields[.expect]?.lowercased() == "100-continue"
      {
        // Hummingbird reads a body only when asked; curl waits a second for this before it
        // sends a body above 1 MiB.
        head.headerFields[.expect] = nil
        context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
        context.fireChannelRead(wrapInboundOut(.head(head)))
        return
      }
      context.fireChannelRead(data)
      return
    case .refused:
      return
    case .refusing:
      guard case .head = unwrapInboundIn(data) else { return }
      phase = .refused
    }
    let body =
      "{\"error\":{\"message\":\"too many connections: the server holds \(connections.limit) at once\",\"type\":\"service_unavailable_error\",\"param\":null,\"code\":\"UNAVAILABLE\"}}"
    let bytes = context.channel.allocator.buffer(string: body)
    var head = HTTPResponse(status: .serviceUnavailable)
    head.headerFields[.contentType] = "application/json"
    head.headerFields[.contentLength] = "\(bytes.readableBytes)"
    head.headerFields[.connection] = "close"
    head.headerFields[.retryAfter] = "1"
    context.write(wrapOutboundOut(.head(head)), promise: nil)
    context.write(wrapOutboundOut(.body(bytes)), promise: nil)
    let channel = context.channel
    context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
      channel.close(promise: nil)
    }
  }
}
