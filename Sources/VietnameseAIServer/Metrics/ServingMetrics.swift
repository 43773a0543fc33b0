import Prometheus
import Synchronization
@_spi(Batching) import VietnameseAI
@_spi(Locking) import VietnameseAIConcurrency

/// The server's Prometheus metrics: what each model, the stream server and the rate limiter
/// did, both doors alike.
///
/// Histograms are fed by the components' reports (one per batch, one per stream), so a
/// request on the hot path costs no metric update of its own; the per-model ones count a
/// whole batch without a lock (``RequestHistogram``). Counters and gauges that the
/// components count anyway (outcomes, queue sizes, tokens, limiter decisions) are read from
/// their statistics when ``collect()`` runs, just before each scrape. Names follow vLLM's
/// (`vllm:` becomes `vai:`); the README maps them to vLLM's, TGI's and Triton's. No metric has
/// a client label: client ids are unbounded.
final class ServingMetrics: Sendable {
  let registry: PrometheusCollectorRegistry

  private let models: [ModelMetrics]
  private let streams: MayChuStream
  private let limiter: BoGioiHanTocDo
  private let sharedLimit: SharedRateLimit?
  private let store: (up: Gauge, calls: Counter, failures: Counter)
  private let streamOutcomes: [StreamReport.Outcome: Counter]
  private let streamsRejected: Counter
  private let timeToFirstToken: DurationHistogram
  private let timePerOutputToken: DurationHistogram
  private let streamDuration: DurationHistogram
  private let generationTokens: Counter
  private let streamsRunning: Gauge
  private let limiterAllowed: Counter
  private let limiterRefused: Counter
  private let openConnections: (binary: Gauge, http: Gauge)
  /// The counts already exported, so that each collection adds only what is new.
  private let exported = Locked(Exported())

  private struct Exported {
    var models: [String: ThongKeBatch] = [:]
    var tokens = 0
    var streamsRejected = 0
    var allowed = 0
    var refused = 0
    var storeCalls = 0
    var storeFailures = 0
  }

  static let latencyBuckets: [Duration] = [
    .microseconds(500), .milliseconds(1), .microseconds(2500), .milliseconds(5),
    .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
    .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5),
    .seconds(10), .seconds(30), .seconds(60), .seconds(120),
  ]
  static let batchSizeBuckets: [Int64] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]

  init(
    registry: PrometheusCollectorRegistry,
    models: [ServedModel],
    streams: MayChuStream,
    limiter: BoGioiHanTocDo,
    sharedLimit: SharedRateLimit?
  ) {
    self.registry = registry
    self.streams = streams
    self.limiter = limiter
    self.sharedLimit = sharedLimit
    self.store = (
      registry.makeGauge(
        descriptor: Self.name(
          "rate_limit_store_up",
          unit: "",
          help: "1 while the shared rate limit store (Redis) answers, 0 while it cannot be reached."
        )
      ),
      registry.makeCounter(
        descriptor: Self.name(
          "rate_limit_store_calls",
          unit: "total",
          help: "Leases asked of the shared store."
        )
      ),
      registry.makeCounter(
        descriptor: Self.name(
          "rate_limit_store_failures",
          unit: "total",
          help: "Leases that failed: the store could not be reached or answered wrongly."
        )
      )
    )
    self.models = models.map { ModelMetrics(model: $0, registry: registry) }
    let outcomes: [(StreamReport.Outcome, String)] = [
      (.done, "done"), (.failed, "failed"), (.timedOut, "timed_out"), (.cancelled, "cancelled"),
    ]
    let streamsHelp = "Streams that ended, by outcome (rejected: refused a slot)."
    self.streamOutcomes = Dictionary(
      uniqueKeysWithValues: outcomes.map { outcome, label in
        (
          outcome,
          registry.makeCounter(
            descriptor: Self.name("streams", unit: "total", help: streamsHelp),
            labels: [("outcome", label)]
          )
        )
      }
    )
    self.streamsRejected = registry.makeCounter(
      descriptor: Self.name("streams", unit: "total", help: streamsHelp),
      labels: [("outcome", "rejected")]
    )
    self.timeToFirstToken = registry.makeDurationHistogram(
      descriptor: Self.name(
        "time_to_first_token",
        unit: "seconds",
        help: "From admission to a stream's first token."
      ),
      buckets: Self.latencyBuckets
    )
    self.timePerOutputToken = registry.makeDurationHistogram(
      descriptor: Self.name(
        "request_time_per_output_token",
        unit: "seconds",
        help: "Mean time between two tokens of a stream (inter-token latency), one value per stream."
      ),
      buckets: Self.latencyBuckets
    )
    self.streamDuration = registry.makeDurationHistogram(
      descriptor: Self.name("stream_duration", unit: "seconds", help: "From admission to a stream's end."),
      buckets: Self.latencyBuckets
    )
    self.generationTokens = registry.makeCounter(
      descriptor: Self.name("generation_tokens", unit: "total", help: "Tokens handed to stream consumers.")
    )
    self.streamsRunning = registry.makeGauge(
      descriptor: Self.name("num_streams_running", unit: "", help: "Streams holding a slot now.")
    )
    let limiterHelp = "Rate limiter decisions (a batch of n inputs counts once, costing n)."
    self.limiterAllowed = registry.makeCounter(
      descriptor: Self.name("rate_limit_decisions", unit: "total", help: limiterHelp),
      labels: [("decision", "allowed")]
    )
    self.limiterRefused = registry.makeCounter(
      descriptor: Self.name("rate_limit_decisions", unit: "total", help: limiterHelp),
      labels: [("decision", "refused")]
    )
    let connectionsHelp = "Open client connections, by door."
    self.openConnections = (
      registry.makeGauge(
        descriptor: Self.name("open_connections", unit: "", help: connectionsHelp),
        labels: [("door", "binary")]
      ),
      registry.makeGauge(
        descriptor: Self.name("open_connections", unit: "", help: connectionsHelp),
        labels: [("door", "http")]
      )
    )
    for (model, metrics) in zip(models, self.models) {
      model.observe { metrics.record($0) }
    }
    streams.observe { [self] in self.record($0) }
  }

  static func name(_ metric: String, unit: String, help: String) -> MetricNameDescriptor {
    MetricNameDescriptor(metricName: "vai:" + metric, unitName: unit, helpText: help)
  }

  private func record(_ report: StreamReport) {
    streamOutcomes[report.outcome]?.increment()
    streamDuration.recordNanoseconds(report.durationNanoseconds)
    if let first = report.firstTokenNanoseconds {
      timeToFirstToken.recordNanoseconds(first)
      if report.tokens > 1 {
        timePerOutputToken.recordNanoseconds((report.durationNanoseconds - first) / Int64(report.tokens - 1))
      }
    }
  }

  /// Brings the counters and gauges read from statistics up to date; call before emitting.
  func collect(binaryConnections: Int, httpConnections: Int) {
    let snapshots = models.map { ($0, $0.model.statistics()) }
    let stream = streams.layThongKe()
    let limits = Self.limits(limiter, sharedLimit)
    let storeNow = sharedLimit?.health.statistics()
    store.up.set(Int64(storeNow.map { $0.up ? 1 : 0 } ?? 0))
    streamsRunning.set(Int64(stream.clientHienTai))
    openConnections.binary.set(Int64(binaryConnections))
    openConnections.http.set(Int64(httpConnections))
    exported.withLock { exported in
      for (metrics, now) in snapshots {
        metrics.export(now, since: exported.models[metrics.model.name])
        exported.models[metrics.model.name] = now
      }
      generationTokens.increment(by: Int64(stream.tokensSent - exported.tokens))
      exported.tokens = stream.tokensSent
      streamsRejected.increment(by: Int64(stream.rejected - exported.streamsRejected))
      exported.streamsRejected = stream.rejected
      limiterAllowed.increment(by: Int64(limits.allowed - exported.allowed))
      exported.allowed = limits.allowed
      limiterRefused.increment(by: Int64(limits.rejected - exported.refused))
      exported.refused = limits.rejected
      if let storeNow {
        store.calls.increment(by: Int64(storeNow.calls - exported.storeCalls))
        exported.storeCalls = storeNow.calls
        store.failures.increment(by: Int64(storeNow.failures - exported.storeFailures))
        exported.storeFailures = storeNow.failures
      }
    }
  }

  /// The decisions of the server's own limiter and of the shared one, together.
  static func limits(_ limiter: BoGioiHanTocDo, _ sharedLimit: SharedRateLimit?) -> ThongKeGioiHan {
    var limits = limiter.layThongKe()
    guard let shared = sharedLimit?.statistics() else { return limits }
    limits.allowed += shared.allowed
    limits.rejected += shared.rejected
    limits.requestsTotal = limits.allowed + limits.rejected
    limits.clients += shared.clients
    limits.tyLeTuChoi = limits.requestsTotal == 0 ? 0 : Double(limits.rejected) / Double(limits.requestsTotal)
    return limits
  }

  /// The per-model histograms fed by batch reports, which render themselves (see
  /// ``RequestHistogram``): family name, help, and the histogram of each model.
  private static var modelHistograms: [(String, String, KeyPath<ModelMetrics, RequestHistogram>)] {
    [
      (
        "vai:request_queue_time_seconds", "Time a request waited in the queue before its batch ran.",
        \.queueTime
      ),
      ("vai:batch_compute_time_seconds", "Time the model took on a batch.", \.computeTime),
      (
        "vai:e2e_request_latency_seconds",
        "Queue time plus the batch's compute time, per request the model ran.",
        \.latency
      ),
      ("vai:batch_size", "Requests per batch handed to the model.", \.batchSize),
    ]
  }

  /// The metrics in Prometheus's text format, collected now.
  func emit(binaryConnections: Int, httpConnections: Int) -> [UInt8] {
    collect(binaryConnections: binaryConnections, httpConnections: httpConnections)
    var text = ""
    for (name, help, histogram) in Self.modelHistograms {
      text += "# HELP \(name) \(help)\n# TYPE \(name) histogram\n"
      for model in models { model[keyPath: histogram].render(name: name, into: &text) }
    }
    return registry.emitToBuffer() + Array(text.utf8)
  }
}

/// One model's metrics, labelled with its name.
private final class ModelMetrics: Sendable {
  let model: ServedModel
  let outcomes: [(@Sendable (ThongKeBatch) -> Int, Counter)]
  let waiting: Gauge
  let inFlight: Gauge
  let queueTime: RequestHistogram
  let computeTime: RequestHistogram
  let latency: RequestHistogram
  let batchSize: RequestHistogram

  init(model: ServedModel, registry: PrometheusCollectorRegistry) {
    self.model = model
    let label = ("model_name", model.name)
    let outcomeHelp =
      "Requests (a batch predict counts each input) by outcome: success, model_error, queue_full, deadline_exceeded, cancelled."
    let outcomes: [(@Sendable (ThongKeBatch) -> Int, String)] = [
      ({ $0.completed }, "success"), ({ $0.failed }, "model_error"), ({ $0.rejected }, "queue_full"),
      ({ $0.deadlineExceeded }, "deadline_exceeded"), ({ $0.cancelled }, "cancelled"),
    ]
    self.outcomes = outcomes.map { path, outcome in
      (
        path,
        registry.makeCounter(
          descriptor: ServingMetrics.name("requests", unit: "total", help: outcomeHelp),
          labels: [label, ("outcome", outcome)]
        )
      )
    }
    self.waiting = registry.makeGauge(
      descriptor: ServingMetrics.name(
        "num_requests_waiting",
        unit: "",
        help: "Requests in the model's queue."
      ),
      labels: [label]
    )
    self.inFlight = registry.makeGauge(
      descriptor: ServingMetrics.name(
        "num_requests_in_flight",
        unit: "",
        help: "Requests accepted and not yet answered: waiting or in a running batch."
      ),
      labels: [label]
    )
    let rendered = "model_name=\(SSEEvent.jsonString(model.name))"
    self.queueTime = RequestHistogram(durations: ServingMetrics.latencyBuckets, labels: rendered)
    self.computeTime = RequestHistogram(durations: ServingMetrics.latencyBuckets, labels: rendered)
    self.latency = RequestHistogram(durations: ServingMetrics.latencyBuckets, labels: rendered)
    self.batchSize = RequestHistogram(bounds: ServingMetrics.batchSizeBuckets, scale: 1, labels: rendered)
  }

  func record(_ report: BatchReport) {
    batchSize.record(Int64(report.size))
    computeTime.record(report.computeNanoseconds)
    queueTime.record(report.queueNanoseconds)
    latency.record(report.queueNanoseconds, plus: report.computeNanoseconds)
  }

  func export(_ now: ThongKeBatch, since last: ThongKeBatch?) {
    for (count, counter) in outcomes {
      let delta = count(now) - (last.map(count) ?? 0)
      if delta > 0 { counter.increment(by: Int64(delta)) }
    }
    waiting.set(Int64(now.queueSize))
    let answered = now.completed + now.failed + now.rejected + now.deadlineExceeded + now.cancelled
    inFlight.set(Int64(max(now.requestsTotal - answered, 0)))
  }
}
