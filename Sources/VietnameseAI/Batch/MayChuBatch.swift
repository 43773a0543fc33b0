import NIOCore
import Synchronization
@_spi(Locking) import VietnameseAIConcurrency

/// A dynamic batching server: gathers single requests into batches for a model.
///
/// Callers ask for one prediction at a time with ``duDoan(_:deadline:)``; the server queues
/// them and hands the model a batch when it holds ``kichThuocBatch`` requests, or when
/// ``timeoutBatch`` has passed since the batch's first request arrived, whichever comes first.
/// Up to ``soWorker`` batches run at once. A model that computes a batch in one go (a GPU, a
/// vectorised kernel) then serves many callers for nearly the price of one.
///
/// ```swift
/// let server = MayChuBatch(moHinh: model, kichThuocBatch: 32, timeoutBatch: .milliseconds(100), soWorker: 2)
/// try server.batDau()
/// let ketQua = try await server.duDoan(dauVao)
/// let ketQuaBatch = try await server.duDoanBatch([a, b, c])
/// await server.dung()
/// print(server.layThongKe().latencyP50)
/// ```
///
/// Guarantees:
/// - Every accepted request is answered exactly once: a result, or a ``VietnameseAIError``, or
///   `CancellationError` if its caller was cancelled.
/// - The queue never holds more than ``toiDaCho`` requests; beyond that a request fails at once
///   with ``VietnameseAIError/Code/queueFull``. Nothing blocks and nothing is dropped silently.
/// - A request whose deadline passes while it waits is never handed to the model.
/// - ``dung()`` stops intake, then waits until every queued request has been answered.
public final class MayChuBatch<DauVao: Sendable, KetQua: Sendable>: Sendable {
  /// A batch predict function: one output per input, in the same order.
  public typealias HamDuDoan = @Sendable ([DauVao]) async throws -> [KetQua]

  /// The largest batch handed to the model.
  public let kichThuocBatch: Int
  /// How long a batch may wait for more requests after its first one arrived. Zero runs
  /// whatever is queued as soon as a worker is free.
  public let timeoutBatch: Duration
  /// How many batches may run at once.
  public let soWorker: Int
  /// The most requests that may wait in the queue.
  public let toiDaCho: Int

  private let hamDuDoan: HamDuDoan
  private let clock: InjectedClock
  private let state: Locked<State>
  private let nextTicket = Atomic<UInt64>(1)
  private let observer = Locked<BatchObserver?>(nil)

  /// Creates a batching server for a model.
  ///
  /// - Parameters:
  ///   - moHinh: The model. Its ``MoHinh/duDoanBatch(_:)`` receives every batch unless
  ///     `hamDuDoan` is given.
  ///   - kichThuocBatch: The largest batch (default 32).
  ///   - timeoutBatch: How long to gather a batch (default 0.1 s).
  ///   - soWorker: Batches that may run at once (default 1).
  ///   - toiDaCho: Requests that may wait (default 1000).
  ///   - hamDuDoan: A custom batch function that replaces the model's.
  ///   - clock: Where time comes from; tests pass a test clock.
  public convenience init<M: MoHinh>(
    moHinh: M,
    kichThuocBatch: Int = 32,
    timeoutBatch: Duration = .milliseconds(100),
    soWorker: Int = 1,
    toiDaCho: Int = 1000,
    hamDuDoan: HamDuDoan? = nil,
    clock: some Clock<Duration> = ContinuousClock()
  ) where M.DauVao == DauVao, M.KetQua == KetQua {
    self.init(
      hamDuDoan: hamDuDoan ?? { try await moHinh.duDoanBatch($0) },
      kichThuocBatch: kichThuocBatch,
      timeoutBatch: timeoutBatch,
      soWorker: soWorker,
      toiDaCho: toiDaCho,
      clock: clock
    )
  }

  /// Creates a batching server around a batch predict function alone.
  ///
  /// The parameters are those of ``init(moHinh:kichThuocBatch:timeoutBatch:soWorker:toiDaCho:hamDuDoan:clock:)``.
  /// They are checked by ``batDau()``, which throws ``VietnameseAIError/Code/invalidArgument``
  /// for a value out of range.
  public init(
    hamDuDoan: @escaping HamDuDoan,
    kichThuocBatch: Int = 32,
    timeoutBatch: Duration = .milliseconds(100),
    soWorker: Int = 1,
    toiDaCho: Int = 1000,
    clock: some Clock<Duration> = ContinuousClock()
  ) {
    self.hamDuDoan = hamDuDoan
    self.kichThuocBatch = kichThuocBatch
    self.timeoutBatch = timeoutBatch
    self.soWorker = soWorker
    self.toiDaCho = toiDaCho
    self.clock = InjectedClock(clock)
    self.state = Locked(
      State(
        kichThuocBatch: kichThuocBatch,
        timeoutBatch: timeoutBatch.nanoseconds,
        soWorker: soWorker,
        toiDaCho: toiDaCho
      )
    )
  }

  // MARK: Lifecycle

  /// Starts accepting requests.
  ///
  /// A stopped server may be started again.
  ///
  /// - Throws: ``VietnameseAIError/Code/invalidArgument`` if a parameter is out of range,
  ///   ``VietnameseAIError/Code/alreadyRunning`` if the server is running or still stopping.
  public func batDau() throws(VietnameseAIError) {
    try Self.validate(
      kichThuocBatch: kichThuocBatch,
      timeoutBatch: timeoutBatch,
      soWorker: soWorker,
      toiDaCho: toiDaCho
    )
    let now = clock.nowNanoseconds()
    try state.withLock { state throws(VietnameseAIError) in
      switch state.lifecycle {
      case .idle, .stopped:
        state.lifecycle = .running
        if state.batchesRun == 0 && state.requestsTotal == 0 { state.startedAt = now }
      case .running, .stopping:
        throw VietnameseAIError(code: .alreadyRunning, message: "MayChuBatch is already running")
      }
    }
  }

  /// Checks batching parameters without building a server, for command-line front ends.
  ///
  /// - Throws: ``VietnameseAIError/Code/invalidArgument`` naming the first bad parameter.
  public static func validate(
    kichThuocBatch: Int,
    timeoutBatch: Duration,
    soWorker: Int,
    toiDaCho: Int
  ) throws(VietnameseAIError) {
    func bad(_ message: String) -> VietnameseAIError {
      VietnameseAIError(code: .invalidArgument, message: message)
    }
    guard kichThuocBatch >= 1 else { throw bad("kichThuocBatch must be at least 1, got \(kichThuocBatch)") }
    guard timeoutBatch >= .zero else { throw bad("timeoutBatch must not be negative, got \(timeoutBatch)") }
    guard soWorker >= 1 else { throw bad("soWorker must be at least 1, got \(soWorker)") }
    guard toiDaCho >= 1 else { throw bad("toiDaCho must be at least 1, got \(toiDaCho)") }
  }

  /// Stops accepting requests, lets every queued request finish, then returns.
  ///
  /// Requests arriving after this call fail with ``VietnameseAIError/Code/notRunning``. Queued
  /// requests no longer wait for ``timeoutBatch``: they run as soon as a worker is free.
  public func dung() async {
    let actions = state.withLock { $0.beginStopping(now: clock.nowNanoseconds()) }
    perform(actions)
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
      let done = state.withLock { state -> Bool in
        switch state.lifecycle {
        case .stopping:
          state.stopWaiters.append(continuation)
          return false
        case .idle, .running, .stopped:
          return true
        }
      }
      if done { continuation.resume() }
    }
  }

  // MARK: Predicting

  /// Predicts one input, batched with other callers' inputs.
  ///
  /// - Parameters:
  ///   - dauVao: The input.
  ///   - deadline: How long the caller is willing to wait, from now. A request still queued
  ///     when it passes is removed and never reaches the model; one being computed fails at the
  ///     deadline (its result is discarded). `nil` waits as long as it takes.
  /// - Returns: The model's output for this input.
  /// - Throws: ``VietnameseAIError`` (`queueFull`, `notRunning`, `deadlineExceeded`,
  ///   `modelFailed`, `invalidBatchOutput`), or `CancellationError` if the caller's task is
  ///   cancelled.
  @_specialize(exported:true,where DauVao == String, KetQua == String)
  @_specialize(exported:true,where DauVao == [UInt8], KetQua == [UInt8])
  @_specialize(exported:true,where DauVao == ByteBuffer, KetQua == ByteBuffer)
  public func duDoan(_ dauVao: DauVao, deadline: Duration? = nil) async throws -> KetQua {
    let id = nextTicket.wrappingAdd(1, ordering: .relaxed).oldValue
    return try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<KetQua, any Error>) in
        submit(
          ticket: id,
          waiter: .single { continuation.resume(with: $0) },
          inputs: CollectionOfOne(dauVao),
          deadline: deadline
        )
        // A cancellation that raced with the insertion above found no ticket; catch it here.
        if Task.isCancelled { cancel(ticket: id) }
      }
    } onCancel: {
      cancel(ticket: id)
    }
  }

  /// Predicts several inputs and returns their outputs in the same order.
  ///
  /// The inputs enter the queue together (all or none) and may be spread over several
  /// batches. If any of them fails, the call fails with that error and the rest are withdrawn.
  ///
  /// - Throws: as ``duDoan(_:deadline:)``; ``VietnameseAIError/Code/invalidArgument`` if there
  ///   are more inputs than the queue can ever hold.
  @_specialize(exported:true,where DauVao == String, KetQua == String)
  @_specialize(exported:true,where DauVao == [UInt8], KetQua == [UInt8])
  @_specialize(exported:true,where DauVao == ByteBuffer, KetQua == ByteBuffer)
  public func duDoanBatch(_ dauVao: [DauVao], deadline: Duration? = nil) async throws -> [KetQua] {
    if dauVao.isEmpty { return [] }
    let id = nextTicket.wrappingAdd(1, ordering: .relaxed).oldValue
    return try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[KetQua], any Error>) in
        submit(
          ticket: id,
          waiter: .group({ continuation.resume(with: $0) }, State.GroupResults(count: dauVao.count)),
          inputs: dauVao,
          deadline: deadline
        )
        if Task.isCancelled { cancel(ticket: id) }
      }
    } onCancel: {
      cancel(ticket: id)
    }
  }

  /// One request for ``submitAll(_:sink:)``. A struct, not a tuple: a tuple with an optional
  /// inside is copied and destroyed through its runtime type metadata.
  ///
  /// Small on purpose: the input and two 32-bit words. The deadline is whole milliseconds
  /// from now, 0 for none, as a network front end reads it: an optional `Duration` would make
  /// the struct large enough to be copied through its value witness, and converting a
  /// `Duration` divides 128 bits.
  ///
  /// SPI with an inlinable initializer, so that a front end in another module builds it in
  /// place, specialised: a `package` initializer is not inlined across modules.
  @_spi(Batching)
  public struct Submission {
    public var input: DauVao
    public var deadlineMilliseconds: UInt32
    public var tag: UInt32

    @inlinable
    public init(input: DauVao, deadlineMilliseconds: UInt32, tag: UInt32) {
      self.input = input
      self.deadlineMilliseconds = deadlineMilliseconds
      self.tag = tag
    }
  }

  /// Queues the requests a network front end read together, each answered through `sink`
  /// under its tag, under one lock: no task and no closure per request. A request refused at
  /// once (queue full, deadline passed) is answered through the sink too, outside the lock.
  ///
  /// - Returns: The requests' tickets, in order, for ``cancel(ticket:)``.
  @_specialize(exported:true,where DauVao == String, KetQua == String)
  @_specialize(exported:true,where DauVao == [UInt8], KetQua == [UInt8])
  @_specialize(exported:true,where DauVao == ByteBuffer, KetQua == ByteBuffer)
  package func submitAll(_ requests: [Submission], sink: BatchSink<KetQua>) -> Range<UInt64> {
    let first = nextTicket.wrappingAdd(UInt64(requests.count), ordering: .relaxed).oldValue
    let now = clock.nowNanoseconds()
    let actions = state.withLock { state in
      var actions = State.Actions()
      for offset in requests.indices {
        state.accept(
          ticket: first &+ UInt64(offset),
          waiter: .tagged(sink, tag: requests[offset].tag),
          inputs: CollectionOfOne(requests[offset].input),
          deadline: Self.deadline(milliseconds: requests[offset].deadlineMilliseconds, after: now),
          now: now,
          into: &actions
        )
        // As if submitted one by one: a free worker takes the first at once, so the queue
        // bound counts the same requests as waiting. The batch tops up with the rest when
        // its task starts.
        state.dispatch(now: now, into: &actions)
      }
      return actions
    }
    perform(actions)
    return first..<(first &+ UInt64(requests.count))
  }

  /// Predicts several inputs, as ``duDoanBatch(_:deadline:)``, and hands the outcome to
  /// `completion` instead of suspending a task. `completion` runs exactly once, outside any
  /// lock, on whatever thread finished the ticket (possibly before this method returns, if
  /// the request is refused at once).
  ///
  /// `lane` and `executor` are as a ``BatchSink``'s: a caller on an event loop queues in its
  /// loop's lane, whose batches run on the loop, so that the answer needs no hop back.
  ///
  /// - Returns: The ticket, for ``cancel(ticket:)``.
  @_specialize(exported:true,where DauVao == String, KetQua == String)
  @_specialize(exported:true,where DauVao == [UInt8], KetQua == [UInt8])
  @_specialize(exported:true,where DauVao == ByteBuffer, KetQua == ByteBuffer)
  @discardableResult
  package func submitBatch(
    _ dauVao: [DauVao],
    deadline: Duration?,
    lane: Int = 0,
    executor: (any TaskExecutor)? = nil,
    completion: @escaping @Sendable (Result<[KetQua], any Error>) -> Void
  ) -> UInt64 {
    let id = nextTicket.wrappingAdd(1, ordering: .relaxed).oldValue
    if dauVao.isEmpty {
      completion(.success([]))
      return id
    }
    submit(
      ticket: id,
      waiter: .group(completion, State.GroupResults(count: dauVao.count)),
      inputs: dauVao,
      deadline: deadline,
      lane: lane,
      executor: executor
    )
    return id
  }

  /// Whether the server accepts requests: started and not stopping.
  public var dangChay: Bool {
    state.withLock { $0.lifecycle == .running }
  }

  /// The current statistics.
  public func layThongKe() -> ThongKeBatch {
    let now = clock.nowNanoseconds()
    return state.withLock { $0.snapshot(now: now) }
  }

  /// Entries in the deadline queue, stale ones included; tests check that it stays bounded.
  var deadlineEntries: Int { state.withLock { $0.deadlines.count } }

  // MARK: Internals

  private func submit(
    ticket id: UInt64,
    waiter: State.Waiter,
    inputs: some Collection<DauVao> & Sendable,
    deadline: Duration?,
    lane: Int = 0,
    executor: (any TaskExecutor)? = nil
  ) {
    let now = clock.nowNanoseconds()
    let deadlineAt = deadline.map { now.addingSaturating($0.nanoseconds) }
    let actions = state.withLock { state in
      var actions = State.Actions()
      state.accept(
        ticket: id,
        waiter: waiter,
        inputs: inputs,
        deadline: deadlineAt,
        now: now,
        lane: lane,
        executor: executor,
        into: &actions
      )
      state.dispatch(now: now, into: &actions)
      return actions
    }
    perform(actions)
  }

  /// Withdraws a ticket: its queued items never reach the model and its waiter receives
  /// `CancellationError`. A ticket that has already been answered is left alone.
  ///
  /// Not prespecialised: the prespecialised `duDoan` calls it, and the compiler then expects a
  /// symbol for the prespecialisation that it does not emit in release builds.
  package func cancel(ticket id: UInt64) {
    let actions = state.withLock { $0.cancel(ticket: id) }
    perform(actions)
  }

  private func timerFired(generation: UInt64) {
    let actions = state.withLock { $0.timerFired(generation: generation, now: clock.nowNanoseconds()) }
    perform(actions)
  }

  /// Carries out what a state transition asked for, outside the lock.
  private func perform(_ actions: State.Actions) {
    if actions.isEmpty { return }
    for task in actions.cancelTasks { task.cancel() }
    // New batches start before the answers are handed out: a batch for another event loop's
    // lane then runs there while this thread answers, rather than after it.
    for (id, batch, executor) in actions.batches {
      let task = Task(executorPreference: executor) { await self.run(batch, id: id) }
      if let unwanted = state.withLock({ $0.attach(batchTask: task, id: id) }) { unwanted.cancel() }
    }
    for resumption in actions.resumptions { resumption.resume() }
    for group in actions.sinkOutcomes { group.sink.deliver(group.outcomes) }
    if let (due, generation) = actions.armTimer {
      let timer = Task { [clock] in
        guard (try? await clock.sleep(untilNanoseconds: due)) != nil else { return }
        self.timerFired(generation: generation)
      }
      if let old = state.withLock({ $0.attach(timer: timer, generation: generation) }) { old.cancel() }
    }
  }

  /// Lets `soWorker` batches run at once from now on (at least 1), for a model whose workers
  /// come and go; ``soWorker`` keeps the number it was created with.
  package func resize(soWorker: Int) {
    let actions = state.withLock { $0.resize(soWorker: soWorker, now: clock.nowNanoseconds()) }
    perform(actions)
  }

  /// Hands a report of every batch run from now on to `observer`, on the thread that ran the
  /// batch, after its requests are answered. One observer at a time; a metrics exporter.
  package func observe(_ observer: @escaping @Sendable (BatchReport) -> Void) {
    let box = BatchObserver(report: observer)
    self.observer.withLock { $0 = box }
  }

  /// Runs one batch on the model and answers its requests.
  ///
  /// The task is cancelled if every request in the batch ends first (cancelled, or past its
  /// deadline): a model that honours cancellation then gives its worker back at once.
  private func run(_ batch: [State.Item], id: UInt64) async {
    var batch = batch
    // One lock: the batch takes what arrived since it was formed, and the latest deadline of
    // its requests, for a model that can stop (a worker told its deadline in RUN_BATCH).
    let now = clock.nowNanoseconds()
    let (toppedUp, latest) = state.withLock { state in
      let actions = batch.count < kichThuocBatch ? state.topUp(&batch, id: id, now: now) : State.Actions()
      return (actions, state.latestDeadline(of: batch))
    }
    perform(toppedUp)
    if Task.isCancelled {
      // Every request of the batch ended before it started: do not bother the model.
      let actions = state.withLock {
        $0.complete(batch: batch, id: id, result: .failure(Self.abandoned), now: clock.nowNanoseconds())
      }
      perform(actions)
      return
    }
    let inputs = batch.map(\.input)
    let result: Result<[KetQua], VietnameseAIError>
    let observer = self.observer.withLock { $0 }
    let started = observer == nil ? 0 : clock.nowNanoseconds()
    do {
      let outputs: [KetQua]
      if let latest {
        let remaining = Duration.nanoseconds(max(latest - clock.nowNanoseconds(), 0))
        outputs = try await BatchDeadline.$remaining.withValue(remaining) { try await hamDuDoan(inputs) }
      } else {
        outputs = try await hamDuDoan(inputs)
      }
      if outputs.count == inputs.count {
        result = .success(outputs)
      } else {
        result = .failure(
          VietnameseAIError(
            code: .invalidBatchOutput,
            message: "the batch function returned \(outputs.count) outputs for \(inputs.count) inputs"
          )
        )
      }
    } catch {
      result = .failure(
        VietnameseAIError(code: .modelFailed, message: "the model failed on this batch", cause: error)
      )
    }
    let ended = clock.nowNanoseconds()
    let actions = state.withLock {
      $0.complete(batch: batch, id: id, result: result, now: ended)
    }
    perform(actions)
    if let observer {
      var succeeded = true
      if case .failure = result { succeeded = false }
      observer.report(
        BatchReport(
          size: batch.count,
          queueNanoseconds: batch.map { max(started - $0.arrival, 0) },
          computeNanoseconds: ended - started,
          succeeded: succeeded
        )
      )
    }
  }
}

extension MayChuBatch {
  /// The outcome of a batch that nobody waited for; it reaches no caller.
  static var abandoned: VietnameseAIError {
    VietnameseAIError(code: .modelFailed, message: "the batch was abandoned by all its callers")
  }
}

extension MayChuBatch {
  /// The clock reading at which a deadline of `milliseconds` from `now` passes; `nil` for 0,
  /// which means none.
  @inline(__always)
  static func deadline(milliseconds: UInt32, after now: Int64) -> Int64? {
    milliseconds == 0 ? nil : now.addingSaturating(Int64(milliseconds) * 1_000_000)
  }
}

extension Int64 {
  /// `self + other`, clamped to `Int64.max` instead of trapping on overflow.
  func addingSaturating(_ other: Int64) -> Int64 {
    let (sum, overflow) = addingReportingOverflow(other)
    return overflow ? (other > 0 ? .max : .min) : sum
  }
}
