import NIOCore
@_spi(Locking) import VietnameseAIConcurrency
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
    /// Answered by one `RESULT`, whose output goes to the caller as it is. The caller's own
    /// completion, stored without a closure around it: a callback predict allocates nothing
    /// here.
    case result(@Sendable (Result<ByteBuffer, RPCError>) -> Void)
    /// Tokens, then `STREAM_END` or `ERROR`. The tokens go straight from the connection's
    /// handler to the buffer; the table sees the end only.
    case stream(TokenBuffer)
  }

  private struct Entry {
    let id: UInt32
    /// `nil` while the id is reserved and its call not yet registered.
    var call: Call?
    var deadline: Duration?
    /// When the client stops waiting for the server: the call's deadline plus the table's
    /// grace, counted from the first sweep after the call began (see ``expire(now:)``).
    var givesUpAt: NIODeadline?
    /// Ended on the caller's side; the id stays taken until the server's terminal frame.
    var abandoned = false

    /// Registered, and its caller still waits for it.
    var isWaiting: Bool { call != nil && !abandoned }
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

    /// Why a new call cannot start now, if it cannot; its request is never sent.
    func refusal() -> RPCError? {
      if let closed { return closed.unsent }
      if goingAway {
        return RPCError.unavailable("the server is shutting down (GOAWAY); open a new connection").unsent
      }
      if slots.count >= limit {
        return RPCError(
          code: .resourceExhausted,
          message: "\(limit) requests in flight, the most the server allows on one connection",
          neverSent: true
        )
      }
      return nil
    }

    /// Whether a new call may start now.
    var accepting: Bool { closed == nil && !goingAway }
  }

  private let state = Locked(State())
  /// How long after a call's deadline the client stops waiting for the server's own answer.
  private let grace: Duration

  init(grace: Duration = .seconds(1)) {
    self.grace = grace
  }

  /// Sets the server's limit on requests in flight, from `WELCOME`.
  func setLimit(_ limit: Int) {
    state.withLock { $0.limit = limit }
  }

  /// Takes an id for a call to be registered with ``register(_:_:deadline:)``, for a
  /// caller that needs the id first (to cancel by it).
  func reserve() -> UInt32 {
    state.withLock { state in
      let id = state.takeID()
      state.slots.insert(Entry(id: id, call: nil))
      return id
    }
  }

  /// Adds a call under a new id, or says why it cannot start. A call with a `deadline` is
  /// given up by ``expire(now:)`` if the server has not answered by then.
  func register(_ call: Call, deadline: Duration? = nil) -> Result<UInt32, RPCError> {
    state.withLock { state in
      if let refusal = state.refusal() { return .failure(refusal) }
      let id = state.takeID()
      state.slots.insert(Entry(id: id, call: call, deadline: deadline))
      return .success(id)
    }
  }

  /// Registers the call of an id from ``reserve()``, or says why it cannot start; the id is
  /// free again then.
  func register(_ id: UInt32, _ call: Call, deadline: Duration? = nil) -> RPCError? {
    state.withLock { state -> RPCError? in
      guard let slot = state.slots.index(of: id) else { return state.closed ?? .cancelledByCaller }
      // The reservation itself counts against the limit.
      state.slots.remove(at: slot)
      if let refusal = state.refusal() { return refusal }
      state.slots.insert(Entry(id: id, call: call, deadline: deadline))
      return nil
    }
  }

  /// Frees the id of a call whose request was never sent, as the server will never answer
  /// it, and ends the call with `error` unless it was ended already (abandoned meanwhile).
  func withdraw(_ id: UInt32, with error: RPCError) {
    let entry = state.withLock { state -> Entry? in
      guard let slot = state.slots.index(of: id) else { return nil }
      let entry = state.slots.remove(at: slot)
      return entry.abandoned ? nil : entry
    }
    if let entry { Self.end(entry, with: .failure(error)) }
  }

  /// Gives up the calls whose local deadline has passed: they fail with DEADLINE_EXCEEDED.
  ///
  /// One periodic sweep per connection replaces a timer per call: scheduling and cancelling a
  /// timer for each of 100k calls a second costs more than the calls' own bookkeeping, and
  /// this deadline is only a fallback for a server that does not answer.
  ///
  /// For the same reason, a call reads no clock when it starts: the first sweep that sees it
  /// starts its countdown from that sweep's `now`. A call is so given up at least
  /// `deadline + grace` after it began and at most one sweep interval later than that; the
  /// grace is far longer than the interval, and the server enforces the deadline itself.
  ///
  /// - Returns: The ids given up, for the caller to send `CANCEL`.
  func expire(now: NIODeadline) -> [UInt32] {
    let grace = self.grace
    let expired = state.withLock { state -> [Entry] in
      // An idle connection's sweep looks at no slot.
      guard state.slots.count > 0 else { return [] }
      var due: [Entry] = []
      for slot in state.slots.waiting() {
        guard let deadline = state.slots[slot].deadline else { continue }
        guard let givesUpAt = state.slots[slot].givesUpAt else {
          state.slots[slot].givesUpAt = now + TimeAmount(deadline + grace)
          continue
        }
        guard givesUpAt <= now else { continue }
        state.slots[slot].abandoned = true
        due.append(state.slots[slot])
      }
      return due
    }
    for entry in expired {
      let error = RPCError(
        code: .deadlineExceeded,
        message: "no answer within the deadline of \(entry.deadline ?? .zero)"
      )
      Self.end(entry, with: .failure(error))
    }
    return expired.map(\.id)
  }

  /// Ends a call on the caller's side with `error`.
  ///
  /// - Returns: Whether the call was still in flight, in which case the server should be told
  ///   with `CANCEL`.
  func abandon(_ id: UInt32, with error: RPCError) -> Bool {
    let entry = state.withLock { state -> Entry? in
      guard let slot = state.slots.index(of: id), state.slots[slot].isWaiting else { return nil }
      state.slots[slot].abandoned = true
      return state.slots[slot]
    }
    guard let entry else { return false }
    Self.end(entry, with: .failure(error))
    return true
  }

  /// The terminal frame of call `id`.
  func complete(_ id: UInt32, with outcome: Result<WireMessage, RPCError>) {
    let entry = state.withLock { state -> Entry? in
      // A reserved id has sent nothing: a frame for it is not its answer. (Only registered
      // calls are ever abandoned.)
      guard let slot = state.slots.index(of: id) else { return nil }
      // Moved out, not copied; a reservation goes back.
      let entry = state.slots.remove(at: slot)
      guard entry.call != nil else {
        state.slots.insert(entry)
        return nil
      }
      return entry.abandoned ? nil : entry
    }
    guard let entry else { return }
    Self.end(entry, with: outcome)
  }

  /// Whether new calls may start: the connection is open and the server did not send `GOAWAY`.
  var isAccepting: Bool {
    state.withLock { $0.accepting }
  }

  /// The server sent `GOAWAY`: calls in flight go on, new ones are refused.
  func goAway() {
    state.withLock { $0.goingAway = true }
  }

  /// The connection is gone: every call and ping fails with `error`.
  func closeAll(with error: RPCError) {
    let (entries, pings) = state.withLock { state in
      if state.closed == nil { state.closed = error }
      let entries = state.slots.waiting().map { state.slots[$0] }
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
    case .result(let completion):
      switch outcome {
      case .success(.result(let output)): completion(.success(output))
      case .success: completion(.failure(RPCClient.unexpectedAnswer))
      case .failure(let error): completion(.failure(error))
      }
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
    /// The id in each slot; 0, which is never a request id, marks a free slot. Slots are
    /// told free by their id: testing an optional entry for `nil`, or reading its id, goes
    /// through the entry's value witnesses and copies its completion.
    private var ids: [UInt32]
    /// `nil` exactly where the id is 0.
    private var entries: [Entry?]
    private(set) var count = 0

    init(size: Int = 64) {
      ids = Array(repeating: 0, count: size)
      entries = Array(repeating: nil, count: size)
    }

    private var mask: Int { ids.count - 1 }

    func isFree(_ id: UInt32) -> Bool { ids[Int(id) & mask] == 0 }

    /// The slot of `id`, if it is in the table.
    func index(of id: UInt32) -> Int? {
      let slot = Int(id) & mask
      return id != 0 && ids[slot] == id ? slot : nil
    }

    subscript(slot: Int) -> Entry {
      get { entries[slot]! }
      _modify { yield &entries[slot]! }
    }

    /// The slots of calls whose callers still wait (neither abandoned nor merely reserved).
    func waiting() -> [Int] {
      ids.indices.filter { ids[$0] != 0 && entries[$0]!.isWaiting }
    }

    /// Grows the array, if needed, so that it is at most half full with `needed` ids.
    mutating func reserveCapacity(_ needed: Int) {
      guard needed * 2 > ids.count else { return }
      var size = ids.count
      while needed * 2 > size { size *= 2 }
      var grown = Slots(size: size)
      for case let entry? in entries { grown.insert(entry) }
      self = grown
    }

    /// Adds an entry, whose id's slot must be free.
    mutating func insert(_ entry: Entry) {
      reserveCapacity(count + 1)
      let slot = Int(entry.id) & mask
      precondition(entry.id != 0 && ids[slot] == 0, "request id \(entry.id) given out twice")
      ids[slot] = entry.id
      entries[slot] = entry
      count += 1
    }

    @discardableResult
    mutating func remove(at slot: Int) -> Entry {
      count -= 1
      ids[slot] = 0
      return entries[slot].take()!
    }

    mutating func removeAll() {
      self = Slots()
    }
  }
}
