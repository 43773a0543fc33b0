import Foundation
import Histogram

/// What a load client saw: call latencies in microseconds, successes, streamed messages and
/// errors by kind. Workers keep one each and merge them at the end.
public struct LoadTally: Sendable {
  public var latencies = Histogram<UInt64>(
    highestTrackableValue: 3_600_000_000,
    numberOfSignificantValueDigits: .three
  )
  public var ok = 0
  public var tokens = 0
  public var errors: [String: Int] = [:]

  public init() {}

  /// Records one successful call that took `nanoseconds`.
  public mutating func recordSuccess(nanoseconds: Int64) {
    _ = latencies.record(UInt64(max(0, nanoseconds / 1000)))
    ok += 1
  }

  public mutating func merge(_ other: LoadTally) {
    latencies.add(other.latencies)
    ok += other.ok
    tokens += other.tokens
    errors.merge(other.errors, uniquingKeysWith: +)
  }

  /// Prints the report in `rpc-cli bench`'s format: one JSON object with `--json`, else text.
  public func report(system: String, options: LoadOptions, seconds: Double) {
    let percentiles: [(String, Double)] = [("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9)]
    func micros(_ percentile: Double) -> UInt64 {
      latencies.totalCount == 0 ? 0 : latencies.valueAtPercentile(percentile)
    }
    let throughput = Double(ok) / seconds
    if options.json {
      var document: [String: Any] = [
        "system": system, "mode": options.mode.rawValue, "connections": options.connections,
        "concurrency": options.concurrency, "payload_size": options.payloadSize, "seconds": seconds,
        "ok": ok, "errors": errors, "calls_per_second": throughput,
        "latency_us": Dictionary(
          uniqueKeysWithValues: percentiles.map { ($0.0, micros($0.1)) } + [("max", latencies.max)]
        ),
      ]
      if options.mode == .stream { document["tokens_per_second"] = Double(tokens) / seconds }
      let data = (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])) ?? Data()
      print(String(decoding: data, as: UTF8.self))
      return
    }
    print(
      "\(system) \(options.mode.rawValue): \(options.connections) connection(s) x \(options.concurrency) in flight, \(options.payloadSize) B"
    )
    print(
      String(
        format: "  %d ok, %d errors in %.2f s: %.0f calls/s",
        ok,
        errors.values.reduce(0, +),
        seconds,
        throughput
      )
    )
    if options.mode == .stream {
      print(String(format: "  %d messages: %.0f messages/s", tokens, Double(tokens) / seconds))
    }
    let line = percentiles.map { "\($0.0) \(micros($0.1))" }.joined(separator: "  ")
    print("  latency (µs): \(line)  max \(latencies.max)")
    for (kind, number) in errors.sorted(by: { $0.key < $1.key }) { print("  error \(kind): \(number)") }
  }
}
