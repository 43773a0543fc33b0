import Benchmark
import Dispatch
import VietnameseAI

/// 100,000 distinct client ids, the population the limiter is sized for.
private let clientIDs = (0..<100_000).map { "client-\($0)" }

/// 1,000 client ids: a population whose state stays in the CPU caches, for comparison.
private let fewClientIDs = Array(clientIDs.prefix(1_000))

/// A limit generous enough that decisions stay on the "allowed" path, which does the most work.
private func makeLimiter(_ mode: BoGioiHanTocDo.CheDo) -> BoGioiHanTocDo {
  BoGioiHanTocDo(goiY: 1_000_000_000, cuaSo: .seconds(60), cheDo: mode)
}

/// Runs `decisions` decisions split over `threads` OS threads; thread `t` decides for the ids
/// at positions `t`, `t + threads`, ... so the threads serve different clients, as the cores
/// of a server do.
///
/// Real threads rather than tasks: the benchmark harness occupies one of the cooperative
/// pool's threads, so tasks would not run in parallel on a two-core machine.
private func decide(_ limiter: BoGioiHanTocDo, ids: [String], decisions: Int, threads: Int) {
  DispatchQueue.concurrentPerform(iterations: threads) { thread in
    var index = thread
    for _ in 0..<(decisions / threads) {
      blackHole(limiter.choPhep(ids[index]))
      index += threads
      if index >= ids.count { index = thread }
    }
  }
}

/// A started batcher around an identity model, so that what is measured is the batcher alone:
/// enqueue, dispatch into a batch, the worker task, and answering the caller.
private func identityBatcher<T: Sendable>(_: T.Type, timeoutBatch: Duration = .zero) -> MayChuBatch<T, T> {
  let batcher = MayChuBatch<T, T>(
    hamDuDoan: { $0 },
    kichThuocBatch: 32,
    timeoutBatch: timeoutBatch,
    soWorker: 2,
    toiDaCho: 100_000
  )
  try! batcher.batDau()
  return batcher
}

let benchmarks: @Sendable () -> Void = {
  let configuration = Benchmark.Configuration(
    metrics: [.wallClock, .throughput, .mallocCountTotal],
    scalingFactor: .mega,
    maxDuration: .seconds(5),
    maxIterations: 20
  )

  for mode in BoGioiHanTocDo.CheDo.allCases {
    for (label, ids) in [("100k", clientIDs), ("1k", fewClientIDs)] {
      for threads in [1, 2] {
        let name = "limiter \(mode) \(label) clients, \(threads) thread(s)"
        Benchmark(name, configuration: configuration) { benchmark in
          let limiter = makeLimiter(mode)
          // Warm every client in, so the benchmark measures decisions, not insertions.
          decide(limiter, ids: ids, decisions: ids.count, threads: 1)
          benchmark.startMeasurement()
          decide(limiter, ids: ids, decisions: benchmark.scaledIterations.count, threads: threads)
          benchmark.stopMeasurement()
        }
      }
    }
  }

  // Batcher overhead, enqueue to answer, with a model that costs nothing. `String` hits the
  // prespecialised path that the server's text models use; `Int` shows a user type that the
  // batcher serves through unspecialised generic code.
  let batcherConfiguration = Benchmark.Configuration(
    metrics: [.wallClock, .throughput, .mallocCountTotal],
    scalingFactor: .kilo,
    maxDuration: .seconds(5),
    maxIterations: 100
  )
  Benchmark("batcher duDoan, one caller (String)", configuration: batcherConfiguration) { benchmark in
    let batcher = identityBatcher(String.self)
    benchmark.startMeasurement()
    for _ in benchmark.scaledIterations { blackHole(try await batcher.duDoan("x")) }
    benchmark.stopMeasurement()
    await batcher.dung()
  }
  Benchmark("batcher duDoan, one caller (Int)", configuration: batcherConfiguration) { benchmark in
    let batcher = identityBatcher(Int.self)
    benchmark.startMeasurement()
    for index in benchmark.scaledIterations { blackHole(try await batcher.duDoan(index)) }
    benchmark.stopMeasurement()
    await batcher.dung()
  }
  Benchmark("batcher duDoan, 64 concurrent callers (String)", configuration: batcherConfiguration) {
    benchmark in
    let batcher = identityBatcher(String.self)
    let perCaller = benchmark.scaledIterations.count / 64
    benchmark.startMeasurement()
    await withTaskGroup(of: Void.self) { group in
      for _ in 0..<64 {
        group.addTask {
          for _ in 0..<perCaller { blackHole(try? await batcher.duDoan("x")) }
        }
      }
    }
    benchmark.stopMeasurement()
    blackHole(batcher.layThongKe().batchSizeTB)
    await batcher.dung()
  }
  Benchmark("batcher duDoanBatch of 32 (String), per input", configuration: batcherConfiguration) {
    benchmark in
    let batcher = identityBatcher(String.self)
    let inputs = Array(repeating: "x", count: 32)
    benchmark.startMeasurement()
    for _ in 0..<(benchmark.scaledIterations.count / 32) {
      blackHole(try await batcher.duDoanBatch(inputs))
    }
    benchmark.stopMeasurement()
    await batcher.dung()
  }
}
