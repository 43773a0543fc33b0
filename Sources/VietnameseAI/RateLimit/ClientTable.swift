/// An open-addressing hash table from client id to `Value`, tuned for the rate limiter.
///
/// With 100,000 clients the limiter's state does not fit in the CPU caches, and a decision costs
/// what its lookup misses. `Dictionary` keeps its occupancy bitmap, keys and values in three
/// arrays and hashes the key again even when the caller has a hash. Here:
///
/// - A byte per slot (`control`) holds 7 bits of the hash, or zero for an empty slot. Probing
///   scans these bytes, which for 100,000 clients take 128 KB and stay in the caches; an entry is
///   read only when its byte matches, and a wrong match happens once in 128 probes. A lookup
///   costs one miss, on the entry it wants.
/// - An entry is the key and the value only: 32 bytes for the token bucket's state, two per
///   cache line.
/// - Because probing is cheap, the table may fill to seven eighths before it grows, so 100,000
///   clients take 4 MB of entries rather than 16 MB: a working set that stays in the last-level
///   cache and within the reach of the TLB.
/// - The caller's full hashes live in their own array (`hashes`), read only when entries move:
///   on growth and on deletion.
///
/// Deletion shifts the following entries back instead of leaving tombstones, so the table never
/// degrades however many clients come and go.
struct ClientTable<Value> {
  private struct Entry {
    var key: String
    var value: Value
  }

  /// Per slot: zero when empty, else `0x80` with seven bits of the hash.
  private var control: [UInt8]
  /// Per slot: the hash the caller gave for the key in it; meaningful when occupied.
  private var hashes: [Int]
  private var entries: [Entry]
  private var mask: Int
  /// What empty slots hold (a value rather than an optional keeps entries small).
  private let empty: Value
  /// Occupied slots.
  private(set) var count = 0

  init(empty: Value) {
    self.empty = empty
    control = Array(repeating: 0, count: 16)
    hashes = Array(repeating: 0, count: 16)
    entries = Array(repeating: Entry(key: "", value: empty), count: 16)
    mask = 15
  }

  /// The slot holding `key`, or the empty slot that ends its probe run.
  @inline(__always)
  private func find(key: String, hash: Int) -> (index: Int, found: Bool) {
    let tag = LinearProbing.tag(hash)
    var index = LinearProbing.home(hash, mask: mask)
    return control.withUnsafeBufferPointer { control in
      while true {
        let byte = control[index]
        if byte == tag && entries[index].key == key { return (index, true) }
        if byte == 0 { return (index, false) }
        index = (index &+ 1) & mask
      }
    }
  }

  /// Runs `body` on the value for `key`, inserting `makeDefault()` first if the key is absent.
  @inline(__always)
  mutating func update<R>(
    key: String,
    hash: Int,
    default makeDefault: @autoclosure () -> Value,
    _ body: (inout Value) -> R
  ) -> R {
    var (index, found) = find(key: key, hash: hash)
    if !found {
      if LinearProbing.isFull(count: count, capacity: entries.count) {
        grow()
        index = find(key: key, hash: hash).index
      }
      count += 1
      control[index] = LinearProbing.tag(hash)
      hashes[index] = hash
      entries[index] = Entry(key: key, value: makeDefault())
    }
    return body(&entries[index].value)
  }

  /// The value for `key`, if present.
  func value(key: String, hash: Int) -> Value? {
    let (index, found) = find(key: key, hash: hash)
    return found ? entries[index].value : nil
  }

  /// Removes `key`. Returns whether it was present.
  @discardableResult
  mutating func remove(key: String, hash: Int) -> Bool {
    let (index, found) = find(key: key, hash: hash)
    if found { removeEntry(at: index) }
    return found
  }

  /// Removes every entry whose value satisfies `shouldRemove`. Returns how many were removed.
  mutating func removeAll(where shouldRemove: (Value) -> Bool) -> Int {
    let before = count
    var kept: [(hash: Int, entry: Entry)] = []
    kept.reserveCapacity(count)
    for index in entries.indices where control[index] != 0 && !shouldRemove(entries[index].value) {
      kept.append((hashes[index], entries[index]))
    }
    rebuild(from: kept, capacity: LinearProbing.capacity(for: kept.count))
    return before - count
  }

  // MARK: Upkeep

  private mutating func grow() {
    var old: [(hash: Int, entry: Entry)] = []
    old.reserveCapacity(count)
    for index in entries.indices where control[index] != 0 {
      old.append((hashes[index], entries[index]))
    }
    rebuild(from: old, capacity: entries.count * 2)
  }

  private mutating func rebuild(from source: [(hash: Int, entry: Entry)], capacity: Int) {
    control = Array(repeating: 0, count: capacity)
    hashes = Array(repeating: 0, count: capacity)
    entries = Array(repeating: Entry(key: "", value: empty), count: capacity)
    mask = capacity - 1
    count = source.count
    for (hash, entry) in source {
      var index = LinearProbing.home(hash, mask: mask)
      while control[index] != 0 { index = (index &+ 1) & mask }
      control[index] = LinearProbing.tag(hash)
      hashes[index] = hash
      entries[index] = entry
    }
  }

  /// Backward-shift deletion for linear probing: pull later entries of the same probe run into
  /// the hole, so lookups never need tombstones.
  private mutating func removeEntry(at removed: Int) {
    var hole = removed
    var index = removed
    while true {
      index = (index &+ 1) & mask
      if control[index] == 0 { break }
      if LinearProbing.mayMove(hash: hashes[index], from: index, into: hole, mask: mask) {
        control[hole] = control[index]
        hashes[hole] = hashes[index]
        entries[hole] = entries[index]
        hole = index
      }
    }
    control[hole] = 0
    entries[hole] = Entry(key: "", value: empty)
    count -= 1
  }
}
