import NIOCore
import Synchronization
import TestSupport
import Testing
@_spi(Locking) import VietnameseAIConcurrency
import VietnameseAIWire

@testable import VietnameseAIClient

/// The client's table of calls in flight, held to a plain dictionary: ids are never given out
/// twice while in use, every call is answered exactly once, and an abandoned call keeps its id
/// (and its place against the server's limit) until the server's terminal frame.
@Suite("Client call table")
struct CallTableTests {
  /// Counts each call's answers, by the id the call learns once registered.
  final class Answers: Sendable {
    let counts = Locked([UInt32: Int]())

    final class Tag: Sendable {
      let id: Atomic<UInt32>
      init(_ id: UInt32 = 0) { self.id = Atomic(id) }
    }

    /// Ids answered a different number of times than `expected` says (a few, for a message).
    func differences(from expected: [UInt32: Int]) -> [(id: UInt32, answers: Int, expected: Int)] {
      let counts = self.counts.withLock { $0 }
      let ids = Set(counts.keys).union(expected.keys).sorted()
      let wrong = ids.filter { counts[$0] != expected[$0] }
      return wrong.prefix(5).map { ($0, counts[$0] ?? 0, expected[$0] ?? 0) }
    }

    func call(_ tag: Tag) -> CallTable.Call {
      .unary { _ in self.counts.withLock { $0[tag.id.load(ordering: .relaxed), default: 0] += 1 } }
    }
  }

  @Test("random registrations, answers, abandons and withdrawals against a dictionary", arguments: [1, 2, 3])
  func againstDictionary(seed: UInt64) {
    var random = SplitMix64(seed: seed)
    let table = CallTable()
    table.setLimit(300)
    let answers = Answers()
    // Ids the table holds: live or abandoned (still counted), as the reference sees them.
    var live: Set<UInt32> = []
    var abandoned: Set<UInt32> = []
    var answered: [UInt32: Int] = [:]
    for _ in 0..<20_000 {
      switch random.next() % 6 {
      case 0, 1:
        let tag = Answers.Tag()
        let outcome = table.register(answers.call(tag))
        if live.count + abandoned.count >= 300 {
          guard case .failure(let refusal) = outcome else {
            Issue.record("a call beyond the limit was registered")
            return
          }
          #expect(refusal.code == .resourceExhausted)
          continue
        }
        guard case .success(let id) = outcome else {
          Issue.record("refused below the limit: \(outcome)")
          return
        }
        tag.id.store(id, ordering: .relaxed)
        #expect(id != 0 && !live.contains(id) && !abandoned.contains(id), "id \(id) given out twice")
        live.insert(id)
      case 2:
        // The server answers: a live call, an abandoned one, or an id it made up.
        let pool = Array(live) + Array(abandoned) + [UInt32(truncatingIfNeeded: random.next())]
        let id = pool[Int(random.next() % UInt64(pool.count))]
        table.complete(id, with: .success(.result(ByteBuffer())))
        if live.remove(id) != nil { answered[id, default: 0] += 1 }
        abandoned.remove(id)
      case 3:
        guard let id = live.randomElement(using: &random) else { continue }
        #expect(table.abandon(id, with: .cancelledByCaller))
        live.remove(id)
        abandoned.insert(id)
        answered[id, default: 0] += 1
      case 4:
        guard let id = live.randomElement(using: &random) else { continue }
        table.withdraw(id, with: .cancelledByCaller)
        live.remove(id)
        answered[id, default: 0] += 1
      default:
        // An abandoned call is not answered again, and its id stays taken.
        guard let id = abandoned.randomElement(using: &random) else { continue }
        #expect(!table.abandon(id, with: .cancelledByCaller))
      }
    }
    // Ids recur over 20,000 calls only after wrapping, which never happens here, so the
    // counts by id are counts by call.
    #expect(answers.differences(from: answered).isEmpty, "\(answers.differences(from: answered))")
    table.closeAll(with: .unavailable("closed"))
    for id in live { answered[id, default: 0] += 1 }
    #expect(answers.differences(from: answered).isEmpty, "\(answers.differences(from: answered))")
    #expect(answered.values.allSatisfy { $0 == 1 })
  }

  @Test("a call that outlives thousands of others keeps its id, and new ids skip it")
  func longLivedCall() {
    let table = CallTable()
    let answers = Answers()
    guard case .success(let old) = table.register(answers.call(Answers.Tag(1))) else {
      Issue.record("not registered")
      return
    }
    for _ in 0..<10_000 {
      guard case .success(let id) = table.register(answers.call(Answers.Tag(2))) else {
        Issue.record("not registered")
        return
      }
      #expect(id != old)
      table.complete(id, with: .success(.result(ByteBuffer())))
    }
    table.complete(old, with: .success(.result(ByteBuffer())))
    #expect(answers.counts.withLock { $0 } == [1: 1, 2: 10_000])
  }
  @Test("a call with a deadline is given up deadline + grace after the first sweep that sees it")
  func expiryCountsFromTheFirstSweep() {
    let table = CallTable(grace: .milliseconds(500))
    // Each call's answers: the error's code, or `nil` for a result.
    let outcomes = Locked([UInt32: [RPCError.Code?]]())
    func register(deadline: Duration?) -> UInt32 {
      let tag = Answers.Tag()
      let call = CallTable.Call.unary { result in
        let code: RPCError.Code? =
          switch result {
          case .success: nil
          case .failure(let error): error.code
          }
        outcomes.withLock { $0[tag.id.load(ordering: .relaxed), default: []].append(code) }
      }
      guard case .success(let id) = table.register(call, deadline: deadline) else { return 0 }
      tag.id.store(id, ordering: .relaxed)
      return id
    }
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
    let first = register(deadline: .seconds(1))
    let unbounded = register(deadline: nil)
    #expect(table.expire(now: start).isEmpty)
    // Registered after the first sweep: its countdown starts at the second.
    let second = register(deadline: .seconds(1))
    #expect(table.expire(now: start + .milliseconds(100)).isEmpty)
    #expect(table.expire(now: start + .milliseconds(1_499)).isEmpty)
    #expect(table.expire(now: start + .milliseconds(1_500)) == [first])
    #expect(table.expire(now: start + .milliseconds(1_599)).isEmpty)
    #expect(table.expire(now: start + .milliseconds(1_600)) == [second])
    #expect(table.expire(now: start + .seconds(3_600)).isEmpty)
    // The server's late answers find the given-up calls ended; the unbounded call still waits.
    table.complete(first, with: .success(.result(ByteBuffer())))
    table.complete(second, with: .success(.result(ByteBuffer())))
    table.complete(unbounded, with: .success(.result(ByteBuffer())))
    #expect(
      outcomes.withLock { $0 } == [first: [.deadlineExceeded], second: [.deadlineExceeded], unbounded: [nil]]
    )
  }

  @Test("a call refused before its request is sent says so; one failed after it was sent does not")
  func neverSent() {
    let table = CallTable()
    let sent = table.register(.unary { _ in })
    guard case .success = sent else {
      Issue.record("registered")
      return
    }
    table.goAway()
    guard case .failure(let draining) = table.register(.unary { _ in }) else {
      Issue.record("refused")
      return
    }
    #expect(draining.neverSent && draining.code == .unavailable)
    let failure = Locked<RPCError?>(nil)
    let table2 = CallTable()
    guard case .success = table2.register(.unary { result in failure.withLock { $0 = result.failure } })
    else {
      Issue.record("registered")
      return
    }
    table2.closeAll(with: RPCError(code: .unavailable, message: "closed"))
    #expect(failure.withLock { $0 }?.neverSent == false, "it may have reached the server")
    guard case .failure(let closed) = table2.register(.unary { _ in }) else {
      Issue.record("refused")
      return
    }
    #expect(closed.neverSent)
  }
}

extension Result {
  fileprivate var failure: Failure? {
    if case .failure(let error) = self { return error }
    return nil
  }
}
