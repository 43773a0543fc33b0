import Dispatch
import TestSupport
import Testing

@_spi(Batching) @testable import VietnameseAI

private struct Doubler: MoHinh {
  func duDoan(_ dauVao: Int) async throws -> Int { dauVao * 2 }
}

private struct ModelError: Error, Equatable {}

@Suite("MayChuBatch")
struct MayChuBatchTests {
  /// A started server whose batch function doubles its inputs, records every batch it
  /// receives and, when gated, waits on `gate` before answering; time comes from `clock`.
  private struct Harness {
    let clock = SteppedClock()
    let batches = Recorder<[Int]>()
    let gate = Gate()
    let server: MayChuBatch<Int, Int>

    init(
      kichThuocBatch: Int,
      timeoutBatch: Duration,
      soWorker: Int = 1,
      toiDaCho: Int = 1000,
      gated: Bool = false,
      realClock: Bool = false
    ) throws {
      let (batches, gate) = (self.batches, self.gate)
      let doubler: @Sendable ([Int]) async throws -> [Int] = { inputs in
        batches.append(inputs)
        if gated { await gate.wait() }
        return inputs.map { $0 * 2 }
      }
      server =
        realClock
        ? MayChuBatch(
          hamDuDoan: doubler,
          kichThuocBatch: kichThuocBatch,
          timeoutBatch: timeoutBatch,
          soWorker: soWorker,
          toiDaCho: toiDaCho
        )
        : MayChuBatch(
          hamDuDoan: doubler,
          kichThuocBatch: kichThuocBatch,
          timeoutBatch: timeoutBatch,
          soWorker: soWorker,
          toiDaCho: toiDaCho,
          clock: clock
        )
      try server.batDau()
    }
  }

  @Test("a model conforming to MoHinh is served through its default duDoanBatch")
  func servesModel() async throws {
    let server = MayChuBatch(moHinh: Doubler(), kichThuocBatch: 8, timeoutBatch: .zero)
    try server.batDau()
    #expect(try await server.duDoan(21) == 42)
    #expect(try await server.duDoanBatch([1, 2, 3]) == [2, 4, 6])
    await server.dung()
  }

  @Test("a custom hamDuDoan replaces the model's batch function")
  func customPredictFunction() async throws {
    let server = MayChuBatch(
      moHinh: Doubler(),
      kichThuocBatch: 16,
      timeoutBatch: .zero,
      hamDuDoan: { inputs in inputs.map { $0 + 1 } }
    )
    try server.batDau()
    #expect(try await server.duDoan(1) == 2)
    await server.dung()
  }

  @Test("a full batch is dispatched at once, without waiting for the timeout")
  func fullBatchDispatchesAtOnce() async throws {
    let h = try Harness(kichThuocBatch: 4, timeoutBatch: .seconds(10))
    let results = try await withThrowingTaskGroup(of: Int.self) { group in
      for i in 0..<4 { group.addTask { try await h.server.duDoan(i) } }
      return try await group.reduce(into: [Int]()) { $0.append($1) }
    }
    #expect(results.sorted() == [0, 2, 4, 6])
    #expect(h.batches.all.map(\.count) == [4])
    await h.server.dung()
  }

  @Test("a partial batch waits for timeoutBatch measured from its first request")
  func partialBatchWaitsForTimeout() async throws {
    let h = try Harness(kichThuocBatch: 32, timeoutBatch: .milliseconds(100))
    let first = Task { try await h.server.duDoan(1) }
    try await eventually("first request queued") { h.server.layThongKe().queueSize == 1 }
    await h.clock.advance(by: .milliseconds(60))
    let second = Task { try await h.server.duDoan(2) }
    try await eventually("second request queued") { h.server.layThongKe().queueSize == 2 }
    await h.clock.advance(by: .milliseconds(39))
    #expect(h.batches.count == 0, "dispatched before the first request waited timeoutBatch")
    await h.clock.advance(by: .milliseconds(1))
    #expect(try await first.value == 2)
    #expect(try await second.value == 4)
    #expect(h.batches.all == [[1, 2]])
    await h.server.dung()
  }

  @Test("timeoutBatch of zero runs whatever is queued as soon as a worker is free")
  func zeroTimeoutRunsAtOnce() async throws {
    let h = try Harness(kichThuocBatch: 32, timeoutBatch: .zero, gated: true)
    let first = Task { try await h.server.duDoan(1) }
    try await eventually("first batch running") { h.gate.entered == 1 }
    // While the only worker is busy, the next requests gather in the queue...
    let rest = (2...4).map { i in Task { try await h.server.duDoan(i) } }
    try await eventually("three queued") { h.server.layThongKe().queueSize == 3 }
    // ...and run together the moment it is free.
    h.gate.open()
    #expect(try await first.value == 2)
    for (i, task) in rest.enumerated() { #expect(try await task.value == (i + 2) * 2) }
    #expect(h.batches.all.count == 2)
    #expect(Set(h.batches.all[1]) == [2, 3, 4])
    await h.server.dung()
  }

  @Test("soWorker batches run at once, never more", arguments: [1, 2, 3])
  func workersBoundConcurrency(workers: Int) async throws {
    let running = Counter()
    let gate = Gate()
    let concurrency = Recorder<Int>()
    let server = MayChuBatch(
      hamDuDoan: { (inputs: [Int]) in
        let now = running.increment()
        concurrency.append(now)
        await gate.wait()
        running.decrement()
        return inputs
      },
      kichThuocBatch: 1,
      timeoutBatch: .zero,
      soWorker: workers,
      clock: SteppedClock()
    )
    try server.batDau()
    let tasks = (0..<6).map { i in Task { try await server.duDoan(i) } }
    try await eventually("workers busy") { gate.entered == workers }
    try await eventually("rest queued") { server.layThongKe().queueSize == 6 - workers }
    #expect(server.layThongKe().workersBusy == workers)
    gate.open()
    for (i, task) in tasks.enumerated() { #expect(try await task.value == i) }
    #expect(concurrency.all.max() == workers)
    await server.dung()
  }

  @Test("resizing soWorker runs queued batches at once when it grows, and bounds new ones when it shrinks")
  func resize() async throws {
    let h = try Harness(kichThuocBatch: 1, timeoutBatch: .zero, soWorker: 1, gated: true)
    let (server, gate) = (h.server, h.gate)
    let tasks = (0..<5).map { i in Task { try await server.duDoan(i) } }
    try await eventually("one running, four queued") {
      gate.entered == 1 && server.layThongKe().queueSize == 4
    }
    server.resize(soWorker: 3)
    try await eventually("three running") { gate.entered == 3 }
    #expect(server.layThongKe().queueSize == 2)
    server.resize(soWorker: 0)  // at least one: a model without workers answers its own errors
    gate.open()
    for (i, task) in tasks.enumerated() { #expect(try await task.value == i * 2) }
    #expect(server.layThongKe().workersBusy == 0)
    await server.dung()
  }

  @Test("the batch function sees the latest deadline of its batch's requests, nil if one has none")
  func batchDeadline() async throws {
    let seen = Recorder<Duration?>()
    let server = MayChuBatch(
      hamDuDoan: { (inputs: [Int]) in
        seen.append(BatchDeadline.remaining)
        return inputs
      },
      kichThuocBatch: 2,
      timeoutBatch: .seconds(3600),
      clock: SteppedClock()
    )
    try server.batDau()
    async let first = server.duDoan(1, deadline: .seconds(1))
    async let second = server.duDoan(2, deadline: .seconds(3))
    _ = try await (first, second)
    async let third = server.duDoan(3, deadline: .seconds(1))
    async let fourth = server.duDoan(4)
    _ = try await (third, fourth)
    #expect(seen.all == [.seconds(3), nil])
    await server.dung()
  }

  @Test("beyond toiDaCho waiting requests duDoan fails at once with queueFull")
  func queueFull() async throws {
    let h = try Harness(kichThuocBatch: 1, timeoutBatch: .zero, toiDaCho: 2, gated: true)
    let (server, gate) = (h.server, h.gate)
    let running = Task { try await server.duDoan(0) }
    try await eventually("first running") { gate.entered == 1 }
    let queued = [Task { try await server.duDoan(1) }, Task { try await server.duDoan(2) }]
    try await eventually("two queued") { server.layThongKe().queueSize == 2 }
    await expectError(.queueFull) { try await server.duDoan(3) }
    await expectError(.queueFull) { try await server.duDoanBatch([4]) }
    await expectError(.invalidArgument) { try await server.duDoanBatch([5, 6, 7]) }
    gate.open()
    #expect(try await running.value == 0)
    #expect(try await queued[0].value == 2)
    #expect(try await queued[1].value == 4)
    let stats = server.layThongKe()
    #expect(stats.rejected == 5)
    #expect(stats.completed == 3)
    #expect(stats.requestsTotal == 8)
    await server.dung()
  }

  @Test("duDoanBatch keeps the order of its inputs across many batches")
  func batchKeepsOrder() async throws {
    let h = try Harness(kichThuocBatch: 7, timeoutBatch: .zero, soWorker: 3, realClock: true)
    let (server, batches) = (h.server, h.batches)
    let inputs = Array((0..<200).shuffled())
    async let a = server.duDoanBatch(inputs)
    async let b = server.duDoanBatch(inputs.reversed())
    #expect(try await a == inputs.map { $0 * 2 })
    #expect(try await b == inputs.reversed().map { $0 * 2 })
    #expect(batches.all.allSatisfy { $0.count <= 7 })
    #expect(try await server.duDoanBatch([]) == [])
    await server.dung()
  }

  @Test("a batch function returning the wrong number of outputs fails that batch only")
  func wrongOutputCount() async throws {
    let calls = Counter()
    let server = MayChuBatch(
      hamDuDoan: { (inputs: [Int]) in
        calls.increment() == 1 ? Array(inputs.dropLast()) : inputs
      },
      kichThuocBatch: 3,
      timeoutBatch: .seconds(1000),
      clock: SteppedClock()
    )
    try server.batDau()
    await expectError(.invalidBatchOutput) { try await server.duDoanBatch([1, 2, 3]) }
    #expect(try await server.duDoanBatch([4, 5, 6]) == [4, 5, 6])
    let stats = server.layThongKe()
    #expect(stats.failed == 3)
    #expect(stats.completed == 3)
    await server.dung()
  }

  @Test("a model that throws fails only its own batch; the server keeps serving")
  func modelThrows() async throws {
    let server = MayChuBatch(
      hamDuDoan: { (inputs: [Int]) in
        if inputs.contains(13) { throw ModelError() }
        return inputs
      },
      kichThuocBatch: 2,
      timeoutBatch: .zero
    )
    try server.batDau()
    do {
      _ = try await server.duDoanBatch([12, 13])
      Issue.record("expected modelFailed")
    } catch let error as VietnameseAIError {
      #expect(error.code == .modelFailed)
      #expect(error.cause is ModelError)
    }
    #expect(try await server.duDoan(14) == 14)
    await server.dung()
  }

  @Test("a caller cancelled while queued gets CancellationError and never reaches the model")
  func cancelWhileQueued() async throws {
    let h = try Harness(kichThuocBatch: 4, timeoutBatch: .zero, gated: true)
    let running = Task { try await h.server.duDoan(1) }
    try await eventually("first batch running") { h.gate.entered == 1 }
    let doomed = Task { try await h.server.duDoan(99) }
    let groupDoomed = Task { try await h.server.duDoanBatch([98, 97]) }
    let kept = Task { try await h.server.duDoan(2) }
    try await eventually("four queued") { h.server.layThongKe().queueSize == 4 }
    doomed.cancel()
    groupDoomed.cancel()
    await expectCancellation { try await doomed.value }
    await expectCancellation { try await groupDoomed.value }
    #expect(h.server.layThongKe().queueSize == 1)
    h.gate.open()
    #expect(try await running.value == 2)
    #expect(try await kept.value == 4)
    #expect(h.batches.all == [[1], [2]])
    #expect(h.server.layThongKe().cancelled == 3)
    await h.server.dung()
  }

  @Test("a caller already cancelled never enters the queue")
  func alreadyCancelled() async throws {
    let h = try Harness(kichThuocBatch: 4, timeoutBatch: .seconds(5))
    let (server, batches) = (h.server, h.batches)
    let task = Task {
      withUnsafeCurrentTask { $0?.cancel() }
      return try await server.duDoan(1)
    }
    await expectCancellation { try await task.value }
    #expect(server.layThongKe().queueSize == 0)
    await server.dung()
    #expect(batches.count == 0)
  }

  @Test("a deadline that passes in the queue fails the request, which never reaches the model")
  func deadlineInQueue() async throws {
    let h = try Harness(kichThuocBatch: 8, timeoutBatch: .zero, gated: true)
    let running = Task { try await h.server.duDoan(1) }
    try await eventually("first batch running") { h.gate.entered == 1 }
    let late = Task { try await h.server.duDoan(2, deadline: .milliseconds(50)) }
    let patient = Task { try await h.server.duDoan(3, deadline: .seconds(10)) }
    try await eventually("two queued") { h.server.layThongKe().queueSize == 2 }
    await h.clock.advance(by: .milliseconds(50))
    await expectError(.deadlineExceeded) { try await late.value }
    #expect(h.server.layThongKe().queueSize == 1)
    h.gate.open()
    #expect(try await running.value == 2)
    #expect(try await patient.value == 6)
    #expect(h.batches.all == [[1], [3]])
    #expect(h.server.layThongKe().deadlineExceeded == 1)
    await h.server.dung()
  }

  @Test("a deadline that passes during compute fails the caller at the deadline")
  func deadlineDuringCompute() async throws {
    let h = try Harness(kichThuocBatch: 8, timeoutBatch: .zero, gated: true)
    let (server, gate, clock) = (h.server, h.gate, h.clock)
    let task = Task { try await server.duDoan(1, deadline: .milliseconds(30)) }
    try await eventually("computing") { gate.entered == 1 }
    await clock.advance(by: .milliseconds(30))
    await expectError(.deadlineExceeded) { try await task.value }
    gate.open()
    // The late result is discarded; the server goes on.
    #expect(try await server.duDoan(5) == 10)
    await server.dung()
  }

  @Test("a batch whose every caller left is cancelled, freeing its worker and letting dung() return")
  func abandonedBatchIsCancelled() async throws {
    let clock = SteppedClock()
    let started = Recorder<[Int]>()
    let cancelled = Recorder<[Int]>()
    let server = MayChuBatch<Int, Int>(
      hamDuDoan: { inputs in
        started.append(inputs)
        if inputs.contains(-1) {
          // A model that would never finish, unless its task is cancelled.
          do {
            try await Task.sleep(for: .seconds(3600))
          } catch {
            cancelled.append(inputs)
            throw error
          }
        }
        return inputs.map { $0 * 2 }
      },
      kichThuocBatch: 1,
      timeoutBatch: .zero,
      soWorker: 1,
      clock: clock
    )
    try server.batDau()
    let hung = Task { try await server.duDoan(-1, deadline: .milliseconds(30)) }
    try await eventually("the hanging batch runs") { started.count == 1 }
    let next = Task { try await server.duDoan(21) }
    try await eventually("the next request waits for the only worker") { server.layThongKe().queueSize == 1 }
    await clock.advance(by: .milliseconds(30))
    await expectError(.deadlineExceeded) { try await hung.value }
    // Nobody waits for the hanging batch any more: it is cancelled and the worker serves on.
    try await eventually("the hanging batch was cancelled") { cancelled.all == [[-1]] }
    #expect(try await next.value == 42)
    await server.dung()
    #expect(server.layThongKe().failed == 0, "an abandoned batch fails nobody")
  }

  @Test("a batch that still has a caller is not cancelled when another of its callers leaves")
  func partlyAbandonedBatchRuns() async throws {
    let h = try Harness(kichThuocBatch: 2, timeoutBatch: .milliseconds(100), gated: true)
    let leaving = Task { try await h.server.duDoan(1) }
    try await eventually("one queued") { h.server.layThongKe().queueSize == 1 }
    let staying = Task { try await h.server.duDoan(2) }
    // Two make a full batch, which runs at once.
    try await eventually("the batch of both runs") { h.gate.entered == 1 }
    #expect(h.batches.all == [[1, 2]])
    leaving.cancel()
    await expectCancellation { try await leaving.value }
    h.gate.open()
    #expect(try await staying.value == 4)
    await h.server.dung()
  }

  @Test("an earlier deadline that arrives after a later one still fires on time")
  func deadlinesOutOfOrder() async throws {
    let h = try Harness(kichThuocBatch: 8, timeoutBatch: .zero, gated: true)
    let running = Task { try await h.server.duDoan(1) }
    try await eventually("first batch running") { h.gate.entered == 1 }
    let patient = Task { try await h.server.duDoan(2, deadline: .seconds(10)) }
    try await eventually("one queued") { h.server.layThongKe().queueSize == 1 }
    let late = Task { try await h.server.duDoan(3, deadline: .milliseconds(50)) }
    try await eventually("two queued") { h.server.layThongKe().queueSize == 2 }
    await h.clock.advance(by: .milliseconds(50))
    await expectError(.deadlineExceeded) { try await late.value }
    #expect(h.server.layThongKe().queueSize == 1)
    await h.clock.advance(by: .seconds(10))
    await expectError(.deadlineExceeded) { try await patient.value }
    #expect(h.server.layThongKe().deadlineExceeded == 2)
    h.gate.open()
    #expect(try await running.value == 2)
    await h.server.dung()
  }

  @Test("answered requests leave at most a bounded number of deadline entries behind")
  func deadlineEntriesStayBounded() async throws {
    let server = MayChuBatch(moHinh: Doubler(), timeoutBatch: .zero, clock: SteppedClock())
    try server.batDau()
    for value in 0..<2_000 {
      #expect(try await server.duDoan(value, deadline: .seconds(30)) == value * 2)
    }
    // One request in flight at a time: the rebuild keeps the heap at most 64 stale entries.
    #expect(server.deadlineEntries <= 65)
    await server.dung()
    #expect(server.deadlineEntries == 0)
  }

  @Test("a batch about to run takes the requests that arrived after it was formed, up to its size")
  func batchTopsUpBeforeRunning() {
    typealias State = MayChuBatch<Int, Int>.State
    var state = State(kichThuocBatch: 4, timeoutBatch: 0, soWorker: 1, toiDaCho: 100)
    state.lifecycle = .running
    let ignore: State.Waiter = .single { _ in }
    var actions = State.Actions()
    for ticket in 1...6 as ClosedRange<UInt64> {
      var step = State.Actions()
      state.accept(ticket: ticket, waiter: ignore, inputs: [Int(ticket)], deadline: nil, now: 0, into: &step)
      state.dispatch(now: 0, into: &step)
      #expect(step.resumptions.isEmpty)
      actions.batches += step.batches
    }
    // The first request found the worker free and formed a batch alone; five wait.
    #expect(actions.batches.map { $0.items.map(\.input) } == [[1]])
    var batch = actions.batches[0].items
    _ = state.topUp(&batch, id: actions.batches[0].id, now: 0)
    #expect(batch.map(\.input) == [1, 2, 3, 4])
    #expect(state.liveQueued == 2)
    let statistics = state.snapshot(now: 1)
    #expect(statistics.batchSizeTB == 4)
  }

  @Test("a group request queues in the lane it names, and that lane's batches run on its executor")
  func groupRequestsTakeTheirLane() {
    typealias State = MayChuBatch<Int, Int>.State
    var state = State(kichThuocBatch: 2, timeoutBatch: 0, soWorker: 2, toiDaCho: 100)
    state.lifecycle = .running
    let executor = CountingExecutor()
    let group: State.Waiter = .group({ _ in }, State.GroupResults(count: 2))
    var actions = State.Actions()
    state.accept(
      ticket: 1,
      waiter: group,
      inputs: [1, 2],
      deadline: nil,
      now: 0,
      lane: 1,
      executor: executor,
      into: &actions
    )
    state.dispatch(now: 0, into: &actions)
    #expect(actions.batches.count == 1)
    #expect(actions.batches.first?.items.map(\.input) == [1, 2])
    #expect(actions.batches.first?.executor as? CountingExecutor === executor)
  }

  @Test("a deadline of zero or less fails at once")
  func nonPositiveDeadline() async throws {
    let server = MayChuBatch(moHinh: Doubler(), timeoutBatch: .zero)
    try server.batDau()
    await expectError(.deadlineExceeded) { try await server.duDoan(1, deadline: .zero) }
    await expectError(.deadlineExceeded) { try await server.duDoanBatch([1], deadline: .seconds(-1)) }
    #expect(server.layThongKe().queueSize == 0)
    await server.dung()
  }

  @Test("duDoan before batDau or after dung is a typed error; batDau checks its parameters")
  func lifecycleErrors() async throws {
    let server = MayChuBatch(moHinh: Doubler())
    await expectError(.notRunning) { try await server.duDoan(1) }
    try server.batDau()
    #expect(throws: VietnameseAIError.self) { try server.batDau() }
    await server.dung()
    await expectError(.notRunning) { try await server.duDoan(1) }
    // A stopped server can start again.
    try server.batDau()
    await server.dung()

    for bad in [
      MayChuBatch(moHinh: Doubler(), kichThuocBatch: 0),
      MayChuBatch(moHinh: Doubler(), timeoutBatch: .milliseconds(-1)),
      MayChuBatch(moHinh: Doubler(), soWorker: 0),
      MayChuBatch(moHinh: Doubler(), toiDaCho: 0),
    ] {
      do {
        try bad.batDau()
        Issue.record("batDau accepted an invalid parameter")
      } catch {
        #expect(error.code == .invalidArgument)
      }
    }
  }

  @Test("dung() stops intake and returns only after every queued request was answered")
  func dungDrains() async throws {
    let h = try Harness(kichThuocBatch: 4, timeoutBatch: .seconds(100), gated: true)
    let (server, gate) = (h.server, h.gate)
    let tasks = (0..<10).map { i in Task { try await server.duDoan(i) } }
    try await eventually("first batch running") { gate.entered == 1 }
    try await eventually("all accepted") { server.layThongKe().queueSize == 6 }
    let stopped = Counter()
    let stopping = Task {
      await server.dung()
      stopped.increment()
    }
    try await eventually("intake stopped") { !server.dangChay }
    await expectError(.notRunning) { try await server.duDoan(-1) }
    #expect(stopped.current == 0, "dung returned while requests were still queued")
    gate.open()
    await stopping.value
    for (i, task) in tasks.enumerated() { #expect(try await task.value == i * 2) }
    let stats = server.layThongKe()
    #expect(stats.completed == 10)
    #expect(stats.queueSize == 0)
    // Stopping did not wait for timeoutBatch: the clock never moved.
  }

  @Test("statistics carry the seed's keys and come from an HdrHistogram")
  func statistics() async throws {
    let clock = SteppedClock()
    let server = MayChuBatch(
      moHinh: Doubler(),
      kichThuocBatch: 2,
      timeoutBatch: .milliseconds(10),
      clock: clock
    )
    try server.batDau()
    let one = Task { try await server.duDoan(1) }
    try await eventually("queued") { server.layThongKe().queueSize == 1 }
    await clock.advance(by: .milliseconds(10))
    _ = try await one.value
    _ = try await server.duDoanBatch([1, 2])
    let stats = server.layThongKe()
    #expect(stats.completed == 3)
    #expect(stats.batches == 2)
    #expect(stats.batchSizeTB == 1.5)
    // Two requests completed at once, one after 10 ms of test time.
    #expect(stats.latencyP50 == 0)
    #expect(abs(stats.latencyP99 - 0.010) < 0.0001)
    #expect(stats.latencyP95 >= stats.latencyP50)
    let keys = try jsonKeys(stats)
    for key in ["latency_p50", "latency_p95", "batch_size_tb", "queue_size", "latency_p99", "throughput"] {
      #expect(keys.contains(key), "missing \(key)")
    }
    await server.dung()
  }

  @Test("many concurrent callers each get their own answer exactly once")
  func concurrentCallers() async throws {
    let server = MayChuBatch(
      moHinh: Doubler(),
      kichThuocBatch: 16,
      timeoutBatch: .microseconds(200),
      soWorker: 2,
      toiDaCho: 2_000
    )
    try server.batDau()
    try await withThrowingTaskGroup(of: Void.self) { group in
      for i in 0..<2_000 {
        group.addTask {
          let result = try await server.duDoan(i)
          #expect(result == i * 2)
        }
      }
      try await group.waitForAll()
    }
    await server.dung()
    let stats = server.layThongKe()
    #expect(stats.completed == 2_000)
    #expect(stats.queueSize == 0)
    #expect(stats.batchSizeTB >= 1)
  }

  @Test("a sink gets one batch's outcomes for its requests in one delivery, by tag")
  func sinkGroupsABatch() async throws {
    let h = try Harness(kichThuocBatch: 8, timeoutBatch: .seconds(10))
    let deliveries = Recorder<[(tag: UInt32, value: Int?)]>()
    func sink() -> BatchSink<Int> {
      BatchSink { outcomes in deliveries.append(outcomes.map { ($0.tag, try? $0.result.get()) }) }
    }
    let (a, b) = (sink(), sink())
    for i in 0..<8 {
      h.server.submit(i, deadline: nil, sink: i % 2 == 0 ? a : b, tag: UInt32(100 + i))
    }
    try await eventually("both sinks answered") { deliveries.all.count == 2 }
    #expect(h.batches.all.map(\.count) == [8])
    let groups = deliveries.all.map { $0.map(\.tag) }.sorted { $0[0] < $1[0] }
    #expect(groups == [[100, 102, 104, 106], [101, 103, 105, 107]])
    for delivery in deliveries.all {
      for (tag, value) in delivery { #expect(value == Int(tag - 100) * 2, "tag \(tag)") }
    }
    await h.server.dung()
  }

  @Test("a sink's requests fail like any other: queue full, cancelled, deadline passed")
  func sinkFailures() async throws {
    let h = try Harness(kichThuocBatch: 1, timeoutBatch: .zero, toiDaCho: 2, gated: true)
    let outcomes = Recorder<(tag: UInt32, outcome: String)>()
    let sink = BatchSink<Int> { delivered in
      for outcome in delivered {
        let tag = outcome.tag
        switch outcome.result {
        case .success(let value): outcomes.append((tag, "\(value)"))
        case .failure(let error as VietnameseAIError): outcomes.append((tag, error.code.name))
        case .failure(let error): outcomes.append((tag, "\(type(of: error))"))
        }
      }
    }
    h.server.submit(0, deadline: nil, sink: sink, tag: 0)
    try await eventually("first running") { h.gate.entered == 1 }
    let cancelled = h.server.submit(1, deadline: nil, sink: sink, tag: 1)
    h.server.submit(2, deadline: .seconds(1), sink: sink, tag: 2)
    h.server.submit(3, deadline: nil, sink: sink, tag: 3)  // the queue holds two
    h.server.cancel(ticket: cancelled)
    await h.clock.advance(by: .seconds(2))
    try await eventually("three failed") { outcomes.all.count == 3 }
    h.gate.open()
    try await eventually("all answered") { outcomes.all.count == 4 }
    let byTag = Dictionary(uniqueKeysWithValues: outcomes.all.map { ($0.tag, $0.outcome) })
    #expect(byTag == [0: "0", 1: "CancellationError", 2: "deadline_exceeded", 3: "queue_full"])
    await h.server.dung()
  }

  @Test("a batch is formed for the lane waiting longest, topped up from the others, and runs on its executor")
  func lanes() async throws {
    let h = try Harness(kichThuocBatch: 4, timeoutBatch: .zero, gated: true)
    let answered = Counter()
    let laneOneExecutor = CountingExecutor()
    let laneZero = BatchSink<Int>(lane: 0) { answered.increment(by: $0.count) }
    let laneOne = BatchSink<Int>(lane: 1, executor: laneOneExecutor) { answered.increment(by: $0.count) }
    h.server.submit(0, deadline: nil, sink: laneZero, tag: 0)
    try await eventually("first batch running") { h.gate.entered == 1 }
    for value in [10, 11, 12] { h.server.submit(value, deadline: nil, sink: laneOne, tag: 0) }
    for value in [1, 2] { h.server.submit(value, deadline: nil, sink: laneZero, tag: 0) }
    for value in [13, 14] { h.server.submit(value, deadline: nil, sink: laneOne, tag: 0) }
    #expect(laneOneExecutor.jobs == 0)
    h.gate.open()
    try await eventually("all answered") { answered.current == 8 }
    // Lane 1's first request came before lane 0's: its batch goes first and takes only lane 1;
    // the next is lane 0's, with room for lane 1's last.
    #expect(h.batches.all == [[0], [10, 11, 12, 13], [1, 2, 14]])
    #expect(laneOneExecutor.jobs > 0)
    await h.server.dung()
  }
}

extension MayChuBatch {
  /// One request through `submitAll`, as from a connection whose read held just it.
  @discardableResult
  fileprivate func submit(_ input: DauVao, deadline: Duration?, sink: BatchSink<KetQua>, tag: UInt32)
    -> UInt64
  {
    let milliseconds = deadline.map { UInt32(($0 / .milliseconds(1)).rounded(.up)) } ?? 0
    return submitAll([Submission(input: input, deadlineMilliseconds: milliseconds, tag: tag)], sink: sink)
      .lowerBound
  }
}

/// A task executor that runs jobs on Dispatch and counts them.
private final class CountingExecutor: TaskExecutor {
  private let count = Counter()
  var jobs: Int { count.current }

  func enqueue(_ job: consuming ExecutorJob) {
    count.increment()
    let job = UnownedJob(job)
    DispatchQueue.global().async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
  }
}
