/// The batcher's tickets by id: an array of a power-of-two size, indexed by the id's low bits,
/// with a dictionary for the rare id whose slot is taken.
///
/// Ticket ids are the batcher's own, handed out in sequence, so the tickets in flight are
/// nearly always a run of consecutive ids, and consecutive ids never share a slot while the
/// array is at least twice their number. A lookup is then one comparison, where a `Dictionary`
/// hashes the id with SipHash, a cost that only keys chosen by an adversary justify. A ticket
/// that outlives thousands of later ones (a long batch, a caller far behind) may find its
/// successor's slot taken: it goes to the dictionary, which is looked at only when not empty.
struct TicketTable<Value> {
  /// Where a ticket is; valid until the table is next inserted into or removed from.
  enum Index {
    case slot(Int)
    case overflow(Dictionary<UInt64, Value>.Index)
  }

  /// The id in each slot; 0, which is never a ticket, marks a free slot. Free slots are told
  /// by their id, not by a `nil` value: testing an optional ticket for `nil` copies it, which
  /// retains and releases its waiter, on every lookup.
  private var ids: [UInt64]
  /// `nil` exactly where the id is 0.
  private var values: [Value?]
  private var overflow: [UInt64: Value] = [:]
  private(set) var count = 0

  init() {
    self.init(capacity: 64)
  }

  private init(capacity: Int) {
    ids = Array(repeating: 0, count: capacity)
    values = Array(repeating: nil, count: capacity)
  }

  /// Tickets kept in the dictionary because their slot was taken.
  var displacedCount: Int { overflow.count }

  private var mask: Int { ids.count - 1 }

  private func home(of id: UInt64) -> Int { Int(truncatingIfNeeded: id) & mask }

  func index(forKey id: UInt64) -> Index? {
    let slot = home(of: id)
    if ids[slot] == id && id != 0 { return .slot(slot) }
    if overflow.isEmpty { return nil }
    return overflow.index(forKey: id).map { .overflow($0) }
  }

  /// Whether ticket `id` is in the table; unlike `self[id] != nil`, copies no ticket.
  func contains(_ id: UInt64) -> Bool {
    index(forKey: id) != nil
  }

  subscript(id: UInt64) -> Value? {
    guard let index = index(forKey: id) else { return nil }
    return self[index]
  }

  subscript(index: Index) -> Value {
    switch index {
    case .slot(let slot): values[slot]!
    case .overflow(let index): overflow.values[index]
    }
  }

  /// Runs `body` on the ticket at `index`, in place.
  ///
  /// A closure rather than a `_modify` accessor: the accessor's coroutine frame for a generic
  /// value does not fit the caller's inline buffer, so every use of it allocated — once per
  /// request on the batcher's dispatch path.
  @inline(__always)
  mutating func update<R>(at index: Index, _ body: (inout Value) -> R) -> R {
    switch index {
    case .slot(let slot): body(&values[slot]!)
    case .overflow(let index): body(&overflow.values[index])
    }
  }

  /// Adds ticket `id`, which must not be in the table and must not be 0.
  mutating func insert(_ value: Value, forKey id: UInt64) {
    precondition(id != 0, "0 is not a ticket id")
    if (count + 1) * 2 > ids.count { grow() }
    place(value, forKey: id)
    count += 1
  }

  private mutating func place(_ value: Value, forKey id: UInt64) {
    let slot = home(of: id)
    if ids[slot] == 0 {
      ids[slot] = id
      values[slot] = value
    } else {
      precondition(ids[slot] != id, "ticket \(id) added twice")
      overflow[id] = value
    }
  }

  /// Doubles the array; tickets that had to go to the dictionary mostly find a slot now.
  private mutating func grow() {
    var grown = TicketTable(capacity: ids.count * 2)
    for slot in ids.indices {
      if let value = values[slot] { grown.place(value, forKey: ids[slot]) }
    }
    for (id, value) in overflow { grown.place(value, forKey: id) }
    grown.count = count
    self = grown
  }

  @discardableResult
  mutating func remove(at index: Index) -> Value {
    count -= 1
    switch index {
    case .slot(let slot):
      ids[slot] = 0
      return values[slot].take()!
    case .overflow(let index):
      return overflow.remove(at: index).value
    }
  }

  @discardableResult
  mutating func removeValue(forKey id: UInt64) -> Value? {
    guard let index = index(forKey: id) else { return nil }
    return remove(at: index)
  }
}
