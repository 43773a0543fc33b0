/// The arithmetic the limiter's two hash tables share: where a key's probe run starts, the
/// control byte that stands for it, when a table grows, and which entries backward-shift
/// deletion may move.
enum LinearProbing {
  /// The control byte for `hash`: its top seven bits, which neither the limiter's shard choice
  /// nor ``home(_:mask:)`` leans on, with the high bit set so that it is never zero (empty).
  @inline(__always)
  static func tag(_ hash: Int) -> UInt8 {
    UInt8(truncatingIfNeeded: UInt(bitPattern: hash) &>> 57) | 0x80
  }

  /// The slot where `hash`'s probe run starts in a table of `mask + 1` slots.
  @inline(__always)
  static func home(_ hash: Int, mask: Int) -> Int {
    // Multiply to spread the bits the shard selection did not use over the whole word.
    Int(truncatingIfNeeded: (UInt(bitPattern: hash) &* 0x9E37_79B9_7F4A_7C15) &>> 32) & mask
  }

  /// Slots for `count` entries: a power of two, filled to at most seven eighths. Probing scans
  /// control bytes, which is cheap enough to fill the table that far.
  static func capacity(for count: Int) -> Int {
    var capacity = 16
    while capacity * 7 < count * 8 { capacity *= 2 }
    return capacity
  }

  /// Whether a table at `count` entries must grow before it takes one more.
  @inline(__always)
  static func isFull(count: Int, capacity: Int) -> Bool {
    (count + 1) * 8 > capacity * 7
  }

  /// Whether the entry at `index`, whose key hashes to `hash`, may move back into the `hole`
  /// that backward-shift deletion opened before it: only if its home is not strictly between
  /// the hole and where it is, or it would no longer be found.
  @inline(__always)
  static func mayMove(hash: Int, from index: Int, into hole: Int, mask: Int) -> Bool {
    let ideal = home(hash, mask: mask)
    return (hole &- ideal) & mask < (index &- ideal) & mask
  }
}
