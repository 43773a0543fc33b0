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
    var inFlight: [UInt32: Work] = [:]
    var closed = false

    mutating func allocate(_ work: Work) -> UInt32? {
      guard !closed else { return nil }
      let id = nextID
      nextID = nextID == .max ? 1 : nextID + 1
      inFlight[id] = work
      return id
    }
  }

  private enum Work {
    case batch(EventLoopPromise<[ByteBuffer]>)
    /// A generation, and what to do once its terminal frame has come.
    case stream(WorkerStream, onEnd: @Sendable () -> Void)
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
    let id = state.withLock { $0.allocate(.batch(promise)) }
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
              deadlineMilliseconds: deadline.map { max(1, WireProtocol.milliseconds(roundingUp: $0)) } ?? 0,
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
      // The batcher cancels a batch nobody waits for any more; the worker is told, and the
      // batch stays in flight until the worker's answer, since the worker is busy until then.
      return try await withTaskCancellationHandler {
        try await promise.futureResult.get()
      } onCancel: { [self] in
        write(WorkerFrame(requestID: id, message: .cancelWork))
      }
    } catch let error as ServingError {
      throw error
    } catch {
      throw ServingError(.unavailable, "the worker \(workerName) failed: \(error)")
    }
  }

  /// Starts a generation of `generator` on the worker; `onEnd` runs once its terminal frame
  /// (or the connection's end) has come.
  func generate(generator: String, prompt: String, onEnd: @escaping @Sendable () -> Void) -> WorkerStream {
    // The stream is made with its id, under the lock that allocates the id.
    let started = state.withLock { state -> (UInt32, WorkerStream)? in
      guard !state.closed else { return nil }
      let id = state.nextID
      let stream = WorkerStream { [self] message in write(WorkerFrame(requestID: id, message: message)) }
      _ = state.allocate(.stream(stream, onEnd: onEnd))
      return (id, stream)
    }
    guard let (id, stream) = started else {
      let stream = WorkerStream { _ in }
      stream.finish(.failure(ServingError(.unavailable, "the worker \(workerName) is gone")))
      onEnd()
      return stream
    }
    let limits = GenerationLimits.current
    let generate = WorkerMessage.Generate(
      deadlineMilliseconds: limits?.deadline.map { max(1, WireProtocol.milliseconds(roundingUp: $0 - .now)) }
        ?? 0,
      generator: generator,
      prompt: prompt,
      maxTokens: limits?.maxTokens.map { UInt32(clamping: $0) } ?? 0,
      window: WorkerStream.window,
      stops: limits?.stops ?? []
    )
    if !write(WorkerFrame(requestID: id, message: .generate(generate))) {
      end(id, .failure(ServingError(.invalidArgument, "the prompt does not fit a frame")))
    }
    return stream
  }

  /// Asks the worker to finish its work in flight and close (`SHUTDOWN`).
  func shutDown(grace: Duration) {
    write(
      WorkerFrame(
        requestID: 0,
        message: .shutdown(graceMilliseconds: WireProtocol.milliseconds(roundingUp: grace))
      )
    )
  }

  @discardableResult
  private func write(_ frame: WorkerFrame) -> Bool {
    var buffer = channel.allocator.buffer(capacity: 64)
    do {
      try WorkerFrameCodec.encode(frame, into: &buffer)
    } catch {
      return false
    }
    channel.writeAndFlush(buffer, promise: nil)
    return true
  }

  /// A batch's terminal frame; `false` if no batch of that id is in flight.
  @discardableResult
  func finish(_ id: UInt32, _ result: Result<[ByteBuffer], ServingError>) -> Bool {
    let work = state.withLock { state -> Work? in
      guard case .batch = state.inFlight[id] else { return nil }
      return state.inFlight.removeValue(forKey: id)
    }
    guard case .batch(let promise)? = work else { return false }
    promise.completeWith(result.mapError { $0 as any Error })
    return true
  }

  /// Tokens of a generation; `false` if no generation of that id is in flight, or the worker
  /// sent beyond its credit.
  func tokens(_ id: UInt32, _ texts: [String]) -> Bool {
    guard case .stream(let stream, _)? = state.withLock({ $0.inFlight[id] }) else { return false }
    return stream.deliver(texts)
  }

  /// A generation's terminal frame; `false` if no generation of that id is in flight.
  @discardableResult
  func end(_ id: UInt32, _ result: Result<Void, ServingError>) -> Bool {
    let work = state.withLock { state -> Work? in
      guard case .stream = state.inFlight[id] else { return nil }
      return state.inFlight.removeValue(forKey: id)
    }
    guard case .stream(let stream, let onEnd)? = work else { return false }
    stream.finish(result)
    onEnd()
    return true
  }

  /// The terminal `ERROR` of any work.
  func fail(_ id: UInt32, _ error: ServingError) -> Bool {
    finish(id, .failure(error)) || end(id, .failure(error))
  }

  /// Whether work is in flight.
  var isBusy: Bool { state.withLock { !$0.inFlight.isEmpty } }

  /// The connection ended: everything in flight is answered `UNAVAILABLE`, nothing more is
  /// sent.
  func closed(reason: String) {
    let work = state.withLock { state in
      state.closed = true
      defer { state.inFlight = [:] }
      return Array(state.inFlight.values)
    }
    let error = ServingError(.unavailable, "the worker \(workerName) was lost: \(reason)")
    for item in work {
      switch item {
      case .batch(let promise):
        promise.fail(error)
      case .stream(let stream, let onEnd):
        stream.finish(.failure(error))
        onEnd()
      }
    }
  }
}
