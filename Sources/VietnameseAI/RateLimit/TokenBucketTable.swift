import Synchronization

/// The token buckets of all clients, in one hash table that any number of threads decide on at
/// once without a lock.
///
/// Shards behind locks would make two cores deciding for different clients take turns on the
/// locks' cache lines. Here a client's bucket is 16 bytes, which one compare-and-swap replaces
/// whole: a
/// decision for a known client reads the table's structure under ``DecisionGate``'s read side,
/// which writes only a line of the CPU's own, and swaps the bucket. The only line two cores
/// both write is then the bucket itself, and only when they decide for the same client (or for
/// two clients whose entries share a line).
///
/// Everything that changes the structure (a new client, growth, removals) goes through the
/// gate's write side, alone. That is what makes the structure safe to read without a lock, and
/// what lets growth free the old arrays at once: no reader can still be in them.
///
/// The layout follows ``ClientTable``: a control byte per slot, probed first and small enough to
/// stay in the caches; the key and the bucket side by side in a 32-byte entry, two per cache
/// line; linear probing with backward-shift deletion, so no tombstones.
final class TokenBucketTable: @unchecked Sendable {
  // @unchecked: `storage` points at memory that threads share. Reads of the structure
  // (`control`, keys, `mask`) happen inside the gate's read side, where no writer is in;
  // changes to the structure happen inside its write side, where nobody else is in. The gate's
  // atomics order the two. Inside the read side, buckets change only by compare-and-swap.

  /// An entry: a client id and its bucket, packed for the compare-and-swap.
  fileprivate struct Entry: ~Copyable {
    var key: String
    let bucket: Atomic<WordPair>
  }

  fileprivate struct Storage {
    /// Per slot: zero when empty, else `0x80` with seven bits of the hash.
    var control: UnsafeMutablePointer<UInt8>
    /// Per slot: the caller's hash of the key in it; read only when entries move.
    var hashes: UnsafeMutablePointer<Int>
    /// Per slot: the entry, initialized only where `control` is not zero.
    var entries: UnsafeMutablePointer<Entry>
    var mask: Int
    var count: Int

    var capacity: Int { mask + 1 }
  }

  private let gate = DecisionGate()
  /// The table, at a fixed address: reads through a pointer need no exclusivity check. Alone on
  /// its cache line, which every decision reads and only writers write.
  private let storage: UnsafeMutablePointer<Storage>

  init() {
    storage = UnsafeMutableRawPointer.allocate(
      byteCount: max(MemoryLayout<Storage>.stride, 64),
      alignment: 64
    ).bindMemory(to: Storage.self, capacity: 1)
    storage.initialize(to: Self.makeStorage(capacity: 16))
  }

  deinit {
    Self.release(storage.pointee)
    storage.deinitialize(count: 1)
    UnsafeMutableRawPointer(storage).deallocate()
  }

  /// Occupied slots.
  var count: Int {
    gate.read { storage.pointee.count }
  }

  /// Requests allowed and rejected so far.
  func totals() -> (allowed: Int, rejected: Int) { gate.totals() }

  /// Runs `body` on the bucket for `key` and stores what it leaves, inserting `makeNew()`
  /// first if the key is absent. `body` says how many requests it allowed and rejected.
  ///
  /// `body` may run more than once: when another thread changes the same bucket in between,
  /// it runs again on the newer bucket. Only the last run's result and changes count.
  @inline(__always)
  func update<R: Sendable>(
    key: String,
    hash: Int,
    new makeNew: () -> TokenBucketAllowance,
    _ body: (inout TokenBucketAllowance) -> (result: R, allowed: Int, rejected: Int)
  ) -> R {
    if let counters = gate.enter() {
      let (index, found) = storage.pointee.find(key: key, hash: hash)
      if found {
        let outcome = Self.swap(storage.pointee.entries[index].bucket, body)
        gate.leave(counters, allowed: outcome.allowed, rejected: outcome.rejected)
        return outcome.result
      }
      gate.leave(counters)
    }
    return insertAndUpdate(key: key, hash: hash, new: makeNew, body)
  }

  /// ``update(key:hash:new:_:)`` for a new client, or while a writer is in: on the write side.
  /// Out of line, so that the decision path stays small enough to inline.
  @inline(never)
  private func insertAndUpdate<R: Sendable>(
    key: String,
    hash: Int,
    new makeNew: () -> TokenBucketAllowance,
    _ body: (inout TokenBucketAllowance) -> (result: R, allowed: Int, rejected: Int)
  ) -> R {
    gate.write { counters in
      let index = insertIfAbsent(key: key, hash: hash, makeNew)
      let outcome = Self.swap(storage.pointee.entries[index].bucket, body)
      counters.count(allowed: outcome.allowed, rejected: outcome.rejected)
      return outcome.result
    }
  }

  /// The bucket for `key`, if present.
  func value(key: String, hash: Int) -> TokenBucketAllowance? {
    func lookUp() -> TokenBucketAllowance? {
      let (index, found) = storage.pointee.find(key: key, hash: hash)
      guard found else { return nil }
      return TokenBucketAllowance(packed: storage.pointee.entries[index].bucket.load(ordering: .relaxed))
    }
    return gate.read(lookUp)
  }

  /// Removes `key`. Returns whether it was present.
  @discardableResult
  func remove(key: String, hash: Int) -> Bool {
    gate.write { _ in
      let (index, found) = storage.pointee.find(key: key, hash: hash)
      if found { removeEntry(at: index) }
      return found
    }
  }

  /// Removes every bucket that satisfies `shouldRemove`. Returns how many were removed.
  ///
  /// Decisions go on meanwhile: the table is scanned on the read side, a thousand slots at a
  /// time, and each client found is removed in a write side of its own, after `shouldRemove`
  /// holds for it again (a decision may have come in between). The longest any decision waits
  /// is one removal, and, when most clients went, the one rebuild that shrinks the table.
  func removeAll(where shouldRemove: @Sendable (TokenBucketAllowance) -> Bool) -> Int {
    var candidates: [(key: String, hash: Int)] = []
    var start = 0
    while true {
      let (found, end) = gate.read { scan(from: start, shouldRemove) }
      candidates += found
      guard let end else { break }
      start = end
    }
    var removed = 0
    for (key, hash) in candidates {
      removed += gate.write { _ in
        let (index, found) = storage.pointee.find(key: key, hash: hash)
        guard found,
          shouldRemove(
            TokenBucketAllowance(packed: storage.pointee.entries[index].bucket.load(ordering: .relaxed))
          )
        else { return 0 }
        removeEntry(at: index)
        return 1
      }
    }
    if removed > 0 {
      gate.write { _ in
        let capacity = LinearProbing.capacity(for: storage.pointee.count)
        if capacity * 4 <= storage.pointee.capacity { rebuild(capacity: capacity) }
      }
    }
    return removed
  }

  /// The clients satisfying `shouldRemove` among slots `start..<start + 1024` (or to the end),
  /// and where the next scan starts, `nil` at the end.
  private func scan(
    from start: Int,
    _ shouldRemove: (TokenBucketAllowance) -> Bool
  ) -> (found: [(key: String, hash: Int)], next: Int?) {
    let table = storage.pointee
    let end = min(start + 1_024, table.capacity)
    var found: [(key: String, hash: Int)] = []
    for index in start..<max(start, end) where table.control[index] != 0 {
      if shouldRemove(TokenBucketAllowance(packed: table.entries[index].bucket.load(ordering: .relaxed))) {
        found.append((table.entries[index].key, table.hashes[index]))
      }
    }
    return (found, end < table.capacity ? end : nil)
  }

  // MARK: Inside the write side

  /// The slot of `key`, inserted with `makeNew()` if absent. Grows the table first when it
  /// would fill past seven eighths.
  private func insertIfAbsent(key: String, hash: Int, _ makeNew: () -> TokenBucketAllowance) -> Int {
    var (index, found) = storage.pointee.find(key: key, hash: hash)
    if found { return index }
    if LinearProbing.isFull(count: storage.pointee.count, capacity: storage.pointee.capacity) {
      grow()
      index = storage.pointee.find(key: key, hash: hash).index
    }
    storage.pointee.place(key: key, hash: hash, bucket: makeNew().packed, at: index)
    return index
  }

  private func grow() {
    rebuild(capacity: storage.pointee.capacity * 2)
  }

  /// Moves every entry into a new table of `capacity` slots.
  private func rebuild(capacity: Int) {
    let old = storage.pointee
    storage.pointee = Self.makeStorage(capacity: capacity)
    for index in 0..<old.capacity where old.control[index] != 0 {
      let slot = storage.pointee.find(key: old.entries[index].key, hash: old.hashes[index]).index
      storage.pointee.place(
        key: old.entries[index].key,
        hash: old.hashes[index],
        bucket: old.entries[index].bucket.load(ordering: .relaxed),
        at: slot
      )
    }
    Self.release(old)
  }

  /// Backward-shift deletion, as in ``ClientTable``.
  private func removeEntry(at removed: Int) {
    let table = storage.pointee
    var hole = removed
    var index = removed
    while true {
      index = (index &+ 1) & table.mask
      if table.control[index] == 0 { break }
      if LinearProbing.mayMove(hash: table.hashes[index], from: index, into: hole, mask: table.mask) {
        table.control[hole] = table.control[index]
        table.hashes[hole] = table.hashes[index]
        table.entries[hole].key = table.entries[index].key
        table.entries[hole].bucket.store(
          table.entries[index].bucket.load(ordering: .relaxed),
          ordering: .relaxed
        )
        hole = index
      }
    }
    table.control[hole] = 0
    (table.entries + hole).deinitialize(count: 1)
    storage.pointee.count -= 1
  }

  // MARK: Memory

  private static func makeStorage(capacity: Int) -> Storage {
    let control = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
    control.initialize(repeating: 0, count: capacity)
    // Aligned to a cache line, so that an entry never straddles two.
    let entries = UnsafeMutableRawPointer.allocate(
      byteCount: MemoryLayout<Entry>.stride * capacity,
      alignment: 64
    ).bindMemory(to: Entry.self, capacity: capacity)
    return Storage(
      control: control,
      hashes: .allocate(capacity: capacity),
      entries: entries,
      mask: capacity - 1,
      count: 0
    )
  }

  private static func release(_ storage: Storage) {
    for index in 0..<storage.capacity where storage.control[index] != 0 {
      (storage.entries + index).deinitialize(count: 1)
    }
    storage.control.deallocate()
    storage.hashes.deallocate()
    UnsafeMutableRawPointer(storage.entries).deallocate()
  }

  /// Applies `body` to `bucket` by compare-and-swap, running it again until no other thread
  /// changed the bucket in between.
  @inline(__always)
  private static func swap<R>(
    _ bucket: borrowing Atomic<WordPair>,
    _ body: (inout TokenBucketAllowance) -> (result: R, allowed: Int, rejected: Int)
  ) -> (result: R, allowed: Int, rejected: Int) {
    var old = bucket.load(ordering: .relaxed)
    while true {
      var allowance = TokenBucketAllowance(packed: old)
      let outcome = body(&allowance)
      let (exchanged, current) = bucket.compareExchange(
        expected: old,
        desired: allowance.packed,
        ordering: .relaxed
      )
      if exchanged { return outcome }
      old = current
    }
  }
}

extension TokenBucketTable.Storage {
  /// The slot holding `key`, or the empty slot that ends its probe run.
  @inline(__always)
  fileprivate func find(key: String, hash: Int) -> (index: Int, found: Bool) {
    let tag = LinearProbing.tag(hash)
    var index = LinearProbing.home(hash, mask: mask)
    while true {
      let byte = control[index]
      if byte == tag && entries[index].key == key { return (index, true) }
      if byte == 0 { return (index, false) }
      index = (index &+ 1) & mask
    }
  }

  /// Fills the empty slot `index`.
  fileprivate mutating func place(key: String, hash: Int, bucket: WordPair, at index: Int) {
    control[index] = LinearProbing.tag(hash)
    hashes[index] = hash
    (entries + index).initialize(to: .init(key: key, bucket: Atomic(bucket)))
    count += 1
  }
}

extension TokenBucketTable: ClientStore {
  @inline(__always)
  func update<R: Sendable>(
    _ key: BoGioiHanTocDo.ClientKey,
    new makeNew: () -> TokenBucketAllowance,
    _ body: (inout TokenBucketAllowance) -> (result: R, allowed: Int, rejected: Int)
  ) -> R {
    update(key: key.id, hash: key.hash, new: makeNew, body)
  }

  func peek<R: Sendable>(_ key: BoGioiHanTocDo.ClientKey, _ read: (TokenBucketAllowance?) -> R) -> R {
    read(value(key: key.id, hash: key.hash))
  }

  func remove(_ key: BoGioiHanTocDo.ClientKey) {
    remove(key: key.id, hash: key.hash)
  }

  func statistics() -> (allowed: Int, rejected: Int, clients: Int) {
    let (allowed, rejected) = totals()
    return (allowed, rejected, count)
  }
}
