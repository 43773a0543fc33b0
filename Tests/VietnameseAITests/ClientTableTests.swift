import TestSupport
import Testing

@testable import VietnameseAI

@Suite("ClientTable")
struct ClientTableTests {
  @Test("behaves like a Dictionary under random inserts, updates, removals and sweeps")
  func matchesDictionary() {
    var table = ClientTable(empty: 0)
    var model: [String: Int] = [:]
    var rng = SplitMix64(seed: 42)
    for step in 0..<50_000 {
      let key = "k\(rng.next() % 3_000)"
      switch rng.next() % 10 {
      case 0..<6:
        let seen = table.update(key: key, hash: key.hashValue, default: 0) { value -> Int in
          value += 1
          return value
        }
        model[key, default: 0] += 1
        #expect(seen == model[key])
      case 6..<9:
        let removed = table.remove(key: key, hash: key.hashValue)
        let wasPresent = model.removeValue(forKey: key) != nil
        #expect(removed == wasPresent)
      default:
        if step % 100 == 0 {
          let removed = table.removeAll { $0 % 2 == 0 }
          let before = model.count
          model = model.filter { $0.value % 2 != 0 }
          #expect(removed == before - model.count)
        }
      }
      #expect(table.count == model.count)
    }
    for (key, value) in model {
      #expect(table.value(key: key, hash: key.hashValue) == value)
    }
    #expect(table.value(key: "absent", hash: "absent".hashValue) == nil)
  }

  @Test("keys whose hashes collide are kept apart")
  func collisions() {
    var table = ClientTable(empty: "")
    for i in 0..<100 {
      table.update(key: "id\(i)", hash: 12_345, default: "v\(i)") { _ in () }
    }
    #expect(table.count == 100)
    let removed = table.remove(key: "id50", hash: 12_345)
    #expect(removed)
    for i in 0..<100 where i != 50 {
      #expect(table.value(key: "id\(i)", hash: 12_345) == "v\(i)")
    }
    #expect(table.value(key: "id50", hash: 12_345) == nil)
  }
}
