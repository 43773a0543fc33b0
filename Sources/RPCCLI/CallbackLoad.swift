import Histogram
import NIOCore
import Synchronization
import VietnameseAIClient

/// One connection's share of `rpc-cli bench --api callback`: keeps `concurrency` predicts in
/// flight from the connection's event loop with the client's completion API, starting the
/// next call from each answer. No Swift task per call, so this measures the server and the
/// protocol rather than async/await.
///
/// Lives on its connection's loop: every method runs there.
final class CallbackLoad {
  private let client: RPCClient
  private let model: String
  private let payload: ByteBuffer
  private let deadline: Duration?
  private let shouldStart: @Sendable () -> Bool
  private let counters: BenchCommand.Counters
  private let done: EventLoopPromise<BenchCommand.Tally>
  private var tally = BenchCommand.Tally()
  private var inFlight = 0

  init(
    client: RPCClient,
    model: String,
    payload: ByteBuffer,
    deadline: Duration?,
    counters: BenchCommand.Counters,
    shouldStart: @escaping @Sendable () -> Bool
  ) {
    self.client = client
    self.model = model
    self.payload = payload
    self.deadline = deadline
    self.counters = counters
    self.shouldStart = shouldStart
    self.done = client.eventLoop.makePromise()
  }

  /// Runs until no call may start any more and the last one is answered.
  static func run(
    client: RPCClient,
    concurrency: Int,
    make: @escaping @Sendable () -> CallbackLoad
  ) async throws -> BenchCommand.Tally {
    try await client.eventLoop.flatSubmit {
      let load = make()
      for _ in 0..<concurrency { load.startCall() }
      load.finishIfIdle()
      return load.done.futureResult
    }.get()
  }

  private func startCall() {
    guard shouldStart() else { return }
    inFlight += 1
    tally.issued += 1
    let began = NIODeadline.now()
    let bound = NIOLoopBound(self, eventLoop: client.eventLoop)
    client.predict(model: model, input: payload, deadline: deadline) { result in
      bound.value.answered(result, began: began)
    }
  }

  private func answered(_ result: Result<ByteBuffer, RPCError>, began: NIODeadline) {
    inFlight -= 1
    switch result {
    case .success:
      _ = tally.latencies.record(UInt64(max(0, (NIODeadline.now() - began).nanoseconds / 1000)))
      tally.ok += 1
      counters.done.add(1, ordering: .relaxed)
      startCall()
    case .failure(let error):
      tally.errors[error.code.name, default: 0] += 1
      tally.lastError = "\(error)"
      counters.failed.add(1, ordering: .relaxed)
      // A refused call answers at once, inside `startCall`: continue from the loop's queue
      // rather than recursing. A closed connection fails every later call: stop.
      if error.code != .unavailable {
        let bound = NIOLoopBound(self, eventLoop: client.eventLoop)
        client.eventLoop.execute { bound.value.startCall() }
        return
      }
    }
    finishIfIdle()
  }

  private func finishIfIdle() {
    if inFlight == 0 { done.succeed(tally) }
  }
}
