import Hummingbird
import NIOCore

/// What the HTTP door knows of a request besides the request itself: the peer's address, the
/// client id of a request that has none of its own; its channel, by which the door finds
/// whether the client is still there.
struct DoorContext: RequestContext {
  var coreContext: CoreRequestContextStorage
  let channel: any Channel
  let remoteAddress: SocketAddress?

  init(source: ApplicationRequestContextSource) {
    self.coreContext = .init(source: source)
    self.channel = source.channel
    self.remoteAddress = source.channel.remoteAddress
  }
}
