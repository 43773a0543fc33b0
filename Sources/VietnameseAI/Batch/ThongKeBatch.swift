/// A snapshot of a ``MayChuBatch``'s statistics.
///
/// Encoded as JSON it uses the seed's keys (`latency_p50`, `latency_p95`, `batch_size_tb`,
/// `queue_size`) plus the extra figures below, so the same dictionary a Python caller printed
/// comes out of `JSONEncoder`. Latencies are seconds from the moment a request entered the
/// queue to the moment its result was ready; percentiles come from an HdrHistogram.
public struct ThongKeBatch: Codable, Sendable, Equatable {
  /// Median latency of completed requests, in seconds.
  public var latencyP50: Double
  /// 95th percentile latency of completed requests, in seconds.
  public var latencyP95: Double
  /// 99th percentile latency of completed requests, in seconds.
  public var latencyP99: Double
  /// Mean number of requests per batch handed to the model.
  public var batchSizeTB: Double
  /// Requests waiting in the queue right now.
  public var queueSize: Int
  /// Every request submitted, accepted or not (an input of `duDoanBatch` counts as one).
  public var requestsTotal: Int
  /// Requests answered with a result.
  public var completed: Int
  /// Requests whose batch failed (the model threw or returned the wrong number of outputs).
  public var failed: Int
  /// Requests refused at once: queue full, or not running.
  public var rejected: Int
  /// Requests failed because their deadline passed.
  public var deadlineExceeded: Int
  /// Requests whose caller was cancelled.
  public var cancelled: Int
  /// Batches handed to the model.
  public var batches: Int
  /// Batches running right now (at most `soWorker`).
  public var workersBusy: Int
  /// Completed requests per second since `batDau()`.
  public var throughput: Double

  enum CodingKeys: String, CodingKey {
    case latencyP50 = "latency_p50"
    case latencyP95 = "latency_p95"
    case latencyP99 = "latency_p99"
    case batchSizeTB = "batch_size_tb"
    case queueSize = "queue_size"
    case requestsTotal = "requests_total"
    case completed
    case failed
    case rejected
    case deadlineExceeded = "deadline_exceeded"
    case cancelled
    case batches
    case workersBusy = "workers_busy"
    case throughput
  }
}
