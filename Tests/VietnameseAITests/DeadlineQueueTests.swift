import TestSupport
import Testing

@testable import VietnameseAI

/// The deadline queue against a sorted array: the same minimum after every step, whatever
/// order the deadlines come in.
@Suite("Deadline queue")
struct DeadlineQueueTests {
  @Test(
    "random inserts, removals and filters agree with a sorted array",
    arguments: [
      // Mostly in order, as a server's deadlines come; shuffled; all equal.
      (seed: UInt64(1), spread: 4), (seed: 2, spread: 1_000_000), (seed: 3, spread: 0),
    ]
  )
  func againstSortedArray(seed: UInt64, spread: Int) {
    var random = SplitMix64(seed: seed)
    var queue = DeadlineQueue<Int>()
    var reference: [Int] = []
    var clock = 0
    for step in 0..<20_000 {
      switch random.next() % 10 {
      case 0..<6:
        clock += Int(random.next() % 3)
        // A deadline near the latest (late arrivals with a shorter timeout come before it).
        let deadline = clock + 1_000 - (spread == 0 ? 0 : Int(random.next() % UInt64(spread)))
        queue.insert(deadline)
        reference.append(deadline)
        reference.sort()
      case 6..<9:
        let removed = queue.removeMin()
        #expect(removed == reference.first, "step \(step)")
        if !reference.isEmpty { reference.removeFirst() }
      default:
        let parity = Int(random.next() % 2)
        queue.filter { $0 % 2 == parity }
        reference.removeAll { $0 % 2 != parity }
      }
      #expect(queue.min == reference.first, "step \(step)")
      #expect(queue.count == reference.count, "step \(step)")
      if queue.min != reference.first || queue.count != reference.count { return }
    }
    queue.removeAll()
    #expect(queue.min == nil && queue.count == 0)
  }
}
