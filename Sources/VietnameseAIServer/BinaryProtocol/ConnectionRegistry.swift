import NIOCore
import Synchronization
@_spi(Locking) import VietnameseAIConcurrency

/// The server's open binary-protocol connections: it enforces the connection limit and reaches
/// every connection when the server drains or gives up draining.
final class ConnectionRegistry: Sendable {
  /// What a new connection is told.
  enum Admission: Equatable {
    case accepted
    /// The server already holds its maximum of connections.
    case full(limit: Int)
    /// The server is shutting down.
    case draining
  }

  private struct Entry {
    var eventLoop: any EventLoop
    var handler: NIOLoopBound<BinaryConnectionHandler>
  }

  private struct State {
    var entries: [ObjectIdentifier: Entry] = [:]
    var draining = false
    var nextWaiter: UInt64 = 0
    var emptyWaiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
  }

  let limit: Int
  private let state = Locked(State())
  /// Connection handlers in memory, closed or not: one that outlives its connection is a leak,
  /// which tests look for here.
  private let handlers = Atomic<Int>(0)

  init(limit: Int) {
    self.limit = limit
  }

  /// Registers a connection that has just become active.
  func add(
    _ handler: NIOLoopBound<BinaryConnectionHandler>,
    id: ObjectIdentifier,
    on eventLoop: any EventLoop
  ) -> Admission {
    state.withLock { state in
      if state.draining { return .draining }
      if state.entries.count >= limit { return .full(limit: limit) }
      state.entries[id] = Entry(eventLoop: eventLoop, handler: handler)
      return .accepted
    }
  }

  func remove(id: ObjectIdentifier) {
    let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
      state.entries.removeValue(forKey: id)
      guard state.entries.isEmpty else { return [] }
      defer { state.emptyWaiters.removeAll() }
      return Array(state.emptyWaiters.values)
    }
    for waiter in waiters { waiter.resume() }
  }

  /// Returns once no connection is open, or when the calling task is cancelled.
  func waitUntilEmpty() async {
    let id = state.withLock { state in
      state.nextWaiter &+= 1
      return state.nextWaiter
    }
    await withTaskCancellationHandler {
      await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let done = state.withLock { state -> Bool in
          if state.entries.isEmpty || Task.isCancelled { return true }
          state.emptyWaiters[id] = continuation
          return false
        }
        if done { continuation.resume() }
      }
    } onCancel: {
      state.withLock { $0.emptyWaiters.removeValue(forKey: id) }?.resume()
    }
  }

  /// Connections open now.
  var count: Int {
    state.withLock { $0.entries.count }
  }

  /// Tells every connection to drain: `GOAWAY`, finish what is in flight, close. Connections
  /// accepted from now on are drained at once.
  func drainAll() {
    let entries = state.withLock { state in
      state.draining = true
      return Array(state.entries.values)
    }
    for entry in entries {
      entry.eventLoop.execute { entry.handler.value.beginDrain() }
    }
  }

  /// Ends every connection now: requests still in flight are answered `UNAVAILABLE`.
  func closeAll() {
    let entries = state.withLock { Array($0.entries.values) }
    for entry in entries {
      entry.eventLoop.execute { entry.handler.value.closeNow() }
    }
  }

  // MARK: Leak accounting

  func handlerCreated() {
    handlers.add(1, ordering: .relaxed)
  }

  func handlerReleased() {
    handlers.subtract(1, ordering: .relaxed)
  }

  /// Connection handlers in memory.
  var liveHandlers: Int {
    handlers.load(ordering: .relaxed)
  }
}
