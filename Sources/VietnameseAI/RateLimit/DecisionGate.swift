internal import CCurrentCPU
import Synchronization
@_spi(Locking) import VietnameseAIConcurrency

#if canImport(Glibc)
  import Glibc
#endif

/// The token-bucket table's readers–writer lock, whose readers write no cache line that
/// another core writes; with the decision counts kept per CPU beside it.
///
/// A decision for a known client only reads the table's structure and swaps the client's own
/// state, so many can run at once. An ordinary lock, even a readers–writer one, would still make
/// each of them write the lock's word, and with two cores deciding, that cache line moves from
/// one core to the other on most decisions: the move costs about as much as the decision. Here a
/// reader counts itself in on the counter of the CPU it runs on, a line other cores leave alone,
/// and then reads the writer's flag, a line that stays shared in every core's cache while nobody
/// writes. A writer raises the flag and waits until each CPU's readers have left. (The same
/// scheme as Linux's per-CPU readers–writer semaphores.)
///
/// - Readers never wait. One that finds the flag raised backs out, and its caller takes the
///   write side instead.
/// - Writers take turns on a mutex and wait only for the readers already inside, which hold the
///   gate for the length of one table lookup.
/// - A thread that moves to another CPU while inside still leaves through the counter it came in
///   by, so the counts stay exact; two threads on one counter only share its cache line.
final class DecisionGate: Sendable {
  /// One CPU's counters, alone on their cache lines.
  ///
  /// A decision's counts ride on its leaving: a reader that leaves after allowing one request,
  /// the common case, writes `left` and nothing else. Requests allowed are `left` plus
  /// `allowedBeyondLeft`, which makes up the difference for readers that allowed none or
  /// several, and for the write side's decisions, which do not pass through `left`.
  final class CPUCounters: Sendable {
    // A cache line of padding on each side, so that whatever malloc puts next to the object
    // stays off the counters' line.
    private let before = CacheLinePadding()
    /// Readers that came in through this counter, less those that backed out.
    let entered = Atomic<Int>(0)
    /// Readers that came in through this counter and left.
    let left = Atomic<Int>(0)
    /// Requests allowed here, less `left`.
    let allowedBeyondLeft = Atomic<Int>(0)
    /// Requests rejected here.
    let rejected = Atomic<Int>(0)
    private let after = CacheLinePadding()

    /// Adds a write side's decisions to the counts.
    func count(allowed: Int, rejected: Int) {
      if allowed != 0 { allowedBeyondLeft.wrappingAdd(allowed, ordering: .relaxed) }
      if rejected != 0 { self.rejected.wrappingAdd(rejected, ordering: .relaxed) }
    }
  }

  private let counters: [CPUCounters]
  private let counterMask: Int
  /// Whether a writer is in or waiting for readers to leave.
  private let flag = WriterFlag()
  /// Takes writers in turn.
  private let writers = Locked(())

  final class WriterFlag: Sendable {
    // Padded like the counters: readers on every core read this line on every decision, so
    // nothing that is written may share it.
    private let before = CacheLinePadding()
    let raised = Atomic<Bool>(false)
    private let after = CacheLinePadding()
  }

  init() {
    // One counter per CPU the system may bring online, rounded up to a power of two.
    let cpus = max(Int(sysconf(Int32(_SC_NPROCESSORS_CONF))), 1)
    var count = 1
    while count < min(cpus, 1_024) { count *= 2 }
    counters = (0..<count).map { _ in CPUCounters() }
    counterMask = count - 1
  }

  /// Comes in as a reader, unless a writer is in: then `nil`, and the caller goes through
  /// ``write(_:)``. A reader may read the guarded structure and change it only through
  /// atomics, and must leave through ``leave(_:allowed:rejected:)`` with the counters it got
  /// here, adding its decisions to them.
  ///
  /// An enter and leave pair rather than a method that takes a closure: the decision path
  /// stays one function, with no closure context to build and no result to pass through
  /// memory.
  @inline(__always)
  func enter() -> Unmanaged<CPUCounters>? {
    let index = Int(CCurrentCPU_current()) & counterMask
    // Borrowed without a retain: a retain would be a write to the object's header, the very
    // line the counters keep to one core.
    let counters = Unmanaged.passUnretained(self.counters[index])
    // Sequentially consistent on both sides: either the writer sees this reader's count, or
    // this reader sees the writer's flag (or both).
    _ = counters._withUnsafeGuaranteedRef { $0.entered.wrappingAdd(1, ordering: .sequentiallyConsistent) }
    if flag.raised.load(ordering: .sequentiallyConsistent) {
      _ = counters._withUnsafeGuaranteedRef { $0.entered.wrappingSubtract(1, ordering: .releasing) }
      return nil
    }
    return counters
  }

  /// Leaves as a reader that came in through `counters` and allowed and rejected the
  /// requests given.
  @inline(__always)
  func leave(_ counters: Unmanaged<CPUCounters>, allowed: Int = 0, rejected: Int = 0) {
    counters._withUnsafeGuaranteedRef { counters in
      if allowed != 1 { counters.allowedBeyondLeft.wrappingAdd(allowed &- 1, ordering: .relaxed) }
      if rejected != 0 { counters.rejected.wrappingAdd(rejected, ordering: .relaxed) }
      counters.left.wrappingAdd(1, ordering: .releasing)
    }
  }

  /// Runs `body`, which only reads, as a reader; if a writer is in, after it, on the write
  /// side. Decides nothing.
  @inline(__always)
  func read<R: Sendable>(_ body: () -> R) -> R {
    if let counters = enter() {
      let result = body()
      leave(counters)
      return result
    }
    return write { _ in body() }
  }

  /// Runs `body` with no reader or other writer inside, with counts to add its decisions to.
  func write<R: Sendable>(_ body: (CPUCounters) -> R) -> R {
    writers.withLock { _ in
      flag.raised.store(true, ordering: .sequentiallyConsistent)
      for counters in self.counters { waitForReaders(of: counters) }
      defer { flag.raised.store(false, ordering: .releasing) }
      let index = Int(CCurrentCPU_current()) & counterMask
      return Unmanaged.passUnretained(counters[index])._withUnsafeGuaranteedRef(body)
    }
  }

  /// Waits until every reader that came in through `counters` before the flag went up has left.
  ///
  /// Readers that come in later see the flag and back out. So if, reading `entered` first and
  /// `left` second, `left` has caught up with `entered`, every reader counted in `entered` has
  /// left: one still inside would have kept `left` below it.
  private func waitForReaders(of counters: CPUCounters) {
    var spins = 0
    while true {
      let entered = counters.entered.load(ordering: .sequentiallyConsistent)
      if counters.left.load(ordering: .acquiring) == entered { return }
      // Readers stay for one lookup; if one is still in after a while, its thread was
      // descheduled, and spinning only keeps it from running again.
      spins += 1
      if spins >= 128 {
        sched_yield()
      }
    }
  }

  /// Requests allowed and rejected so far, over all CPUs: exact once decisions stop; while
  /// they run, a few in flight may be missing or, for a moment, counted as allowed.
  func totals() -> (allowed: Int, rejected: Int) {
    var allowed = 0
    var rejected = 0
    for counters in self.counters {
      allowed &+=
        counters.left.load(ordering: .relaxed) &+ counters.allowedBeyondLeft.load(ordering: .relaxed)
      rejected &+= counters.rejected.load(ordering: .relaxed)
    }
    return (allowed, rejected)
  }
}
