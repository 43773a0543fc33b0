@_spi(Locking) import VietnameseAIConcurrency

/// The sliding windows of all clients, split over 64 shards, each behind its own lock.
///
/// A window's log is an array that a decision may grow, so it cannot change by one
/// compare-and-swap the way a token bucket does; threads deciding for clients of different
/// shards still never meet.
final class SlidingWindowShards: ClientStore {
  static let shardCount = 64

  struct ShardState {
    // The counters come first, next to the lock word: a decision writes the lock and one
    // counter, and when two cores take turns on a shard, one cache line moves, not two.
    var allowed = 0
    var rejected = 0
    var windows = ClientTable(empty: SlidingWindowAllowance.placeholder)
  }

  final class Shard: Sendable {
    let state = Locked(ShardState())
    // Keeps neighbouring shards' locks off one cache line, so that two cores working on two
    // shards do not invalidate each other's line on every lock.
    private let padding = CacheLinePadding()
  }

  private let shards: [Shard] = (0..<shardCount).map { _ in Shard() }

  /// Runs `body` on the state of `key`'s shard, under the shard's lock.
  ///
  /// The shard is borrowed without a retain: the store holds every shard for its whole life.
  /// A retain and a release are two more atomic writes to the shard's first cache line, the one
  /// its lock is on.
  @inline(__always)
  private func withShard<R: Sendable>(for key: BoGioiHanTocDo.ClientKey, _ body: (inout ShardState) -> R) -> R
  {
    let index = Int(truncatingIfNeeded: UInt(bitPattern: key.hash) &>> 7) & (Self.shardCount - 1)
    return Unmanaged.passUnretained(shards[index])._withUnsafeGuaranteedRef { shard in
      shard.state.withLock { state in body(&state) }
    }
  }

  func update<R: Sendable>(
    _ key: BoGioiHanTocDo.ClientKey,
    new makeNew: () -> SlidingWindowAllowance,
    _ body: (inout SlidingWindowAllowance) -> (result: R, allowed: Int, rejected: Int)
  ) -> R {
    withShard(for: key) { shard in
      // One table lookup, which inserts a new client and mutates in place.
      let outcome = shard.windows.update(key: key.id, hash: key.hash, default: makeNew(), body)
      shard.allowed += outcome.allowed
      shard.rejected += outcome.rejected
      return outcome.result
    }
  }

  func peek<R: Sendable>(_ key: BoGioiHanTocDo.ClientKey, _ read: (SlidingWindowAllowance?) -> R) -> R {
    // Under the lock: the log is shared with the table.
    withShard(for: key) { shard in read(shard.windows.value(key: key.id, hash: key.hash)) }
  }

  func remove(_ key: BoGioiHanTocDo.ClientKey) {
    withShard(for: key) { shard in _ = shard.windows.remove(key: key.id, hash: key.hash) }
  }

  func removeAll(where shouldRemove: @Sendable (SlidingWindowAllowance) -> Bool) -> Int {
    shards.reduce(0) { removed, shard in
      removed + shard.state.withLock { $0.windows.removeAll(where: shouldRemove) }
    }
  }

  func statistics() -> (allowed: Int, rejected: Int, clients: Int) {
    var totals = (allowed: 0, rejected: 0, clients: 0)
    for shard in shards {
      shard.state.withLock { shard in
        totals.allowed += shard.allowed
        totals.rejected += shard.rejected
        totals.clients += shard.windows.count
      }
    }
    return totals
  }
}
