import NIOCore
@_spi(Locking) import VietnameseAI
import VietnameseAIWire

/// The calls in flight on one connection, shared by the tasks that make calls and the event
/// loop that answers them.
///
/// A call registers here before its frame is sent, and whoever ends it first (its answer, its
/// cancellation, its local deadline, the connection closing) removes it and answers the
/// caller; everybody later finds nothing. A call the caller gave up on stays counted as
/// *abandoned* until the server's terminal frame arrives, because the server still counts it
/// against the connection's limit.
final class CallTable: Sendable {
  enum Call {
    /// Answered by one terminal message.
    case unary(@Sendable (Result<WireMessage, RPCError>) -> Void)
    /// Tokens, then `STREAM_END` or `ERROR`. The tokens go straight from the connection's
    /// handler to the buffer; the table sees the end only.
    case stream(TokenBuffer)
  }

  private struct Entry {
    /// `nil` while the id is reserved and its call not yet registered.
    var call: Call?
    /// When the client stops waiting for the server: the call's deadline plus a grace.
    var givesUpAt: NIODeadline?
    var deadline: Duration?
  }

  private struct State {
    var slots = Slots()
    var nextID: UInt32 = 1
    var pings: [UInt64: CheckedContinuation<Void, any Error>] = [:]
    var closed: RPCError?
    var goingAway = false
    var limit = Int.max

    /// The next id whose slot is free, in sequence, skipping 0.
    mutating func takeID() -> UInt32 {
      slots.reserveCapacity(slots.count + 1)
      while true {
        let id = nextID
        nextID &+= 1
        if id != 0 && slots.isFree(id) { return id }
      }
    }

    /// Why a new call cannot start now, if it cannot.
    func refusal() -> RPCError? {
      if let closed { return closed }
      if goingAway {
        return .unavailable("the server is shutting down (GOAWAY); open a new connection")
      }
      if slots.count >= limit {
        return RPCError(
          code: .resourceExhausted,
          message: "\(limit) requests in flight, the most the server allows on one connection"
        )
      }
      return nil
    }
  }

  private let state = Locked(State())

  /// Sets the server's limit on requests in flight, from `WELCOME`.
  func setLimit(_ limit: Int) {
    state.withLock { $0.limit = limit }
  }

  /// Takes an id for a call to be registered with ``register(_:_:deadline:grace:)``, for a
  /// caller that needs the id first (to cancel by it).
  func reserve() -> UInt32 {
    state.withLock { state in
      let id = state.takeID()
      state.slots.insert(id, Entry(call: nil), abandoned: false)
      return id
    }
  }

  /// Adds a call under a new id, or says why it cannot start. A call with a `deadline` is
  /// given up `grace` after it by ``expire(now:)`` if the server has not answered by then.
  func register(_ call: Call, deadline: Duration? = nil, grace: Duration = .zero) -> Result<UInt32, RPCError>
  {
    let givesUpAt = deadline.map { NIODeadline.now() + TimeAmount($0 + grace) }
    return state.withLock { state in
      if let refusal = state.refusal() { return .failure(refusal) }
      let id = state.takeID()
      state.slots.insert(id, Entry(call: call, givesUpAt: givesUpAt, deadline: deadline), abandoned: false)
      return .success(id)
    }
  }

  /// Registers the call of an id from ``reserve()``, or says why it cannot start; the id is
  /// free again then.
  func register(_ id: UInt32, _ call: Call, deadline: Duration? = nil, grace: Duration = .zero) -> RPCError? {
    let givesUpAt = deadline.map { NIODeadline.now() + TimeAmount($0 + grace) }
    return state.withLock { state -> RPCError? in
      guard let slot = state.slots.index(of: id) else { return state.closed ?? .cancelledByCaller }
      // The reservation itself counts against the limit.
      state.slots.removeValue(at: slot)
      if let refusal = state.refusal() { return refusal }
      state.slots.insert(id, Entry(call: call, givesUpAt: givesUpAt, deadline: deadline), abandoned: false)
      return nil
    }
  }

  /// Frees the id of a call whose request was never sent, as the server will never answer
  /// it, and ends the call with `error` unless it was ended already (abandoned meanwhile).
  func withdraw(_ id: UInt32, with error: RPCError) {
    let entry = state.withLock { state -> Entry? in
      guard let slot = state.slots.index(of: id) else { return nil }
      let abandoned = state.slots.isAbandoned(slot)
      let entry = state.slots.removeValue(at: slot)
      return abandoned ? nil : entry
    }
    if let entry { Self.end(entry, with: .failure(error)) }
  }

  /// Gives up the calls whose local deadline has passed: they fail with DEADLINE_EXCEEDED.
  ///
  /// One periodic sweep per connection replaces a timer per call: scheduling and cancelling a
  /// timer for each of 100k calls a second costs more than the calls' own bookkeeping, and
  /// this deadline is only a fallback for a server that does not answer.
  ///
  /// - Returns: The ids given up, for the caller to send `CANCEL`.
  func expire(now: NIODeadline) -> [UInt32] {
    let expired = state.withLock { state -> [(UInt32, Entry)] in
      // An idle connection's sweep looks at no slot.
      guard state.slots.count > 0 else { return [] }
      var due: [(UInt32, Entry)] = []
      for slot in state.slots.live() {
        guard let givesUpAt = state.slots.entry(at: slot).givesUpAt, givesUpAt <= now else { continue }
        due.append((state.slots.id(at: slot), state.slots.abandon(at: slot)))
      }
      return due
    }
    for (_, entry) in expired {
      let error = RPCError(
        code: .deadlineExceeded,
        message: "no answer within the deadline of \(entry.deadline ?? .zero)"
      )
      Self.end(entry, with: .failure(error))
    }
    return expired.map(\.0)
  }

  /// Ends a call on the caller's side with `error`.
  ///
  /// - Returns: Whether the call was still in flight, in which case the server should be told
  ///   with `CANCEL`.
  func abandon(_ id: UInt32, with error: RPCError) -> Bool {
    let entry = state.withLock { state -> Entry? in
      guard let slot = state.slots.index(of: id), !state.slots.isAbandoned(slot),
        state.slots.entry(at: slot).call != nil
      else { return nil }
      return state.slots.abandon(at: slot)
    }
    guard let entry else { return false }
    Self.end(entry, with: .failure(error))
    return true
  }

  /// The terminal frame of call `id`.
  func complete(_ id: UInt32, with outcome: Result<WireMessage, RPCError>) {
    let entry = state.withLock { state -> Entry? in
      // A reserved id has sent nothing: a frame for it is not its answer.
      guard let slot = state.slots.index(of: id),
        state.slots.isAbandoned(slot) || state.slots.entry(at: slot).call != nil
      else { return nil }
      let abandoned = state.slots.isAbandoned(slot)
      let entry = state.slots.removeValue(at: slot)
      return abandoned ? nil : entry
    }
    guard let entry else { return }
    Self.end(entry, with: outcome)
  }

  /// The server sent `GOAWAY`: calls in flight go on, new ones are refused.
  func goAway() {
    state.withLock { $0.goingAway = true }
  }

  /// The connection is gone: every call and ping fails with `error`.
  func closeAll(with error: RPCError) {
    let (entries, pings) = state.withLock { state in
      if state.closed == nil { state.closed = error }
      let entries = state.slots.live().map { state.slots.entry(at: $0) }
      let pings = Array(state.pings.values)
      state.slots.removeAll()
      state.pings.removeAll()
      return (entries, pings)
    }
    for entry in entries { Self.end(entry, with: .failure(error)) }
    for ping in pings { ping.resume(throwing: error) }
  }

  /// Registers a ping awaiting its `PONG`.
  func addPing(_ value: UInt64, _ continuation: CheckedContinuation<Void, any Error>) {
    let refusal = state.withLock { state -> RPCError? in
      if let closed = state.closed { return closed }
      state.pings[value] = continuation
      return nil
    }
    if let refusal { continuation.resume(throwing: refusal) }
  }

  func pong(_ value: UInt64) {
    state.withLock { $0.pings.removeValue(forKey: value) }?.resume()
  }

  private static func end(_ entry: Entry, with outcome: Result<WireMessage, RPCError>) {
    guard let call = entry.call else { return }
    switch call {
    case .unary(let answer):
      answer(outcome)
    case .stream(let buffer):
      switch outcome {
      case .success(.streamEnd(let count)):
        buffer.finish(expecting: count)
      case .success(let message):
        buffer.finish(
          .failure(RPCError(code: .protocolError, message: "a stream was answered with \(message.type.name)"))
        )
      case .failure(let error):
        buffer.finish(.failure(error))
      }
    }
  }

  /// The calls by request id: an array of a power-of-two size, indexed by the id's low bits.
  ///
  /// The client picks the ids, in sequence, and skips any whose slot is taken, so a slot holds
  /// at most one id and finding an id (one the server sent may be anything) is one
  /// comparison: no hashing and no probing. The array doubles when half full; ids that were
  /// apart in the smaller array stay apart in the larger one. A slot of an abandoned call stays
  /// taken until the server's terminal frame, as the server still counts the call.
  private struct Slots {
    /// 0 marks a free slot (0 is never a request id).
    private var ids: [UInt32]
    private var entries: [Entry?]
    private var abandoned: [Bool]
    private(set) var count = 0

    init() {
      ids = Array(repeating: 0, count: 64)
      entries = Array(repeating: nil, count: 64)
      abandoned = Array(repeating: false, count: 64)
    }

    private var mask: Int { ids.count - 1 }

    func isFree(_ id: UInt32) -> Bool { ids[Int(id) & mask] == 0 }

    /// The slot of `id`, if it is in the table.
    func index(of id: UInt32) -> Int? {
      let slot = Int(id) & mask
      return id != 0 && ids[slot] == id ? slot : nil
    }

    func id(at slot: Int) -> UInt32 { ids[slot] }
    func entry(at slot: Int) -> Entry { entries[slot]! }
    func isAbandoned(_ slot: Int) -> Bool { abandoned[slot] }

    /// The slots of calls still waited for (neither abandoned nor merely reserved).
    func live() -> [Int] {
      ids.indices.filter { ids[$0] != 0 && !abandoned[$0] && entries[$0]?.call != nil }
    }

    /// Grows the array, if needed, so that it is at most half full with `needed` ids.
    mutating func reserveCapacity(_ needed: Int) {
      guard needed * 2 > ids.count else { return }
      var size = ids.count
      while needed * 2 > size { size *= 2 }
      var grown = Slots(size: size)
      for slot in ids.indices where ids[slot] != 0 {
        grown.insert(ids[slot], entries[slot]!, abandoned: abandoned[slot])
      }
      self = grown
    }

    private init(size: Int) {
      ids = Array(repeating: 0, count: size)
      entries = Array(repeating: nil, count: size)
      abandoned = Array(repeating: false, count: size)
    }

    /// Adds `id`, whose slot must be free.
    mutating func insert(_ id: UInt32, _ entry: Entry, abandoned isAbandoned: Bool) {
      reserveCapacity(count + 1)
      let slot = Int(id) & mask
      precondition(ids[slot] == 0, "request id \(id) given out twice")
      ids[slot] = id
      entries[slot] = entry
      abandoned[slot] = isAbandoned
      count += 1
    }

    /// Marks a call abandoned, keeping its slot; returns its entry.
    mutating func abandon(at slot: Int) -> Entry {
      abandoned[slot] = true
      return entries[slot]!
    }

    @discardableResult
    mutating func removeValue(at slot: Int) -> Entry {
      let entry = entries[slot]!
      ids[slot] = 0
      entries[slot] = nil
      abandoned[slot] = false
      count -= 1
      return entry
    }

    mutating func removeAll() {
      self = Slots()
    }
  }
}
