import ArgumentParser
import Foundation
import Histogram
import NIOCore
import NIOPosix
import Synchronization
import VietnameseAIClient

/// `rpc-cli bench`: a load generator. Opens connections, keeps a number of calls in flight on
/// each, shows a live progress line, and reports throughput and HdrHistogram latency
/// percentiles.
struct BenchCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "Load the server and report throughput and latency percentiles."
  )

  enum Mode: String, ExpressibleByArgument, CaseIterable {
    case predict
    case batch
    case stream
  }

  @OptionGroup var connection: ConnectionOptions

  @Option(help: "What each call does: predict, batch or stream.")
  var mode = Mode.predict

  enum API: String, ExpressibleByArgument, CaseIterable {
    case async
    case callback
  }

  @Option(
    help: ArgumentHelp(
      "The client API that makes the calls: async or callback (predict only).",
      discussion: """
        async: a Swift task per call slot, awaiting RPCClient's async methods, as most programs \
        would. callback: RPCClient's completion API driven from each connection's event loop, \
        with no task per call, which measures the server and the protocol rather than \
        async/await.
        """
    )
  )
  var api = API.async

  @Option(help: "The model or generator (default: echo; syllables for streams).")
  var model: String?

  @Option(help: "Connections to open.")
  var connections = 1

  @Option(help: "Calls in flight on each connection.")
  var concurrency = 1

  @Option(help: "Seconds to run (ignored with --count).")
  var duration = 10.0

  @Option(help: "Total calls to make, instead of running for --duration.")
  var count: Int?

  @Option(help: "Bytes of each input.")
  var payloadSize = 64

  @Option(
    help:
      "Send this text as every input instead of --payload-size bytes of 'a' (a real sentence for a real model)."
  )
  var input: String?

  @Option(help: "Inputs per batch call (--mode batch).")
  var batchSize = 8

  @Option(help: "Tokens per stream (--mode stream).")
  var tokens = 100

  @Flag(help: "Print the final report as JSON.")
  var json = false

  @Flag(help: "No live progress line.")
  var quiet = false

  func validate() throws {
    guard connections >= 1, concurrency >= 1 else {
      throw ValidationError("--connections and --concurrency must be at least 1")
    }
    guard duration > 0 || count != nil else { throw ValidationError("--duration must be positive") }
    if let count, count < 1 { throw ValidationError("--count must be at least 1") }
    if api == .callback && mode != .predict {
      throw ValidationError("--api callback supports --mode predict only")
    }
    guard payloadSize >= 0, batchSize >= 1, tokens >= 1 else {
      throw ValidationError("--payload-size must be 0 or more, --batch-size and --tokens at least 1")
    }
  }

  /// Counts shared by the workers and the progress line.
  final class Counters: Sendable {
    /// Calls started, against `--count`.
    let issued = Atomic<Int>(0)
    /// Set when a timed run's time is up: no call starts after it.
    let stopped = Atomic<Bool>(false)
    /// The calls each worker finished, for the progress line: one counter per worker,
    /// written by that worker's thread alone. One counter that every thread added to would
    /// move its cache line between the cores on every call.
    let workers: [WorkerCounts]

    init(workers: Int) {
      self.workers = (0..<workers).map { _ in WorkerCounts() }
    }

    var done: Int { workers.reduce(0) { $0 + $1.done.load(ordering: .relaxed) } }
    var failed: Int { workers.reduce(0) { $0 + $1.failed.load(ordering: .relaxed) } }
  }

  /// One worker's share of ``Counters``.
  final class WorkerCounts: Sendable {
    let done = Atomic<Int>(0)
    let failed = Atomic<Int>(0)
    // Keeps two workers' counters, allocated one after the other, off one cache line.
    private let padding: (Int64, Int64, Int64, Int64, Int64, Int64, Int64, Int64) = (0, 0, 0, 0, 0, 0, 0, 0)
  }

  /// What one worker saw.
  struct Tally: Sendable {
    var latencies = Histogram<UInt64>(
      highestTrackableValue: 3_600_000_000,
      numberOfSignificantValueDigits: .three
    )
    /// Calls started; each ends as one of `ok` or `errors`, which `report` checks.
    var issued = 0
    var ok = 0
    var tokens = 0
    var errors: [String: Int] = [:]
    var lastError: String?

    mutating func merge(_ other: Tally) {
      latencies.add(other.latencies)
      issued += other.issued
      ok += other.ok
      tokens += other.tokens
      errors.merge(other.errors, uniquingKeysWith: +)
      lastError = other.lastError ?? lastError
    }
  }

  func run() async throws {
    if connection.endpoints != nil {
      throw ValidationError("bench loads one server: use --host and --port")
    }
    // Calls are made from tasks; with the event loops as Swift's executor, an answer resumes
    // its caller on the loop that read it instead of waking a thread of the default pool.
    NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
    var clients: [RPCClient] = []
    do {
      for _ in 0..<connections { clients.append(try await connection.connect()) }
    } catch let error as RPCError {
      for client in clients { await client.close() }
      throw ConnectionOptions.exit(for: error)
    }
    let model = self.model ?? (mode == .stream ? "syllables" : "echo")
    let payload = input.map { Array($0.utf8) } ?? [UInt8](repeating: UInt8(ascii: "a"), count: payloadSize)
    let prompt = String(repeating: "tok ", count: tokens)
    let batch = Array(repeating: payload, count: batchSize)
    let deadline = connection.deadline
    let mode = self.mode
    let limit = count
    let clock = ContinuousClock()
    let start = clock.now
    let end = start.advanced(by: .nanoseconds(Int64(duration * 1e9)))
    let counters = Counters(workers: connections * (api == .callback ? 1 : concurrency))

    let progress =
      quiet
      ? nil
      : Task {
        while !Task.isCancelled {
          try? await Task.sleep(for: .seconds(1))
          let elapsed = (clock.now - start).seconds
          let ok = counters.done
          let line = String(
            format: "\r%6.1f s  %10d ok  %8d errors  %10.0f calls/s",
            elapsed,
            ok,
            counters.failed,
            Double(ok) / max(elapsed, 1e-9)
          )
          Output.error(line)
        }
      }

    // A timed run ends by a flag that one timer sets: a clock read per call would be a
    // noticeable part of what the client spends on a call.
    let stopper =
      limit != nil
      ? nil
      : Task {
        try? await Task.sleep(until: end, clock: clock)
        counters.stopped.store(true, ordering: .relaxed)
      }
    let shouldStart: @Sendable () -> Bool = {
      if let limit { return counters.issued.add(1, ordering: .relaxed).newValue <= limit }
      return !counters.stopped.load(ordering: .relaxed)
    }
    let tally = await withTaskGroup(of: Tally.self) { group in
      if api == .callback {
        for (index, client) in clients.enumerated() {
          let concurrency = self.concurrency
          let input = ByteBuffer(bytes: payload)
          let counts = counters.workers[index]
          group.addTask {
            let load = { @Sendable in
              CallbackLoad(
                client: client,
                model: model,
                payload: input,
                deadline: deadline,
                counts: counts,
                shouldStart: shouldStart
              )
            }
            do {
              return try await CallbackLoad.run(client: client, concurrency: concurrency, make: load)
            } catch {
              var failed = Tally()
              failed.errors["UNKNOWN", default: 0] += 1
              failed.lastError = "\(error)"
              return failed
            }
          }
        }
      }
      for (index, client) in clients.enumerated() where api == .async {
        for worker in 0..<concurrency {
          let counts = counters.workers[index * concurrency + worker]
          // Each worker runs on its connection's thread: requests and answers never change
          // threads, as in a server that calls another service from its own event loop.
          group.addTask(executorPreference: client.taskExecutor) {
            var tally = Tally()
            while true {
              guard shouldStart() else { break }
              let began = clock.now
              tally.issued += 1
              do {
                switch mode {
                case .predict:
                  _ = try await client.predict(model: model, input: payload, deadline: deadline)
                case .batch:
                  _ = try await client.predictBatch(model: model, inputs: batch, deadline: deadline)
                case .stream:
                  for try await _ in client.stream(prompt: prompt, model: model, deadline: deadline) {
                    tally.tokens += 1
                  }
                }
                let micros = (clock.now - began).components
                _ = tally.latencies.record(
                  UInt64(micros.seconds * 1_000_000 + micros.attoseconds / 1_000_000_000_000)
                )
                tally.ok += 1
                counts.done.add(1, ordering: .relaxed)
              } catch {
                let code = (error as? RPCError)?.code.name ?? "UNKNOWN"
                tally.errors[code, default: 0] += 1
                tally.lastError = "\(error)"
                counts.failed.add(1, ordering: .relaxed)
                // A closed connection fails every later call at once: stop this worker.
                if (error as? RPCError)?.code == .unavailable { break }
              }
            }
            return tally
          }
        }
      }
      var total = Tally()
      for await part in group { total.merge(part) }
      return total
    }
    let elapsed = (clock.now - start).seconds
    stopper?.cancel()
    progress?.cancel()
    if progress != nil { Output.error("\n") }
    for client in clients { await client.close() }
    report(tally, elapsed: elapsed, model: model)
    if tally.ok == 0 { throw ExitCode(1) }
  }

  private func report(_ tally: Tally, elapsed: Double, model: String) {
    let percentiles: [(String, Double)] = [("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9)]
    func micros(_ percentile: Double) -> UInt64 {
      tally.latencies.totalCount == 0 ? 0 : tally.latencies.valueAtPercentile(percentile)
    }
    let throughput = Double(tally.ok) / elapsed
    if json {
      var document: [String: Any] = [
        "mode": mode.rawValue, "model": model, "connections": connections, "concurrency": concurrency,
        "payload_size": input?.utf8.count ?? payloadSize, "compress": connection.compress, "seconds": elapsed,
        "api": api.rawValue,
        "issued": tally.issued, "ok": tally.ok, "errors": tally.errors,
        "unanswered": tally.issued - tally.ok - tally.errors.values.reduce(0, +),
        "calls_per_second": throughput,
        "latency_us": Dictionary(
          uniqueKeysWithValues: percentiles.map { ($0.0, micros($0.1)) } + [("max", tally.latencies.max)]
        ),
      ]
      if mode == .stream {
        document["tokens"] = tally.tokens
        document["tokens_per_second"] = Double(tally.tokens) / elapsed
      }
      let data = (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])) ?? Data()
      Output.line(String(decoding: data, as: UTF8.self))
      return
    }
    Output.line(
      "\(mode.rawValue) on \(model): \(connections) connection(s) x \(concurrency) in flight, \(input?.utf8.count ?? payloadSize) B inputs\(connection.compress ? ", zlib offered" : "")"
    )
    Output.line(
      String(
        format: "  %d ok, %d errors in %.2f s: %.0f calls/s",
        tally.ok,
        tally.errors.values.reduce(0, +),
        elapsed,
        throughput
      )
    )
    if mode == .stream {
      Output.line(String(format: "  %d tokens: %.0f tokens/s", tally.tokens, Double(tally.tokens) / elapsed))
    }
    let line = percentiles.map { "\($0.0) \(micros($0.1))" }.joined(separator: "  ")
    Output.line("  latency (µs): \(line)  max \(tally.latencies.max)")
    for (code, number) in tally.errors.sorted(by: { $0.key < $1.key }) {
      Output.line("  error \(code): \(number)")
    }
    if let lastError = tally.lastError { Output.line("  last error: \(lastError)") }
    let unanswered = tally.issued - tally.ok - tally.errors.values.reduce(0, +)
    if unanswered != 0 { Output.line("  \(unanswered) calls got no answer") }
    if tally.errors["RATE_LIMITED"] != nil {
      Output.line("  hint: the server's rate limit refused calls; start it with a higher --rate-limit")
    }
  }
}
