import NIOCore
@_spi(Locking) import VietnameseAIConcurrency

/// The workers that serve one model: each batch goes to an idle one, so that several
/// workers run batches side by side (`Protocol/PROTOCOL.md` §11.2).
final class WorkerPool: Sendable {
  let name: String
  private let state = Locked(State())

  private struct State {
    var links: [ObjectIdentifier: WorkerLink] = [:]
    var idle: [WorkerLink] = []
    var waiters: [CheckedContinuation<WorkerLink?, Never>] = []
  }

  init(name: String) {
    self.name = name
  }

  /// Whether a worker is connected: the model's readiness.
  var isReady: Bool { state.withLock { !$0.links.isEmpty } }

  var workerCount: Int { state.withLock { $0.links.count } }

  func add(_ link: WorkerLink) {
    let waiter = state.withLock { state -> CheckedContinuation<WorkerLink?, Never>? in
      state.links[ObjectIdentifier(link)] = link
      if !state.waiters.isEmpty { return state.waiters.removeFirst() }
      state.idle.append(link)
      return nil
    }
    waiter?.resume(returning: link)
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
