import NIOCore
@_spi(Locking) import VietnameseAIConcurrency
import VietnameseAIWire

/// One worker's connection after its handshake: the work in flight on it, and how to send
/// more (`Protocol/PROTOCOL.md` §11).
///
/// Every piece of work gets exactly one answer: the worker's terminal frame, or `UNAVAILABLE`
/// when the connection ends first.
final class WorkerLink: Sendable {
  /// The worker's name, for logs.
  let workerName: String
  let declarations: [WorkerMessage.Declaration]
  let channel: any Channel
  private let state = Locked(State())

  private struct State {
    var nextID: UInt32 = 1
    var inFlight: [UInt32: EventLoopPromise<[ByteBuffer]>] = [:]
    var closed = false
  }

  init(workerName: String, declarations: [WorkerMessage.Declaration], channel: any Channel) {
    self.workerName = workerName
    self.declarations = declarations
    self.channel = channel
  }

  /// Runs one batch of `model` on the worker.
  ///
  /// - Throws: ``ServingError``: the worker's error, or `UNAVAILABLE` if the connection ended
  ///   before the answer.
  func runBatch(model: String, inputs: [ByteBuffer], deadline: Duration?) async throws(ServingError)
    -> [ByteBuffer]
  {
    let promise = channel.eventLoop.makePromise(of: [ByteBuffer].self)
    let id = state.withLock { state -> UInt32? in
      guard !state.closed else { return nil }
      let id = state.nextID
      state.nextID = state.nextID == .max ? 1 : state.nextID + 1
      state.inFlight[id] = promise
      return id
    }
    guard let id else {
      promise.fail(ServingError(.unavailable, "the worker \(workerName) is gone"))
      throw ServingError(.unavailable, "the worker \(workerName) of model \(model) is gone")
    }
    var frame = channel.allocator.buffer(capacity: 64 + inputs.reduce(0) { $0 + 4 + $1.readableBytes })
    do {
      try WorkerFrameCodec.encode(
        WorkerFrame(
          requestID: id,
          message: .runBatch(
            .init(
              deadlineMilliseconds: deadline.map { WireProtocol.milliseconds(roundingUp: $0) } ?? 0,
              model: model,
              inputs: inputs
            )
          )
        ),
        into: &frame
      )
    } catch {
      finish(id, .failure(ServingError(.invalidArgument, error.message)))
    }
    if frame.readableBytes > 0 { channel.writeAndFlush(frame, promise: nil) }
    do {
      return try await promise.futureResult.get()
    } catch let error as ServingError {
      throw error
    } catch {
      throw ServingError(.unavailable, "the worker \(workerName) failed: \(error)")
    }
  }

  /// A terminal frame for `id` from the worker; `false` if no work of that id is in flight.
  @discardableResult
  func finish(_ id: UInt32, _ result: Result<[ByteBuffer], ServingError>) -> Bool {
    guard let promise = state.withLock({ $0.inFlight.removeValue(forKey: id) }) else { return false }
    promise.completeWith(result.mapError { $0 as any Error })
    return true
  }

  /// Whether work is in flight.
  var isBusy: Bool { state.withLock { !$0.inFlight.isEmpty } }

  /// The connection ended: everything in flight is answered `UNAVAILABLE`, nothing more is
  /// sent.
  func closed(reason: String) {
    let promises = state.withLock { state in
      state.closed = true
      defer { state.inFlight = [:] }
      return Array(state.inFlight.values)
    }
    let error = ServingError(.unavailable, "the worker \(workerName) was lost: \(reason)")
    for promise in promises { promise.fail(error) }
  }
}
