import Hummingbird
import NIOCore
@_spi(Locking) import VietnameseAIConcurrency

/// Runs each request's handler on its connection's event loop, when the server runs its work
/// on the loops (the default; not with `--pool-executor`).
///
/// A connection's Hummingbird task runs where Swift's global executor puts it, not necessarily
/// on the connection's loop; the handler's reads, its answer and the batch it waits for may
/// then each cross between threads. Pinning the handler to the connection's loop keeps them
/// on one.
struct LoopAffinity: RouterMiddleware {
  private let executors: [ObjectIdentifier: LoopTaskExecutor]

  init(group: any EventLoopGroup) {
    var executors: [ObjectIdentifier: LoopTaskExecutor] = [:]
    for loop in group.makeIterator() { executors[ObjectIdentifier(loop)] = LoopTaskExecutor(loop: loop) }
    self.executors = executors
  }

  func handle(_ request: Request, context: DoorContext, next: (Request, DoorContext) async throws -> Response)
    async throws -> Response
  {
    guard let executor = executors[ObjectIdentifier(context.channel.eventLoop)] else {
      return try await next(request, context)
    }
    return try await withTaskExecutorPreference(executor) { try await next(request, context) }
  }
}
