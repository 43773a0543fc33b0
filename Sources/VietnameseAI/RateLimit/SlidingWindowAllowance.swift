/// A sliding window: never more than `goiY` admissions in any trailing window.
///
/// Admissions are remembered per slot of `window / 64`, stamped with the slot's *end*, so a
/// client costs at most 65 slots (or `goiY`, if smaller) whatever its rate; rounding up can only
/// make the limiter stricter by at most one slot, never looser.
struct SlidingWindowAllowance: ClientAllowance {
  /// Admissions per slot, oldest first; absent until the first admission.
  final class Log {
    var slots: [Slot] = []
    /// Slots before this index have left the window and wait to be dropped.
    var head = 0
    /// Admissions inside the window: the sum of the live slots' counts.
    var inWindow = 0
  }

  struct Slot {
    var end: Int64
    var count: Int
  }

  var lastSeen: Int64
  /// A reference, so that the table's entry stays 16 bytes; only the table holds it.
  var log: Log?

  init(now: Int64, _ limits: LimitParameters) {
    lastSeen = now
    log = nil
  }

  private init(lastSeen: Int64) {
    self.lastSeen = lastSeen
  }

  /// What the client table's empty slots hold.
  static var placeholder: Self { Self(lastSeen: 0) }

  mutating func advance(to now: Int64, _ limits: LimitParameters) {
    if now > lastSeen { lastSeen = now }
    guard let log else { return }
    // A slot counts while now < end + window; drop the ones that stopped counting.
    while log.head < log.slots.count, log.slots[log.head].end + limits.windowNanos <= now {
      log.inWindow -= log.slots[log.head].count
      log.head += 1
    }
    if log.head == log.slots.count {
      log.slots.removeAll(keepingCapacity: true)
      log.head = 0
    } else if log.head >= 16 && log.head * 2 >= log.slots.count {
      // Amortised O(1): the expired prefix is dropped once it is half the array.
      log.slots.removeFirst(log.head)
      log.head = 0
    }
  }

  mutating func take(_ cost: Int, now: Int64, _ limits: LimitParameters) -> Bool {
    guard (log?.inWindow ?? 0) + cost <= limits.goiY else { return false }
    guard cost > 0 else { return true }
    let log = self.log ?? Log()
    self.log = log
    let end = (now / limits.slotNanos + 1) * limits.slotNanos
    log.inWindow += cost
    if log.head < log.slots.count, log.slots[log.slots.count - 1].end == end {
      log.slots[log.slots.count - 1].count += cost
    } else {
      log.slots.append(Slot(end: end, count: cost))
    }
    return true
  }

  func remaining(_ limits: LimitParameters) -> Int {
    limits.goiY - (log?.inWindow ?? 0)
  }

  func retryAfter(cost: Int, now: Int64, _ limits: LimitParameters) -> Int64? {
    if cost > limits.goiY { return nil }
    guard let log else { return 0 }
    var mustFree = log.inWindow + cost - limits.goiY
    if mustFree <= 0 { return 0 }
    var index = log.head
    while index < log.slots.count {
      mustFree -= log.slots[index].count
      if mustFree <= 0 { return max(log.slots[index].end + limits.windowNanos - now, 0) }
      index += 1
    }
    return nil  // unreachable while inWindow equals the sum of the live slots
  }

  /// Slots held: live ones, and all stored including those waiting to be dropped.
  var trackedSlots: (live: Int, stored: Int) {
    guard let log else { return (0, 0) }
    return (log.slots.count - log.head, log.slots.count)
  }
}
