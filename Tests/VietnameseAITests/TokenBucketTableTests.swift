import Dispatch
import TestSupport
import Testing

@testable import VietnameseAI

@Suite("TokenBucketTable")
struct TokenBucketTableTests {
  /// A bucket whose token count stands for a value under test.
  private static func bucket(_ value: Int) -> TokenBucketAllowance {
    var bucket = TokenBucketAllowance(now: 0, limits)
    bucket.tokens = Double(value)
    return bucket
  }

  private static let limits = LimitParameters(
    goiY: 1,
    capacity: 1,
    windowNanos: 1,
    slotNanos: 1,
    refillPerNano: 1
  )

  @Test("behaves like a Dictionary under random inserts, updates, removals and sweeps")
  func matchesDictionary() {
    let table = TokenBucketTable()
    var model: [String: Int] = [:]
    var rng = SplitMix64(seed: 7)
    for step in 0..<30_000 {
      let key = "k\(rng.next() % 2_000)"
      switch rng.next() % 10 {
      case 0..<6:
        let seen = table.update(key: key, hash: key.hashValue, new: { Self.bucket(0) }) { bucket in
          bucket.tokens += 1
          return (Int(bucket.tokens), 1, 0)
        }
        model[key, default: 0] += 1
        #expect(seen == model[key])
      case 6..<9:
        let removed = table.remove(key: key, hash: key.hashValue)
        #expect(removed == (model.removeValue(forKey: key) != nil))
      default:
        if step % 50 == 0 {
          let removed = table.removeAll { Int($0.tokens) % 2 == 0 }
          let before = model.count
          model = model.filter { $0.value % 2 != 0 }
          #expect(removed == before - model.count)
        }
      }
      #expect(table.count == model.count)
    }
    for (key, value) in model {
      #expect(table.value(key: key, hash: key.hashValue).map { Int($0.tokens) } == value)
    }
    #expect(table.value(key: "absent", hash: "absent".hashValue) == nil)
  }

  @Test("keys whose hashes collide are kept apart, through removals")
  func collisions() {
    let table = TokenBucketTable()
    for i in 0..<100 {
      table.update(key: "id\(i)", hash: 99, new: { Self.bucket(i) }) { _ in ((), 0, 0) }
    }
    #expect(table.remove(key: "id50", hash: 99))
    for i in 0..<100 where i != 50 {
      #expect(table.value(key: "id\(i)", hash: 99).map { Int($0.tokens) } == i)
    }
    #expect(table.value(key: "id50", hash: 99) == nil)
  }

  @Test("no update is lost while other threads insert, grow the table and remove")
  func concurrentUpdates() {
    let table = TokenBucketTable()
    let threads = 4
    let rounds = 5_000
    DispatchQueue.concurrentPerform(iterations: threads + 1) { thread in
      if thread == threads {
        // The writer: new clients (which grow the table several times) and removals.
        for i in 0..<rounds {
          let key = "cold-\(i)"
          table.update(key: key, hash: key.hashValue, new: { Self.bucket(0) }) { _ in ((), 0, 0) }
          if i % 3 == 0 { table.remove(key: key, hash: key.hashValue) }
          if i % 1_000 == 0 { _ = table.removeAll { _ in false } }
        }
        return
      }
      for i in 0..<rounds {
        // Every thread counts on one shared key and on one of its own.
        for key in ["hot", "own-\(thread)-\(i % 10)"] {
          table.update(key: key, hash: key.hashValue, new: { Self.bucket(0) }) { bucket in
            bucket.tokens += 1
            return ((), 1, 0)
          }
        }
      }
    }
    #expect(table.value(key: "hot", hash: "hot".hashValue)?.tokens == Double(threads * rounds))
    for thread in 0..<threads {
      for j in 0..<10 {
        let key = "own-\(thread)-\(j)"
        #expect(table.value(key: key, hash: key.hashValue)?.tokens == Double(rounds / 10))
      }
    }
    let totals = table.totals()
    #expect(totals.allowed == 2 * threads * rounds)
    #expect(totals.rejected == 0)
    #expect(table.count == 1 + threads * 10 + rounds - (rounds + 2) / 3)
  }

  @Test("a sweep removes idle clients while decisions for busy ones go on, losing none of them")
  func sweepDuringDecisions() {
    let table = TokenBucketTable()
    let idle = 5_000
    for i in 0..<idle {
      let key = "idle-\(i)"
      table.update(key: key, hash: key.hashValue, new: { Self.bucket(-1) }) { _ in ((), 0, 0) }
    }
    let rounds = 20_000
    let removed = Counter()
    DispatchQueue.concurrentPerform(iterations: 3) { thread in
      if thread == 2 {
        // Idle clients hold -1 tokens; busy ones count up from 0.
        removed.increment(by: table.removeAll { $0.tokens < 0 })
        return
      }
      for i in 0..<rounds {
        let key = "busy-\(thread)-\(i % 100)"
        table.update(key: key, hash: key.hashValue, new: { Self.bucket(0) }) { bucket in
          bucket.tokens += 1
          return ((), 1, 0)
        }
      }
    }
    #expect(removed.current == idle)
    #expect(table.count == 200)
    for thread in 0..<2 {
      for j in 0..<100 {
        let key = "busy-\(thread)-\(j)"
        #expect(table.value(key: key, hash: key.hashValue)?.tokens == Double(rounds / 100))
      }
    }
  }

  @Test("counts decisions that allow none, one or several requests, on both sides of the gate")
  func counts() {
    let table = TokenBucketTable()
    // The first update of a key runs on the write side, later ones on the read side.
    for (allowed, rejected) in [(1, 0), (0, 1), (3, 2), (0, 0), (1, 0), (0, 4)] {
      table.update(key: "k", hash: 1, new: { Self.bucket(0) }) { _ in ((), allowed, rejected) }
    }
    _ = table.value(key: "k", hash: 1)
    let totals = table.totals()
    #expect(totals.allowed == 5)
    #expect(totals.rejected == 7)
  }
}
