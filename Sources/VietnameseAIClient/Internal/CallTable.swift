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
    var call: Call
    /// When the client stops waiting for the server: the call's deadline plus a grace.
    var givesUpAt: NIODeadline?
    var deadline: Duration?
  }

  private struct State {
    var calls: [UInt32: Entry] = [:]
    var abandoned: Set<UInt32> = []
    var pings: [UInt64: CheckedContinuation<Void, any Error>] = [:]
    var closed: RPCError?
    var goingAway = false
    var limit = Int.max
  }

  private let state = Locked(State())

  /// Sets the server's limit on requests in flight, from `WELCOME`.
  func setLimit(_ limit: Int) {
    state.withLock { $0.limit = limit }
  }

  /// Whether `id` may be used for a new request: not in flight, not awaiting its answer.
  func isFree(_ id: UInt32) -> Bool {
    state.withLock { $0.calls[id] == nil && !$0.abandoned.contains(id) }
  }

  /// Adds a call, or says why it cannot start. A call with a `deadline` is given up
  /// `grace` after it by ``expire(now:)`` if the server has not answered by then.
  func register(_ id: UInt32, _ call: Call, deadline: Duration? = nil, grace: Duration = .zero) -> RPCError? {
    let givesUpAt = deadline.map { NIODeadline.now() + TimeAmount($0 + grace) }
    return state.withLock { state -> RPCError? in
      if let closed = state.closed { return closed }
      if state.goingAway {
        return .unavailable("the server is shutting down (GOAWAY); open a new connection")
      }
      if state.calls.count + state.abandoned.count >= state.limit {
        return RPCError(
          code: .resourceExhausted,
          message: "\(state.limit) requests in flight, the most the server allows on one connection"
        )
      }
      state.calls[id] = Entry(call: call, givesUpAt: givesUpAt, deadline: deadline)
      return nil
    }
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
      let due = state.calls.filter { $0.value.givesUpAt.map { $0 <= now } ?? false }
      for (id, _) in due {
        state.calls[id] = nil
        state.abandoned.insert(id)
      }
      return due.map { ($0.key, $0.value) }
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
      guard let entry = state.calls.removeValue(forKey: id) else { return nil }
      state.abandoned.insert(id)
      return entry
    }
    guard let entry else { return false }
    Self.end(entry, with: .failure(error))
    return true
  }

  /// The terminal frame of call `id`.
  func complete(_ id: UInt32, with outcome: Result<WireMessage, RPCError>) {
    let entry = state.withLock { state -> Entry? in
      state.abandoned.remove(id)
      return state.calls.removeValue(forKey: id)
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
      defer {
        state.calls.removeAll()
        state.abandoned.removeAll()
        state.pings.removeAll()
      }
      return (Array(state.calls.values), Array(state.pings.values))
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
    switch entry.call {
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
}
