import NIOCore
import Synchronization
@_spi(Locking) import VietnameseAIConcurrency

/// The HTTP door's open connections, against `--max-connections`, and the presence of each
/// one's client, which the door's handlers find by channel.
final class HTTPConnections: Sendable {
  let limit: Int
  private let open = Atomic<Int>(0)
  private let presences = Locked<[ObjectIdentifier: ClientPresence]>([:])

  init(limit: Int) {
    self.limit = limit
  }

  var count: Int { open.load(ordering: .relaxed) }

  /// Counts a new connection; `false` if it is one too many (it still counts until it
  /// closes).
  func opened(_ channel: any Channel) -> Bool {
    let presence = ClientPresence()
    presences.withLock { $0[ObjectIdentifier(channel)] = presence }
    return open.wrappingAdd(1, ordering: .relaxed).newValue <= limit
  }

  func closed(_ channel: any Channel) {
    let presence = presences.withLock { $0.removeValue(forKey: ObjectIdentifier(channel)) }
    presence?.left()
    open.subtract(1, ordering: .relaxed)
  }

  /// The presence of the client on `channel`, while the channel is open.
  func presence(of channel: any Channel) -> ClientPresence? {
    presences.withLock { $0[ObjectIdentifier(channel)] }
  }
}
