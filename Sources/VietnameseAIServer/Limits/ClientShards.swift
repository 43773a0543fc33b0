@_spi(Locking) import VietnameseAIConcurrency

/// Per-client state split over 16 shards by the client id's hash, each behind its own lock,
/// so that decisions for different clients seldom wait for each other.
final class ClientShards<State>: Sendable {
  final class Shard: Sendable {
    let state: Locked<State>
    // Keeps neighbouring shards' locks off one cache line.
    private let padding = CacheLinePadding()

    init(_ state: consuming sending State) {
      self.state = Locked(state)
    }

    func withLock<R>(_ body: (inout sending State) -> sending R) -> R {
      state.withLock(body)
    }
  }

  let all: [Shard]

  init(_ make: () -> sending State) {
    all = (0..<16).map { _ in Shard(make()) }
  }

  func shard(of client: String) -> Shard {
    all[Int(UInt(bitPattern: client.hashValue) % UInt(all.count))]
  }
}
