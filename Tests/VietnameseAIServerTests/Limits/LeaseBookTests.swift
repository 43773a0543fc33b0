import Testing

@testable import VietnameseAIServer

/// The lease book on plain values: what it decides, what it asks the store for, and when.
@Suite("Lease book")
struct LeaseBookTests {
  typealias Book = LeaseBook<Int>
  let start = ContinuousClock.now
  /// A limit of 100 a second: one unit every 10 ms.
  let interval = Duration.milliseconds(10)

  func book(lease: Int = 10) -> Book {
    Book(leaseSize: lease, unitInterval: interval)
  }

  /// Reserves one request; `waiter` is the number the book queues, if it does.
  func reserve(
    _ book: inout Book,
    cost: Int = 1,
    count: Int = 1,
    at offset: Duration = .zero,
    waiter: Int = 0
  ) -> Book.Reserved {
    book.reserve("c", cost: cost, count: count, now: start + offset) { waiter }
  }

  @Test("a new client waits for one lease, then spends it locally and tops it up at half")
  func leaseThenSpend() {
    var book = book()
    guard case .queued(fetch: 10) = reserve(&book, waiter: 1) else {
      Issue.record("a new client must queue and ask for a lease")
      return
    }
    // Arriving while the lease is on its way: queued behind it, no second call.
    guard case .queued(fetch: nil) = reserve(&book, waiter: 2) else {
      Issue.record("a second request must not ask again")
      return
    }
    let leased = book.leased("c", granted: 10, wanted: 10, retryAfter: .zero, now: start)
    #expect(leased.answered.map(\.0.waiter) == [1, 2])
    #expect(leased.answered.allSatisfy { $0.1 == Book.Decision(allowed: 1, retryAfter: nil) })
    #expect(leased.fetch == nil)  // 8 left: more than half
    for _ in 0..<2 {
      guard case .decided(let decision, fetch: nil) = reserve(&book) else {
        Issue.record("held units must decide at once, without a call")
        return
      }
      #expect(decision.allowed == 1)
    }
    // 8 - 3 = 5 left, half a lease: topped up in the background.
    guard case .decided(let decision, fetch: 5) = reserve(&book) else {
      Issue.record("a lease half spent must be topped up")
      return
    }
    #expect(decision.allowed == 1)
    guard case .decided(_, fetch: nil) = reserve(&book) else {
      Issue.record("one top-up at a time")
      return
    }
  }

  @Test("a store that grants nothing blocks the client until a whole lease has built up")
  func refusedUntilLeaseBuildsUp() {
    var book = book()
    _ = reserve(&book, waiter: 1)
    let leased = book.leased("c", granted: 0, wanted: 10, retryAfter: .milliseconds(4), now: start)
    let wait = Duration.milliseconds(4) + interval * 9
    #expect(leased.answered.map(\.1) == [Book.Decision(allowed: 0, retryAfter: wait)])
    #expect(leased.fetch == nil)
    guard case .decided(let decision, fetch: nil) = reserve(&book, at: .milliseconds(50)) else {
      Issue.record("a blocked client must be refused here, without a call")
      return
    }
    #expect(decision == Book.Decision(allowed: 0, retryAfter: wait - .milliseconds(50)))
    guard case .queued(fetch: 10) = reserve(&book, at: wait) else {
      Issue.record("once the block ends, the store is asked again")
      return
    }
  }

  @Test("a lease the store could not fill is spent, then the client waits a whole lease")
  func partialLease() {
    var book = book()
    _ = reserve(&book, waiter: 1)
    _ = reserve(&book, waiter: 2)
    let leased = book.leased("c", granted: 3, wanted: 10, retryAfter: .zero, now: start)
    #expect(leased.answered.map(\.1.allowed) == [1, 1])
    #expect(leased.fetch == nil)
    guard case .decided(let spent, fetch: nil) = reserve(&book, at: .milliseconds(1)) else {
      Issue.record("the unit still held must be spent")
      return
    }
    #expect(spent.allowed == 1)
    guard case .decided(let refused, fetch: nil) = reserve(&book, at: .milliseconds(1)) else {
      Issue.record("with nothing held and the limit reached, refused without a call")
      return
    }
    #expect(refused == Book.Decision(allowed: 0, retryAfter: interval * 10 - .milliseconds(1)))
  }

  @Test("waiters are answered in order: those the lease cannot cover are refused")
  func shortLease() {
    var book = book(lease: 4)
    _ = reserve(&book, count: 3, waiter: 1)
    _ = reserve(&book, count: 3, waiter: 2)
    let leased = book.leased("c", granted: 6, wanted: 6, retryAfter: .zero, now: start)
    #expect(leased.answered.map(\.1.allowed) == [3, 3])
    _ = reserve(&book, count: 5, waiter: 3)
    let second = book.leased("c", granted: 3, wanted: 5, retryAfter: .zero, now: start)
    #expect(second.answered.map(\.1) == [Book.Decision(allowed: 3, retryAfter: interval * 4)])
  }

  @Test("a request costing more than a lease asks for what it costs")
  func costlyRequest() {
    var book = book(lease: 10)
    guard case .queued(fetch: 32) = reserve(&book, cost: 32) else {
      Issue.record("a lease must cover the request")
      return
    }
  }

  @Test("a failed lease hands its waiters back, and the next request asks again")
  func failedLease() {
    var book = book()
    _ = reserve(&book, waiter: 1)
    _ = reserve(&book, cost: 2, waiter: 2)
    let waiting = book.leaseFailed("c")
    #expect(waiting.map(\.waiter) == [1, 2])
    #expect(waiting.map(\.cost) == [1, 2])
    guard case .queued(fetch: 10) = reserve(&book, waiter: 3) else {
      Issue.record("the next request must ask the store again")
      return
    }
  }

  @Test("idle clients are forgotten, not those with work on the way")
  func forgetIdle() {
    var book = book()
    _ = book.reserve("idle", cost: 1, count: 1, now: start) { 1 }
    _ = book.leased("idle", granted: 10, wanted: 10, retryAfter: .zero, now: start)
    _ = book.reserve("waiting", cost: 1, count: 1, now: start) { 2 }
    book.forget(idleSince: start + .seconds(1))
    #expect(Set(book.clients.keys) == ["waiting"])
  }
}
