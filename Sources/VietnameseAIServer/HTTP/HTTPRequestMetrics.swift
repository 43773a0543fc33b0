import Hummingbird
import Prometheus
import Synchronization
@_spi(Locking) import VietnameseAIConcurrency

/// Counts the HTTP door's requests by route, method and status, and times them, as a router
/// middleware. The route is the router's pattern (`/v2/models/{name}/infer`), never the path,
/// so the labels stay bounded whatever clients send.
final class HTTPRequestMetrics: RouterMiddleware, Sendable {
  typealias Context = DoorContext

  private let registry: PrometheusCollectorRegistry
  private let counters = Locked<[Key: Counter]>([:])
  private let durations = Locked<[Key: DurationHistogram]>([:])

  private struct Key: Hashable {
    var route: String
    var method: String
    var status: Int
  }

  init(registry: PrometheusCollectorRegistry) {
    self.registry = registry
  }

  func handle(_ request: Request, context: DoorContext, next: (Request, DoorContext) async throws -> Response)
    async throws -> Response
  {
    let start = ContinuousClock.now
    let method = request.method.rawValue
    do {
      let response = try await next(request, context)
      record(route: context.endpointPath, method: method, status: response.status.code, since: start)
      return response
    } catch {
      let status = (error as? any HTTPResponseError)?.status.code ?? 500
      record(route: context.endpointPath, method: method, status: status, since: start)
      throw error
    }
  }

  private func record(route: String?, method: String, status: Int, since start: ContinuousClock.Instant) {
    let elapsed = ContinuousClock.now - start
    let route = route ?? "unmatched"
    let key = Key(route: route, method: method, status: status)
    let counter = counters.withLock { counters in
      if let counter = counters[key] { return counter }
      let counter = registry.makeCounter(
        descriptor: MetricNameDescriptor(
          metricName: "http_requests",
          unitName: "total",
          helpText: "HTTP requests by route, method and status."
        ),
        labels: [("route", route), ("method", method), ("status", "\(status)")]
      )
      counters[key] = counter
      return counter
    }
    counter.increment()
    let timing = Key(route: route, method: method, status: 0)
    let histogram = durations.withLock { durations in
      if let histogram = durations[timing] { return histogram }
      let histogram = registry.makeDurationHistogram(
        descriptor: MetricNameDescriptor(
          metricName: "http_request_duration",
          unitName: "seconds",
          helpText: "Time to the response head, by route and method (an SSE stream's body runs on after it)."
        ),
        labels: [("route", route), ("method", method)],
        buckets: ServingMetrics.latencyBuckets
      )
      durations[timing] = histogram
      return histogram
    }
    histogram.record(elapsed)
  }
}
