import Hummingbird
import NIOCore

/// What the HTTP door knows of a request besides the request itself: the peer's address, the
/// client id of a request that has none of its own.
struct DoorContext: RequestContext {
  var coreContext: CoreRequestContextStorage
  let remoteAddress: SocketAddress?

  init(source: ApplicationRequestContextSource) {
    self.coreContext = .init(source: source)
    self.remoteAddress = source.channel.remoteAddress
  }
}
