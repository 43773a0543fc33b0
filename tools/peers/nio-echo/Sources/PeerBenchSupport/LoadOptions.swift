import ArgumentParser

/// The load flags every peer's client accepts, spelled as `rpc-cli bench` spells them, so one
/// benchmark script can drive all of them with the same command line.
public struct LoadOptions: ParsableArguments, Sendable {
  public enum Mode: String, ExpressibleByArgument, CaseIterable, Sendable {
    case predict
    case stream
  }

  @Option(help: "Server host.")
  public var host = "127.0.0.1"

  @Option(help: "Server port.")
  public var port: Int

  @Option(help: "What each call does: predict (unary echo) or stream (N small messages).")
  public var mode = Mode.predict

  @Option(help: "Connections to open.")
  public var connections = 1

  @Option(help: "Calls in flight on each connection.")
  public var concurrency = 1

  @Option(help: "Seconds to run (ignored with --count).")
  public var duration = 10.0

  @Option(help: "Total calls to make, instead of running for --duration.")
  public var count: Int?

  @Option(help: "Bytes of each input.")
  public var payloadSize = 64

  @Option(help: "Messages per stream (--mode stream).")
  public var tokens = 100

  @Flag(help: "Print the final report as JSON.")
  public var json = false

  @Flag(help: "No live progress line (accepted for compatibility; peers print none).")
  public var quiet = false

  public init() {}

  public func validate() throws {
    guard connections >= 1, concurrency >= 1 else {
      throw ValidationError("--connections and --concurrency must be at least 1")
    }
    guard duration > 0 || count != nil else { throw ValidationError("--duration must be positive") }
    if let count, count < 1 { throw ValidationError("--count must be at least 1") }
    guard payloadSize >= 0, tokens >= 1 else {
      throw ValidationError("--payload-size must be 0 or more, --tokens at least 1")
    }
  }
}
