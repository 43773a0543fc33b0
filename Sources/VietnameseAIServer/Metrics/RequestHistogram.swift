import Synchronization

/// A Prometheus histogram fed a batch at a time without a lock, rendered in the text format
/// at each scrape.
///
/// swift-prometheus's histograms take a lock per value. Recording every request's queue time
/// and latency from both event loops at once made that lock contended, and a contended lock
/// sleeps in the kernel: predicts ran at a quarter of their rate. Here a batch's values are
/// counted locally, then added with a few relaxed atomic additions.
final class RequestHistogram: Sendable {
  private final class Cell: Sendable {
    let value = Atomic<Int>(0)
  }

  /// Upper bounds of the buckets, in the recorded unit.
  private let bounds: [Int64]
  /// How many recorded units make one exported unit (1e9 for nanoseconds as seconds).
  private let scale: Double
  private let labels: String
  private let counts: [Cell]
  private let sum = Atomic<Int>(0)
  private let count = Atomic<Int>(0)

  init(bounds: [Int64], scale: Double, labels: String) {
    self.bounds = bounds
    self.scale = scale
    self.labels = labels
    self.counts = bounds.map { _ in Cell() }
  }

  /// A histogram of durations, recorded in nanoseconds and exported in seconds.
  convenience init(durations: [Duration], labels: String) {
    self.init(
      bounds: durations.map {
        $0.components.seconds * 1_000_000_000 + $0.components.attoseconds / 1_000_000_000
      },
      scale: 1e9,
      labels: labels
    )
  }

  func record(_ value: Int64) {
    record(CollectionOfOne(value))
  }

  /// Records `values`, each plus `offset`.
  func record(_ values: some Collection<Int64>, plus offset: Int64 = 0) {
    guard !values.isEmpty else { return }
    withUnsafeTemporaryAllocation(of: Int.self, capacity: bounds.count) { local in
      local.initialize(repeating: 0)
      var total: Int64 = 0
      for value in values {
        let value = value + offset
        total += value
        // Counts per bucket here; made cumulative when rendered.
        var index = 0
        while index < bounds.count && bounds[index] < value { index += 1 }
        if index < bounds.count { local[index] += 1 }
      }
      for index in local.indices where local[index] > 0 {
        counts[index].value.add(local[index], ordering: .relaxed)
      }
      sum.add(Int(total), ordering: .relaxed)
      count.add(values.count, ordering: .relaxed)
    }
  }

  /// The series of this histogram for the family `name`.
  func render(name: String, into text: inout String) {
    let prefix = labels.isEmpty ? "" : labels + ","
    var cumulative = 0
    for (bound, cell) in zip(bounds, counts) {
      cumulative += cell.value.load(ordering: .relaxed)
      text += "\(name)_bucket{\(prefix)le=\"\(Double(bound) / scale)\"} \(cumulative)\n"
    }
    let total = count.load(ordering: .relaxed)
    text += "\(name)_bucket{\(prefix)le=\"+Inf\"} \(max(total, cumulative))\n"
    let suffix = labels.isEmpty ? "" : "{\(labels)}"
    text += "\(name)_sum\(suffix) \(Double(sum.load(ordering: .relaxed)) / scale)\n"
    text += "\(name)_count\(suffix) \(max(total, cumulative))\n"
  }
}
