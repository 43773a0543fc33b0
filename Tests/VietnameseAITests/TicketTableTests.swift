import TestSupport
import Testing

@testable import VietnameseAI

@Suite("TicketTable")
struct TicketTableTests {
  @Test(
    "behaves like a Dictionary: tickets in sequence, some long-lived, ended in any order",
    arguments: [1, 2, 3] as [UInt64]
  )
  func matchesDictionary(seed: UInt64) {
    var table = TicketTable<Int>()
    var model: [UInt64: Int] = [:]
    var random = SplitMix64(seed: seed)
    // Ticket ids start at 1; 0 marks a free slot.
    var next: UInt64 = 1
    var displaced = 0
    for step in 0..<60_000 {
      switch random.next() % 10 {
      case 0..<4:
        // Tickets come in sequence, as the batcher hands them out.
        table.insert(step, forKey: next)
        model[next] = step
        next += 1
      case 4..<7:
        // Most tickets end soon after they came.
        let recent = next - min(next, 1 + random.next() % 16)
        #expect(table.removeValue(forKey: recent) == model.removeValue(forKey: recent))
      case 7:
        // Some end at any age; the rest live on while thousands of later tickets pass, and
        // later tickets land on their slots.
        guard let key = model.keys.randomElement(using: &random) else { continue }
        #expect(table.removeValue(forKey: key) == model.removeValue(forKey: key))
      case 8:
        guard let key = model.keys.randomElement(using: &random) else { continue }
        guard let index = table.index(forKey: key) else {
          Issue.record("ticket \(key) not found")
          return
        }
        table.update(at: index) { $0 += 1 }
        model[key]! += 1
        #expect(table[key] == model[key])
      default:
        let key = random.next() % (next + 100)
        #expect(table[key] == model[key], "ticket \(key)")
        #expect(table.contains(key) == (model[key] != nil), "ticket \(key)")
      }
      #expect(table.count == model.count)
      displaced = max(displaced, table.displacedCount)
    }
    #expect(displaced > 0, "no ticket ever found its slot taken: the dictionary went untested")
    for (key, value) in model { #expect(table[key] == value) }
    for key in model.keys { table.removeValue(forKey: key) }
    #expect(table.count == 0)
  }
}
