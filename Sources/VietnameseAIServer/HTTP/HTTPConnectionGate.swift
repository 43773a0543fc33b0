import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Counts the HTTP door's connections and turns away those above the limit: the first request
/// of such a connection is answered 503 with `Connection: close`, and the connection closed.
///
/// Answering with a status rather than refusing the TCP connection tells a client why, and
/// when to come back (`Retry-After`).
final class HTTPConnectionGate: ChannelDuplexHandler, RemovableChannelHandler {
  typealias InboundIn = HTTPRequestPart
  typealias InboundOut = HTTPRequestPart
  typealias OutboundIn = HTTPResponsePart
  typealias OutboundOut = HTTPResponsePart

  private let connections: HTTPConnections
  private var counted = false
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
    if context.channel.isActive { count() }
  }

  func channelActive(context: ChannelHandlerContext) {
    count()
    context.fireChannelActive()
  }

  private func count() {
    guard !counted else { return }
    counted = true
    if !connections.opened() { phase = .refusing }
  }

  func channelInactive(context: ChannelHandlerContext) {
    uncount()
    context.fireChannelInactive()
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    uncount()
  }

  private func uncount() {
    guard counted else { return }
    counted = false
    connections.closed()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch phase {
    case .serving:
      context.fireChannelRead(data)
      return
    case .refused:
      return
    case .refusing:
      guard case .head = unwrapInboundIn(data) else { return }
      phase = .refused
    }
    let body =
      "{\"error\":{\"message\":\"too many connections: the server holds \(connections.limit) at once\",\"type\":\"service_unavailable_error\",\"param\":null,\"code\":\"RESOURCE_EXHAUSTED\"}}"
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
