import Testing

@testable import VietnameseAIClient

/// The pool's view of its servers, on plain values.
@Suite("Endpoint book")
struct EndpointBookTests {
  typealias Book = EndpointBook<String>
  let now = ContinuousClock.now

  func ready(_ count: Int) -> Book {
    var book = Book(count: count, firstDelay: .milliseconds(100), maxDelay: .seconds(1))
    for index in 0..<count { book.connected(index, "c\(index)") }
    return book
  }

  @Test("calls go to the server with the fewest in flight; ties take turns")
  func leastInFlight() {
    var book = ready(3)
    var picked: [Int] = []
    for _ in 0..<3 {
      guard case .use(let index, _) = book.pick(excluding: [], now: now) else {
        Issue.record("none")
        return
      }
      picked.append(index)
    }
    #expect(Set(picked) == [0, 1, 2])
    book.finished(1)
    guard case .use(1, "c1") = book.pick(excluding: [], now: now) else {
      Issue.record("1 has fewest")
      return
    }
    guard case .use(let other, _) = book.pick(excluding: [1], now: now), other != 1 else {
      Issue.record("excluded")
      return
    }
  }

  @Test("a new pool connects every server; a failed one waits, doubling up to the maximum")
  func backoff() {
    var book = Book(count: 2, firstDelay: .milliseconds(100), maxDelay: .milliseconds(300))
    guard case .connect([0, 1]) = book.pick(excluding: [], now: now) else {
      Issue.record("connect all")
      return
    }
    guard case .wait = book.pick(excluding: [], now: now) else {
      Issue.record("wait for them")
      return
    }
    book.failed(0, now: now)
    book.failed(1, now: now)
    guard case .unavailable(let until) = book.pick(excluding: [], now: now) else {
      Issue.record("none")
      return
    }
    #expect(until == now + .milliseconds(100))
    guard case .connect([0, 1]) = book.pick(excluding: [], now: now + .milliseconds(100)) else {
      Issue.record("tried again after the delay")
      return
    }
    book.failed(0, now: now)
    book.failed(0, now: now)
    book.failed(0, now: now)
    guard case .backingOff(let wait) = book.endpoints[0].state else {
      Issue.record("backing off")
      return
    }
    #expect(wait == now + .milliseconds(300), "100, 200, then the maximum")
    book.connected(1, "c1")
    guard case .use(1, "c1") = book.pick(excluding: [], now: now) else {
      Issue.record("use the ready one")
      return
    }
    #expect(book.endpoints[1].nextDelay == .milliseconds(100), "a connection resets the delay")
  }
}
