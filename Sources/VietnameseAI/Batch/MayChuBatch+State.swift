import DequeModule

extension MayChuBatch {
  /// Everything a ``MayChuBatch`` knows, guarded by one `Mutex`.
  ///
  /// The state machine never calls out: each transition returns what the caller must do once
  /// the lock is released (resume continuations, start batches, arm a timer). That keeps the
  /// critical sections short and free of user code.
  ///
  /// Requests are *tickets*: a `duDoan` is a ticket of one item, a `duDoanBatch` a ticket of
  /// many. The queue holds items; the ticket table holds the caller's continuation. An item
  /// whose ticket is gone (cancelled, expired, failed) stays in the queue as a tombstone until
  /// it reaches the front or the queue is compacted, so cancelling is O(1) and never scans.
  ///
  /// Deadlines live in one priority queue (``DeadlineQueue``) with one timer for the whole
  /// server (shared with the batch timer), not a timer per request: a server answering 100k
  /// requests a second must not create 100k tasks a second just in case one of them is late.
  /// Entries of tickets that ended stay in the queue until they surface or until they
  /// outnumber the live ones, when the queue is filtered; its memory is bounded by twice the
  /// tickets in flight.
  struct State {
    enum Lifecycle {
      case idle
      case running
      case stopping
      case stopped
    }

    /// One input waiting in the queue.
    struct Item {
      var ticket: UInt64
      var index: Int
      var input: DauVao
      var arrival: Int64
    }

    /// The results of a `duDoanBatch` ticket as they come in. A class so that filling one slot
    /// mutates in place instead of copying the array out of the ticket table.
    ///
    /// `@unchecked Sendable` is safe: `duDoanBatch` creates the object and moves it straight
    /// into the ticket table without keeping a reference, and from then on it is read and
    /// written only inside `state.withLock`, so no two threads ever touch it at once.
    final class GroupResults: @unchecked Sendable {
      var results: [KetQua?]
      var remaining: Int
      init(count: Int) {
        results = Array(repeating: nil, count: count)
        remaining = count
      }
    }

    /// Receives a ticket's outcome, once. The async API resumes a continuation from it; the
    /// server answers its connection from it without a task of its own.
    typealias Completion<Value> = @Sendable (Result<Value, any Error>) -> Void

    enum Waiter: Sendable {
      case single(Completion<KetQua>)
      case group(Completion<[KetQua]>, GroupResults)
      /// One input, answered through a sink shared with the submitter's other requests.
      case tagged(BatchSink<KetQua>, tag: UInt32)
    }

    struct Ticket {
      var waiter: Waiter
      /// Items of this ticket still in the queue (not yet handed to the model).
      var queued: Int
      var deadline: Int64?
    }

    /// A batch handed to the model and not back yet.
    ///
    /// Kept so that a batch nobody waits for any more (every ticket in it cancelled or past its
    /// deadline) can be cancelled: a model that hangs would otherwise hold a worker for good,
    /// and a stopping server would wait for it forever.
    struct RunningBatch {
      /// The batch's items: the worker's own array, shared, so keeping it costs no copy.
      var items: [Item]
      /// The lane the batch was formed for, which its top-up takes from first.
      var lane: Int
      var task: Task<Void, Never>?
      var abandoned = false
    }

    /// A ticket's deadline in the queue, earliest first.
    struct DeadlineEntry: Comparable {
      var at: Int64
      var ticket: UInt64
      static func < (a: Self, b: Self) -> Bool { (a.at, a.ticket) < (b.at, b.ticket) }
    }

    /// A waiter to answer once the lock is released.
    enum Resumption {
      case single(Completion<KetQua>, Result<KetQua, any Error>)
      case group(Completion<[KetQua]>, Result<[KetQua], any Error>)
      case stopped(CheckedContinuation<Void, Never>)

      func resume() {
        switch self {
        case .single(let c, let r): c(r)
        case .group(let c, let r): c(r)
        case .stopped(let c): c.resume()
        }
      }
    }

    /// A sink's outcomes from one transition.
    struct SinkOutcomes {
      let sink: BatchSink<KetQua>
      var outcomes: [BatchSink<KetQua>.Outcome]
    }

    /// What to do after a transition, outside the lock.
    struct Actions {
      var resumptions: [Resumption] = []
      /// Batches to start, each with its id in ``running``.
      var batches: [(id: UInt64, items: [Item], executor: (any TaskExecutor)?)] = []
      /// Arm the batch timer for this offset (nanoseconds); the old timer, if any, is cancelled.
      var armTimer: (at: Int64, generation: UInt64)?
      var cancelTasks: [Task<Void, Never>] = []
      /// Outcomes for sinks, one group per sink, delivered after `resumptions`.
      var sinkOutcomes: [SinkOutcomes] = []

      var isEmpty: Bool {
        resumptions.isEmpty && batches.isEmpty && armTimer == nil && cancelTasks.isEmpty
          && sinkOutcomes.isEmpty
      }

      /// Adds an outcome to its sink's group. A batch serves a handful of sinks (connections),
      /// and runs of one sink's requests are common, so the search starts from the last group.
      ///
      /// `reserving` is how many outcomes this one and those after it may add at most: a new
      /// group reserves room for them, so that it is allocated once instead of growing one
      /// outcome at a time.
      mutating func append(
        _ result: Result<KetQua, any Error>,
        tag: UInt32,
        for sink: BatchSink<KetQua>,
        reserving: Int = 1
      ) {
        var index = sinkOutcomes.count - 1
        while index >= 0 {
          if sinkOutcomes[index].sink === sink {
            sinkOutcomes[index].outcomes.append(BatchSink.Outcome(tag: tag, result: result))
            return
          }
          index -= 1
        }
        var outcomes: [BatchSink<KetQua>.Outcome] = []
        outcomes.reserveCapacity(reserving)
        outcomes.append(BatchSink.Outcome(tag: tag, result: result))
        sinkOutcomes.append(SinkOutcomes(sink: sink, outcomes: outcomes))
      }

      /// Fails `waiter` with `error`.
      mutating func fail(_ waiter: Waiter, with error: VietnameseAIError) {
        switch waiter {
        case .single(let c): resumptions.append(.single(c, .failure(error)))
        case .group(let c, _): resumptions.append(.group(c, .failure(error)))
        case .tagged(let sink, let tag): append(.failure(error), tag: tag, for: sink)
        }
      }
    }

    let kichThuocBatch: Int
    let timeoutBatch: Int64
    /// Batches that may run at once; a model whose workers come and go changes it.
    var soWorker: Int
    let toiDaCho: Int

    var lifecycle = Lifecycle.idle
    /// Waiting items, one queue per lane (see ``BatchSink``); lane 0 takes every request
    /// submitted without a sink.
    var lanes = [Deque<Item>()]
    /// Where each lane's batches prefer to run; `nil` lets Swift choose.
    var laneExecutors: [(any TaskExecutor)?] = [nil]
    /// Items in `lanes` whose ticket is alive: their count minus tombstones.
    var liveQueued = 0
    var tickets = TicketTable<Ticket>()
    var busyWorkers = 0
    var running: [UInt64: RunningBatch] = [:]
    var nextBatchID: UInt64 = 0
    var timerDue: Int64?
    var timerGeneration: UInt64 = 0
    var timerTask: Task<Void, Never>?
    var deadlines = DeadlineQueue<DeadlineEntry>()
    /// Tickets alive with a deadline; `deadlines.count` minus the stale entries.
    var liveDeadlines = 0
    var stopWaiters: [CheckedContinuation<Void, Never>] = []

    // Statistics.
    var startedAt: Int64 = 0
    var latency = LatencyHistogram()
    var requestsTotal = 0
    var completed = 0
    var failed = 0
    var rejected = 0
    var deadlineExceeded = 0
    var cancelled = 0
    var batchesRun = 0
    var itemsInBatches = 0

    init(kichThuocBatch: Int, timeoutBatch: Int64, soWorker: Int, toiDaCho: Int) {
      self.kichThuocBatch = kichThuocBatch
      self.timeoutBatch = timeoutBatch
      self.soWorker = soWorker
      self.toiDaCho = toiDaCho
    }

    // MARK: Intake

    /// Checks that a ticket of `count` items may enter the queue; counts a refusal.
    mutating func admit(count: Int) -> VietnameseAIError? {
      requestsTotal += count
      let error: VietnameseAIError?
      if lifecycle != .running {
        error = VietnameseAIError(
          code: .notRunning,
          message: lifecycle == .idle
            ? "MayChuBatch is not started: call batDau() first"
            : "MayChuBatch is stopping or stopped: it accepts no new requests"
        )
      } else if count > toiDaCho {
        error = VietnameseAIError(
          code: .invalidArgument,
          message: "a batch of \(count) inputs can never fit a queue of toiDaCho = \(toiDaCho)"
        )
      } else if liveQueued + count > toiDaCho {
        error = VietnameseAIError(
          code: .queueFull,
          message: "queue full: \(liveQueued) of \(toiDaCho) requests waiting"
        )
      } else {
        error = nil
      }
      if error != nil { rejected += count }
      return error
    }

    /// Admits a ticket and queues its items, or fails its waiter at once (not running, queue
    /// full, deadline already passed). The caller dispatches afterwards, once for all the
    /// tickets it accepts together.
    mutating func accept(
      ticket id: UInt64,
      waiter: Waiter,
      inputs: some Collection<DauVao>,
      deadline: Int64?,
      now: Int64,
      lane requested: Int = 0,
      executor requestedExecutor: (any TaskExecutor)? = nil,
      into actions: inout Actions
    ) {
      if let error = admit(count: inputs.count) {
        return actions.fail(waiter, with: error)
      }
      if let deadline, deadline <= now {
        deadlineExceeded += inputs.count
        return actions.fail(waiter, with: Self.deadlineError())
      }
      tickets.insert(Ticket(waiter: waiter, queued: inputs.count, deadline: deadline), forKey: id)
      var lane = requested
      var executor = requestedExecutor
      if case .tagged(let sink, _) = waiter {
        lane = sink.lane
        executor = sink.executor
      }
      while lanes.count <= lane {
        lanes.append(Deque())
        laneExecutors.append(nil)
      }
      if laneExecutors[lane] == nil { laneExecutors[lane] = executor }
      var index = 0
      for input in inputs {
        lanes[lane].append(Item(ticket: id, index: index, input: input, arrival: now))
        index += 1
      }
      liveQueued += inputs.count
      if let deadline {
        deadlines.insert(DeadlineEntry(at: deadline, ticket: id))
        liveDeadlines += 1
        armTimer(at: deadline, into: &actions)
      }
    }

    // MARK: Dispatch

    private func isDue(_ oldest: Item, now: Int64) -> Bool {
      liveQueued >= kichThuocBatch
        || timeoutBatch <= 0
        || lifecycle == .stopping
        || now - oldest.arrival >= timeoutBatch
    }

    /// Hands batches to free workers while a batch is due, and arms the timer for the next
    /// moment one will be.
    /// The latest deadline among `batch`'s live tickets, as a clock reading: the model's work is
    /// of use until then. `nil` when one of them waits as long as it takes (or none is live).
    func latestDeadline(of batch: [Item]) -> Int64? {
      var latest: Int64?
      for item in batch {
        guard let ticket = tickets[item.ticket] else { continue }
        guard let deadline = ticket.deadline else { return nil }
        latest = max(latest ?? deadline, deadline)
      }
      return latest
    }

    /// Lets `soWorker` batches run at once from now on; batches already running beyond a
    /// smaller number finish first.
    mutating func resize(soWorker: Int, now: Int64) -> Actions {
      self.soWorker = max(soWorker, 1)
      return dispatch(now: now)
    }

    mutating func dispatch(now: Int64) -> Actions {
      var actions = Actions()
      dispatch(now: now, into: &actions)
      return actions
    }

    /// A batch is formed for the lane whose first request waits longest, from that lane's
    /// requests first, then, if it has room, from the other lanes'. A server gives each event
    /// loop its own lane, and the batch runs on that lane's loop: most of its answers then go
    /// to connections of the loop it ran on, without a hop to another thread, and a batch
    /// never runs less full than the queue allows.
    mutating func dispatch(now: Int64, into actions: inout Actions) {
      while busyWorkers < soWorker, let lane = oldestLane(), isDue(lanes[lane].first!, now: now) {
        var batch: [Item] = []
        batch.reserveCapacity(min(kichThuocBatch, liveQueued))
        take(into: &batch, preferring: lane, now: now, actions: &actions)
        if batch.isEmpty { continue }
        busyWorkers += 1
        batchesRun += 1
        itemsInBatches += batch.count
        nextBatchID &+= 1
        running[nextBatchID] = RunningBatch(items: batch, lane: lane)
        actions.batches.append((nextBatchID, batch, laneExecutors[lane]))
      }
      if busyWorkers < soWorker, let lane = oldestLane() {
        armTimer(at: lanes[lane].first!.arrival + timeoutBatch, into: &actions)
      }
      finishStoppingIfDrained(into: &actions)
    }

    /// The lane whose first request arrived first (by arrival, then ticket), if any request
    /// waits. Lane heads are always alive (see ``dropLeadingTombstones()``).
    private func oldestLane() -> Int? {
      var oldest: Int?
      for lane in lanes.indices {
        guard let first = lanes[lane].first else { continue }
        if let best = oldest, let head = lanes[best].first,
          (head.arrival, head.ticket) <= (first.arrival, first.ticket)
        {
          continue
        }
        oldest = lane
      }
      return oldest
    }

    /// Moves waiting requests into `batch` until it holds ``kichThuocBatch``: from `lane`
    /// first, then from the others in turn. Requests whose deadline has passed are failed on
    /// the way: the model is never handed a request nobody waits for any more.
    private mutating func take(
      into batch: inout [Item],
      preferring lane: Int,
      now: Int64,
      actions: inout Actions
    ) {
      for offset in lanes.indices where batch.count < kichThuocBatch {
        let source = (lane + offset) % lanes.count
        while batch.count < kichThuocBatch, let item = lanes[source].popFirst() {
          // One lookup per item: the ticket's index serves every access that follows.
          guard let slot = tickets.index(forKey: item.ticket) else { continue }  // tombstone
          let deadline = tickets.update(at: slot) { ticket in
            ticket.queued -= 1
            return ticket.deadline
          }
          liveQueued -= 1
          if let deadline, deadline <= now {
            fail(ticket: item.ticket, with: Self.deadlineError(), counter: \.deadlineExceeded, into: &actions)
            continue
          }
          batch.append(item)
        }
      }
      dropLeadingTombstones()
    }

    /// Makes sure the timer fires no later than `due`: re-arms it only if `due` is earlier than
    /// what it is armed for, so a steady stream of requests with the same deadline arms it once.
    private mutating func armTimer(at due: Int64, into actions: inout Actions) {
      guard lifecycle != .stopped, timerDue == nil || timerDue! > due else { return }
      timerGeneration &+= 1
      timerDue = due
      actions.armTimer = (due, timerGeneration)
    }

    /// Adds to a batch about to run the requests that arrived since it was formed, up to
    /// ``kichThuocBatch``.
    ///
    /// A worker starts a moment after its batch is formed (its task must be scheduled); on an
    /// event loop, that moment is the end of the read burst in which the first request
    /// arrived, and the rest of the burst is in the queue by then. Taking them now turns a
    /// burst of 16 requests into one batch instead of a batch of one followed by one of 15,
    /// and never makes a request wait longer.
    mutating func topUp(_ batch: inout [Item], id: UInt64, now: Int64) -> Actions {
      var actions = Actions()
      // A batch nobody waits for takes nothing more: its task is cancelled or about to be.
      if running[id]?.abandoned == true { return actions }
      // Let go of the shared copy while the batch grows, so that it grows in place.
      running[id]?.items = []
      defer { running[id]?.items = batch }
      let before = batch.count
      take(into: &batch, preferring: running[id]?.lane ?? 0, now: now, actions: &actions)
      itemsInBatches += batch.count - before
      return actions
    }

    /// Stores the task running batch `id`. Returns it to be cancelled if nobody waits for the
    /// batch any more.
    mutating func attach(batchTask task: Task<Void, Never>, id: UInt64) -> Task<Void, Never>? {
      guard running[id] != nil else { return nil }
      running[id]!.task = task
      return running[id]!.abandoned ? task : nil
    }

    /// Marks the running batches whose every ticket has ended as abandoned, and cancels them.
    private mutating func abandonUnwantedBatches(into actions: inout Actions) {
      for (id, batch) in running
      where !batch.abandoned && batch.items.allSatisfy({ !tickets.contains($0.ticket) }) {
        running[id]!.abandoned = true
        if let task = batch.task { actions.cancelTasks.append(task) }
      }
    }

    /// Stores the task of the batch timer armed for `generation`, unless a newer timer was
    /// armed meanwhile. Returns the tasks to cancel: the replaced one, or this one if stale.
    mutating func attach(timer: Task<Void, Never>, generation: UInt64) -> Task<Void, Never>? {
      guard generation == timerGeneration, lifecycle != .stopped else { return timer }
      let old = timerTask
      timerTask = timer
      return old
    }

    /// The timer fired: fail the tickets whose deadline passed, in the queue or during
    /// compute, run what is due, and re-arm for the next deadline.
    mutating func timerFired(generation: UInt64, now: Int64) -> Actions {
      guard generation == timerGeneration else { return Actions() }
      timerDue = nil
      var actions = Actions()
      while let first = deadlines.min, first.at <= now {
        deadlines.removeMin()
        fail(ticket: first.ticket, with: Self.deadlineError(), counter: \.deadlineExceeded, into: &actions)
      }
      dispatch(now: now, into: &actions)
      dropStaleDeadlines()
      if let next = deadlines.min { armTimer(at: next.at, into: &actions) }
      return actions
    }

    /// Removes entries of ended tickets from the front, so the timer is armed for a live one.
    private mutating func dropStaleDeadlines() {
      while let first = deadlines.min, !tickets.contains(first.ticket) { deadlines.removeMin() }
    }

    /// A ticket with a deadline ended: bound the stale entries it leaves in the queue.
    private mutating func deadlineEnded() {
      liveDeadlines -= 1
      // Requests mostly end in the order they came, so the entries that went stale are
      // mostly at the front: dropping them there keeps the queue small without a full pass.
      dropStaleDeadlines()
      guard deadlines.count > 64, deadlines.count > 2 * liveDeadlines else { return }
      let tickets = self.tickets
      deadlines.filter { tickets.contains($0.ticket) }
    }

    // MARK: Completion

    /// A batch came back from the model: answer its items and dispatch the next batch.
    mutating func complete(batch: [Item], id: UInt64, result: Result<[KetQua], VietnameseAIError>, now: Int64)
      -> Actions
    {
      var actions = Actions()
      busyWorkers -= 1
      running[id] = nil
      switch result {
      case .success(let outputs):
        // By index, not zip: zip copies every item (a retain and a release of its input).
        for index in batch.indices {
          deliver(outputs[index], to: batch[index], remaining: batch.count - index, now: now, into: &actions)
        }
      case .failure(let error):
        for item in batch where tickets.contains(item.ticket) {
          fail(ticket: item.ticket, with: error, counter: \.failed, into: &actions)
        }
      }
      dispatch(now: now, into: &actions)
      return actions
    }

    /// Answers `item` with `output`; `remaining` counts it and the batch's items after it.
    private mutating func deliver(
      _ output: KetQua,
      to item: Item,
      remaining: Int,
      now: Int64,
      into actions: inout Actions
    ) {
      guard let slot = tickets.index(forKey: item.ticket) else { return }  // answered already
      latency.record(nanoseconds: now - item.arrival)
      completed += 1
      // A group keeps its ticket until its last input is answered; any other ticket ends
      // with this answer, and is moved out of the table rather than copied.
      let group = tickets.update(at: slot) { ticket -> GroupResults? in
        if case .group(_, let group) = ticket.waiter { return group }
        return nil
      }
      if let group {
        group.results[item.index] = output
        group.remaining -= 1
        guard group.remaining == 0 else { return }
      }
      let ticket = tickets.remove(at: slot)
      if ticket.deadline != nil { deadlineEnded() }
      switch ticket.waiter {
      case .single(let continuation):
        actions.resumptions.append(.single(continuation, .success(output)))
      case .group(let continuation, let group):
        actions.resumptions.append(.group(continuation, .success(group.results.map { $0! })))
      case .tagged(let sink, let tag):
        actions.append(.success(output), tag: tag, for: sink, reserving: remaining)
      }
    }

    /// Ends a ticket with an error: its queued items become tombstones, its caller is resumed.
    /// `counter` counts every item of the ticket that had no answer yet.
    mutating func fail(
      ticket id: UInt64,
      with error: any Error,
      counter: WritableKeyPath<State, Int>,
      into actions: inout Actions
    ) {
      guard let ticket = tickets.removeValue(forKey: id) else { return }
      liveQueued -= ticket.queued
      let computing: Bool
      switch ticket.waiter {
      case .single(let continuation):
        self[keyPath: counter] += 1
        actions.resumptions.append(.single(continuation, .failure(error)))
        computing = ticket.queued == 0
      case .group(let continuation, let group):
        self[keyPath: counter] += group.remaining
        actions.resumptions.append(.group(continuation, .failure(error)))
        computing = ticket.queued < group.remaining
      case .tagged(let sink, let tag):
        self[keyPath: counter] += 1
        actions.append(.failure(error), tag: tag, for: sink)
        computing = ticket.queued == 0
      }
      // Some of its items are with the model: their batch may now be wanted by nobody.
      if computing && !running.isEmpty { abandonUnwantedBatches(into: &actions) }
      if ticket.deadline != nil { deadlineEnded() }
      dropLeadingTombstones()
      compactIfMostlyTombstones()
    }

    /// The caller's task was cancelled.
    mutating func cancel(ticket id: UInt64) -> Actions {
      var actions = Actions()
      fail(ticket: id, with: CancellationError(), counter: \.cancelled, into: &actions)
      finishStoppingIfDrained(into: &actions)
      return actions
    }

    static func deadlineError() -> VietnameseAIError {
      VietnameseAIError(code: .deadlineExceeded, message: "deadline exceeded before the result was ready")
    }

    // MARK: Queue upkeep

    /// Keeps the invariant that each lane's first item, if any, is alive, so that the batch
    /// timer always measures from a request somebody still waits for.
    private mutating func dropLeadingTombstones() {
      for lane in lanes.indices {
        while let first = lanes[lane].first, !tickets.contains(first.ticket) {
          lanes[lane].removeFirst()
        }
      }
    }

    /// Bounds the memory tombstones can hold: once they outnumber live items (and there are
    /// enough of them to matter), rebuild the queue without them.
    private mutating func compactIfMostlyTombstones() {
      let tombstones = lanes.reduce(0) { $0 + $1.count } - liveQueued
      guard tombstones > 64, tombstones > liveQueued else { return }
      let tickets = self.tickets
      for lane in lanes.indices {
        lanes[lane] = Deque(lanes[lane].filter { tickets.contains($0.ticket) })
      }
    }

    // MARK: Stopping

    private mutating func finishStoppingIfDrained(into actions: inout Actions) {
      guard lifecycle == .stopping, liveQueued == 0, busyWorkers == 0 else { return }
      lifecycle = .stopped
      for lane in lanes.indices { lanes[lane].removeAll() }
      deadlines.removeAll()
      liveDeadlines = 0
      timerGeneration &+= 1
      timerDue = nil
      if let timer = timerTask {
        actions.cancelTasks.append(timer)
        timerTask = nil
      }
      actions.resumptions += stopWaiters.map { .stopped($0) }
      stopWaiters.removeAll()
    }

    /// Stops intake. Returns the actions that drain the queue; `lifecycle` tells whether the
    /// caller must wait for `.stopped`.
    mutating func beginStopping(now: Int64) -> Actions {
      switch lifecycle {
      case .running:
        lifecycle = .stopping
        return dispatch(now: now)
      case .idle, .stopping, .stopped:
        return Actions()
      }
    }

    // MARK: Statistics

    func snapshot(now: Int64) -> ThongKeBatch {
      let elapsed = Double(now - startedAt) / 1e9
      return ThongKeBatch(
        latencyP50: latency.seconds(atPercentile: 50),
        latencyP95: latency.seconds(atPercentile: 95),
        latencyP99: latency.seconds(atPercentile: 99),
        batchSizeTB: batchesRun == 0 ? 0 : Double(itemsInBatches) / Double(batchesRun),
        queueSize: liveQueued,
        requestsTotal: requestsTotal,
        completed: completed,
        failed: failed,
        rejected: rejected,
        deadlineExceeded: deadlineExceeded,
        cancelled: cancelled,
        batches: batchesRun,
        workersBusy: busyWorkers,
        throughput: elapsed > 0 ? Double(completed) / elapsed : 0
      )
    }
  }
}
