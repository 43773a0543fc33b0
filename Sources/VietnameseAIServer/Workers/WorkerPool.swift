import NIOCore
@_spi(Locking) import VietnameseAIConcurrency
import VietnameseAIWire

/// The workers that serve one model or generator: each batch or generation goes to a worker
/// with room for it (a model's worker takes one batch at a time, a generator's worker its
/// declared number of streams), so that several workers run side by side
/// (`Protocol/PROTOCOL.md` §11.2).
final class WorkerPool: Sendable {
  let name: String
  private let state = Locked(State())
  /// Told the number of workers whenever it changes; calls are serialized by this lock, and
  /// each reads the number afresh, so the last call always tells the current one.
  private let capacityObserver = Locked<(@Sendable (Int) -> Void)?>(nil)

  private struct State {
    var links: [ObjectIdentifier: WorkerLink] = [:]
    /// Each link once per piece of work it has room for.
    var idle: [WorkerLink] = []
    var waiters: [CheckedContinuation<WorkerLink?, Never>] = []
  }

  init(name: String) {
    self.name = name
  }

  /// Whether a worker is connected: the model's readiness.
  var isReady: Bool { state.withLock { !$0.links.isEmpty } }

  var workerCount: Int { state.withLock { $0.links.count } }

  /// Calls `observer` with the number of workers now and whenever it changes: a model's
  /// batcher runs as many batches at once as it has workers.
  func observeCapacity(_ observer: @escaping @Sendable (Int) -> Void) {
    capacityObserver.withLock { stored in
      stored = observer
      observer(workerCount)
    }
  }

  private func capacityChanged() {
    capacityObserver.withLock { observer in observer?(workerCount) }
  }

  func add(_ link: WorkerLink) {
    let declared = link.declarations.first { $0.name == name }
    let room = declared?.kind == .generator ? max(1, Int(declared?.concurrency ?? 1)) : 1
    state.withLock { $0.links[ObjectIdentifier(link)] = link }
    for _ in 0..<room { release(link) }
    capacityChanged()
  }

  func remove(_ link: WorkerLink) {
    let orphans = state.withLock { state -> [CheckedContinuation<WorkerLink?, Never>] in
      state.links[ObjectIdentifier(link)] = nil
      state.idle.removeAll { $0 === link }
      guard state.links.isEmpty else { return [] }
      defer { state.waiters = [] }
      return state.waiters
    }
    for waiter in orphans { waiter.resume(returning: nil) }
    capacityChanged()
  }

  /// Runs `inputs` as one batch on an idle worker, waiting for one while all are busy.
  ///
  /// - Throws: ``ServingError``: the worker's, or `UNAVAILABLE` when no worker is connected.
  func run(_ inputs: [ByteBuffer], deadline: Duration?) async throws(ServingError) -> [ByteBuffer] {
    guard let link = await acquire() else {
      throw ServingError(.unavailable, "model \(name) has no worker ready")
    }
    defer { release(link) }
    return try await link.runBatch(model: name, inputs: inputs, deadline: deadline)
  }

  /// Starts a generation of `prompt` on a worker with room for it.
  ///
  /// - Throws: ``ServingError`` `UNAVAILABLE` when no worker is connected.
  func generate(_ prompt: String) async throws(ServingError) -> WorkerStream {
    guard let link = await acquire() else {
      throw ServingError(.unavailable, "generator \(name) has no worker ready")
    }
    return link.generate(generator: name, prompt: prompt) { [self] in release(link) }
  }

  private func acquire() async -> WorkerLink? {
    await withCheckedContinuation { (continuation: CheckedContinuation<WorkerLink?, Never>) in
      let now = state.withLock { state -> WorkerLink?? in
        if let link = state.idle.popLast() { return .some(link) }
        if state.links.isEmpty { return .some(nil) }
        state.waiters.append(continuation)
        return .none
      }
      if case .some(let link) = now { continuation.resume(returning: link) }
    }
  }

  private func release(_ link: WorkerLink) {
    let waiter = state.withLock { state -> CheckedContinuation<WorkerLink?, Never>? in
      guard state.links[ObjectIdentifier(link)] != nil else { return nil }
      if !state.waiters.isEmpty { return state.waiters.removeFirst() }
      state.idle.append(link)
      return nil
    }
    waiter?.resume(returning: link)
  }
}
