import DequeModule
import HeapModule

/// A min-priority queue of deadlines that costs O(1) for the usual order of arrival.
///
/// The requests of a server mostly come with the same timeout, so each new deadline is
/// usually the latest so far. Those go to the end of a sorted run (a deque) at O(1); only a
/// deadline earlier than the run's last goes to a heap. The earliest deadline is the smaller of
/// the run's first and the heap's minimum.
struct DeadlineQueue<Element: Comparable> {
  /// Ascending.
  private var run = Deque<Element>()
  private var heap = Heap<Element>()

  var count: Int { run.count + heap.count }

  var min: Element? {
    switch (run.first, heap.min) {
    case (let first?, let least?): Swift.min(first, least)
    case (let first?, nil): first
    case (nil, let least?): least
    case (nil, nil): nil
    }
  }

  mutating func insert(_ element: Element) {
    if let last = run.last, element < last {
      heap.insert(element)
    } else {
      run.append(element)
    }
  }

  @discardableResult
  mutating func removeMin() -> Element? {
    switch (run.first, heap.min) {
    case (let first?, let least?): least < first ? heap.removeMin() : run.removeFirst()
    case (_?, nil): run.removeFirst()
    case (nil, _?): heap.removeMin()
    case (nil, nil): nil
    }
  }

  /// Keeps the elements `isIncluded` accepts, in O(n).
  mutating func filter(_ isIncluded: (Element) -> Bool) {
    // In place, keeping the run's order and its storage.
    run.removeAll { !isIncluded($0) }
    if !heap.isEmpty { heap = Heap(heap.unordered.filter(isIncluded)) }
  }

  mutating func removeAll() {
    run.removeAll()
    heap = Heap()
  }
}
