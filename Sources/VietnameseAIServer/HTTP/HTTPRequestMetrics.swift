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
  private let metrics = Locked<[Key: (Counter, DurationHistogram)]>([:])

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
    // One lookup per request; the registry hands the same histogram to every status of a route.
    let (counter, histogram) = metrics.withLock { metrics in
      if let found = metrics[key] { return found }
      let made = (
        registry.makeCounter(
          descriptor: MetricNameDescriptor(
            metricName: "http_requests",
            unitName: "total",
            helpText: "HTTP requests by route, method and status."
          ),
          labels: [("route", route), ("method", method), ("status", "\(status)")]
        ),
        registry.makeDurationHistogram(
          descriptor: MetricNameDescriptor(
            metricName: "http_request_duration",
            unitName: "seconds",
            helpText:
              "Time to the response head, by route and method (an SSE stream's body runs on after it)."
          ),
          labels: [("route", route), ("method", method)],
          buckets: ServingMetrics.latencyBuckets
        )
      )
      metrics[key] = made
      return made
    }
    counter.increment()
    histogram.record(elapsed)
  }
}
