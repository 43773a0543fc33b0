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
  private let counts: BenchCommand.WorkerCounts
  private let done: EventLoopPromise<BenchCommand.Tally>
  private var tally = BenchCommand.Tally()
  private var inFlight = 0
  /// Per call slot (one per call kept in flight): when its current call began, and the
  /// completion it hands the client, made once so that a call allocates no closure.
  private var began: [NIODeadline] = []
  private var completions: [Completion] = []

  /// A completion in a struct: an array keeps a bare closure in its generic form, and taking
  /// it out for the client would wrap it in a new closure, an allocation per call.
  private struct Completion {
    let call: @Sendable (Result<ByteBuffer, RPCError>) -> Void
  }

  init(
    client: RPCClient,
    model: String,
    payload: ByteBuffer,
    deadline: Duration?,
    counts: BenchCommand.WorkerCounts,
    shouldStart: @escaping @Sendable () -> Bool
  ) {
    self.client = client
    self.model = model
    self.payload = payload
    self.deadline = deadline
    self.counts = counts
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
      load.makeSlots(concurrency)
      for slot in 0..<concurrency { load.startCall(slot) }
      load.finishIfIdle()
      return load.done.futureResult
    }.get()
  }

  private func makeSlots(_ count: Int) {
    let bound = NIOLoopBound(self, eventLoop: client.eventLoop)
    began = Array(repeating: .now(), count: count)
    completions = (0..<count).map { slot in
      Completion { result in bound.value.answered(result, slot: slot) }
    }
  }

  /// Starts the next call of `slot`; `now` is the time, when the caller has just read it.
  private func startCall(_ slot: Int, now: NIODeadline? = nil) {
    // The run is over: the load is done once the last call in flight has answered.
    guard shouldStart() else { return finishIfIdle() }
    inFlight += 1
    tally.issued += 1
    began[slot] = now ?? .now()
    client.predict(model: model, input: payload, deadline: deadline, completion: completions[slot].call)
  }

  private var finished = false

  private func answered(_ result: Result<ByteBuffer, RPCError>, slot: Int) {
    inFlight -= 1
    switch result {
    case .success:
      // One clock read ends this call and begins the slot's next one.
      let now = NIODeadline.now()
      _ = tally.latencies.record(UInt64(max(0, (now - began[slot]).nanoseconds / 1000)))
      tally.ok += 1
      counts.done.add(1, ordering: .relaxed)
      startCall(slot, now: now)
    case .failure(let error):
      tally.errors[error.code.name, default: 0] += 1
      tally.lastError = "\(error)"
      counts.failed.add(1, ordering: .relaxed)
      // A refused call answers at once, inside `startCall`: continue from the loop's queue
      // rather than recursing. A closed connection fails every later call: stop.
      if error.code != .unavailable {
        let bound = NIOLoopBound(self, eventLoop: client.eventLoop)
        client.eventLoop.execute { bound.value.startCall(slot) }
        return
      }
    }
    finishIfIdle()
  }

  private func finishIfIdle() {
    guard inFlight == 0, !finished else { return }
    finished = true
    // The completions refer back to this object; letting them go ends the cycle.
    completions = []
    done.succeed(tally)
  }
}
