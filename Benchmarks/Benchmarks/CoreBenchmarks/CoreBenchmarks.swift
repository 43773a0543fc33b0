import Benchmark
import Dispatch
import VietnameseAI

/// 100,000 distinct client ids, the population the limiter is sized for.
private let clientIDs = (0..<100_000).map { "client-\($0)" }

/// A limit generous enough that decisions stay on the "allowed" path, which does the most work.
private func makeLimiter(_ mode: BoGioiHanTocDo.CheDo) -> BoGioiHanTocDo {
  BoGioiHanTocDo(goiY: 1_000_000_000, cuaSo: .seconds(60), cheDo: mode)
}

/// Runs `decisions` decisions split over `threads` OS threads.
///
/// Real threads rather than tasks: the benchmark harness occupies one of the cooperative
/// pool's threads, so tasks would not run in parallel on a two-core machine.
private func decide(_ limiter: BoGioiHanTocDo, decisions: Int, threads: Int) {
  DispatchQueue.concurrentPerform(iterations: threads) { thread in
    var index = (thread * 50_021) % clientIDs.count
    for _ in 0..<(decisions / threads) {
      blackHole(limiter.choPhep(clientIDs[index]))
      index += 1
      if index == clientIDs.count { index = 0 }
    }
  }
}

let benchmarks: @Sendable () -> Void = {
  let configuration = Benchmark.Configuration(
    metrics: [.wallClock, .throughput, .mallocCountTotal],
    scalingFactor: .mega,
    maxDuration: .seconds(5),
    maxIterations: 20
  )

  for mode in BoGioiHanTocDo.CheDo.allCases {
    for threads in [1, 2] {
      Benchmark("limiter \(mode) 100k clients, \(threads) thread(s)", configuration: configuration) {
        benchmark in
        let limiter = makeLimiter(mode)
        // Warm every client in, so the benchmark measures decisions, not insertions.
        decide(limiter, decisions: clientIDs.count, threads: 1)
        benchmark.startMeasurement()
        decide(limiter, decisions: benchmark.scaledIterations.count, threads: threads)
        benchmark.stopMeasurement()
      }
    }
  }
}
