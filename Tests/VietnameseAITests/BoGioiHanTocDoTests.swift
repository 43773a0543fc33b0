import Clocks
import TestSupport
import Testing

@testable import VietnameseAI

@Suite("BoGioiHanTocDo")
struct BoGioiHanTocDoTests {
  @Test("che_do parses the seed's names and rejects anything else with a clear error")
  func modes() throws {
    #expect(BoGioiHanTocDo.CheDo.tokenBucket.rawValue == "token_bucket")
    #expect(BoGioiHanTocDo.CheDo.slidingWindow.rawValue == "sliding_window")
    #expect(try BoGioiHanTocDo.CheDo(parsing: "sliding_window") == .slidingWindow)
    do {
      _ = try BoGioiHanTocDo.CheDo(parsing: "leaky_bucket")
      Issue.record("accepted an unknown mode")
    } catch {
      #expect(error.code == .invalidArgument)
      #expect(error.message.contains("token_bucket"))
    }
    #expect(BoGioiHanTocDo(goiY: 5).kichThuocBurst == 5)
    #expect(BoGioiHanTocDo().cheDo == .tokenBucket)
  }

  @Test("the system clock is read coarsely only for windows a thousand coarse ticks long")
  func coarseClockChoice() async throws {
    #if os(Linux)
      // Linux's coarse tick is 1 to 10 ms: a minute is long enough, 100 ms is not.
      #expect(BoGioiHanTocDo(cuaSo: .seconds(60)).usesCoarseClock)
      #expect(!BoGioiHanTocDo(cuaSo: .milliseconds(100)).usesCoarseClock)
    #endif
    #expect(!BoGioiHanTocDo(cuaSo: .seconds(60), clock: TestClock()).usesCoarseClock)
    // The coarse clock moves on: 50 ms of sleep show as at least 30 ms (it lags by a tick
    // at most; a busy machine only sleeps longer).
    let clock = InjectedClock(ContinuousClock(), coarseWithin: .seconds(1))
    let before = clock.nowNanoseconds()
    try await Task.sleep(for: .milliseconds(50))
    #expect(clock.nowNanoseconds() - before >= 30_000_000)
  }

  @Test("invalid parameters are reported before a limiter is built")
  func validation() {
    #expect(throws: VietnameseAIError.self) {
      try BoGioiHanTocDo.validate(goiY: 0, cuaSo: .seconds(1), kichThuocBurst: nil)
    }
    #expect(throws: VietnameseAIError.self) {
      try BoGioiHanTocDo.validate(goiY: 1, cuaSo: .zero, kichThuocBurst: nil)
    }
    #expect(throws: VietnameseAIError.self) {
      try BoGioiHanTocDo.validate(goiY: 1, cuaSo: .seconds(1), kichThuocBurst: 0)
    }
    #expect(throws: Never.self) {
      try BoGioiHanTocDo.validate(goiY: 1, cuaSo: .seconds(1), kichThuocBurst: nil)
    }
  }

  @Test("token bucket: a burst of kichThuocBurst passes, then refill at goiY per cuaSo")
  func tokenBucketBurstAndRefill() async {
    let clock = ManualClock()
    let limiter = BoGioiHanTocDo(goiY: 100, cuaSo: .seconds(60), kichThuocBurst: 150, clock: clock)
    for i in 0..<150 { #expect(limiter.choPhep("client_1"), "request \(i)") }
    #expect(!limiter.choPhep("client_1"))
    #expect(limiter.layConLai("client_1") == 0)
    // Another client has its own bucket.
    #expect(limiter.choPhep("client_2"))
    // 100 per 60 s is one token every 0.6 s.
    let decision = limiter.kiemTra("client_1")
    #expect(!decision.choPhep)
    #expect(decision.retryAfter == .milliseconds(600))
    clock.advance(by: .milliseconds(599))
    #expect(!limiter.choPhep("client_1"))
    clock.advance(by: .milliseconds(1))
    #expect(limiter.choPhep("client_1"))
    #expect(!limiter.choPhep("client_1"))
    // The bucket never fills beyond its capacity.
    clock.advance(by: .seconds(3600))
    #expect(limiter.layConLai("client_1") == 150)
  }

  @Test("cost takes several tokens; a cost above capacity is never allowed and has no retry-after")
  func costs() async {
    let clock = ManualClock()
    let limiter = BoGioiHanTocDo(goiY: 10, cuaSo: .seconds(10), clock: clock)
    #expect(limiter.choPhep("c", cost: 7))
    #expect(!limiter.choPhep("c", cost: 4))
    #expect(limiter.thoiGianCho("c", cost: 4) == .seconds(1))
    #expect(limiter.choPhep("c", cost: 3))
    #expect(limiter.choPhep("c", cost: 0))
    let tooBig = limiter.kiemTra("c", cost: 11)
    #expect(!tooBig.choPhep)
    #expect(tooBig.retryAfter == nil)
    #expect(limiter.thoiGianCho("fresh") == .zero)
  }

  @Test("sliding window: at most goiY in the window, and capacity returns as admissions age out")
  func slidingWindowBasics() async {
    let clock = ManualClock()
    let limiter = BoGioiHanTocDo(goiY: 5, cuaSo: .seconds(64), cheDo: .slidingWindow, clock: clock)
    for _ in 0..<3 { #expect(limiter.choPhep("c")) }
    clock.advance(by: .seconds(10))
    for _ in 0..<2 { #expect(limiter.choPhep("c")) }
    #expect(!limiter.choPhep("c"))
    #expect(limiter.layConLai("c") == 0)
    // The first three were stamped with the end of their 1 s slot, so they count until 65 s.
    #expect(limiter.thoiGianCho("c") == .seconds(55))
    #expect(limiter.thoiGianCho("c", cost: 4) == .seconds(65))
    clock.advance(by: .seconds(54))
    #expect(!limiter.choPhep("c"))
    clock.advance(by: .seconds(1))
    #expect(limiter.layConLai("c") == 3)
    for _ in 0..<3 { #expect(limiter.choPhep("c")) }
    #expect(!limiter.choPhep("c"))
    #expect(limiter.kiemTra("c", cost: 6).retryAfter == nil)
  }

  @Test(
    "sliding window never allows more than goiY in any trailing window (random traffic)",
    arguments: [1, 7, 100]
  )
  func slidingWindowProperty(goiY: Int) async {
    let clock = ManualClock()
    let window = Duration.seconds(10)
    let limiter = BoGioiHanTocDo(goiY: goiY, cuaSo: window, cheDo: .slidingWindow, clock: clock)
    var rng = SplitMix64(seed: UInt64(goiY))
    var admitted: [(at: Duration, cost: Int)] = []
    var elapsed = Duration.zero
    var allowedCount = 0
    for _ in 0..<3_000 {
      let step = Duration.milliseconds(Int64(rng.next() % 400))
      clock.advance(by: step)
      elapsed += step
      let cost = Int(rng.next() % 3)
      if limiter.choPhep("c", cost: cost) {
        allowedCount += 1
        admitted.append((elapsed, cost))
        // Brute force: the trailing window ending now holds at most goiY.
        let inWindow = admitted.filter { $0.at > elapsed - window }.reduce(0) { $0 + $1.cost }
        #expect(inWindow <= goiY)
      }
    }
    // The limiter is not uselessly strict either: it admitted a fair share.
    #expect(allowedCount > 100)
  }

  @Test("sliding window memory per client stays bounded whatever the rate")
  func slidingWindowMemory() async {
    let clock = ManualClock()
    // A limit high enough that every request is admitted, at ~27 requests per second.
    let limiter = BoGioiHanTocDo(goiY: 100_000, cuaSo: .seconds(64), cheDo: .slidingWindow, clock: clock)
    var maxLive = 0
    var maxStored = 0
    for _ in 0..<3_000 {
      _ = limiter.choPhep("c")
      clock.advance(by: .milliseconds(37))
      let (live, stored) = limiter.trackedEntries("c")
      maxLive = max(maxLive, live)
      maxStored = max(maxStored, stored)
    }
    // One entry per 1 s slot of the 64 s window, plus the slot in progress.
    #expect(maxLive <= 65)
    #expect(maxLive >= 60)
    #expect(maxStored <= 2 * 65 + 16)
  }

  @Test("reset forgets one client; idle clients are evicted after the timeout")
  func clientManagement() async {
    let clock = ManualClock()
    let limiter = BoGioiHanTocDo(goiY: 2, cuaSo: .seconds(60), clock: clock)
    #expect(limiter.choPhep("a"))
    #expect(limiter.choPhep("a"))
    #expect(!limiter.choPhep("a"))
    limiter.reset("a")
    #expect(limiter.layConLai("a") == 2)
    #expect(limiter.choPhep("a"))
    clock.advance(by: .seconds(200))
    #expect(limiter.choPhep("b"))
    clock.advance(by: .seconds(100))
    #expect(limiter.xoaClientKhongHoatDong(timeout: .seconds(300)) == 1)
    #expect(limiter.layThongKe().clients == 1)
    #expect(limiter.xoaClientKhongHoatDong() == 0)
    clock.advance(by: .seconds(200))
    #expect(limiter.xoaClientKhongHoatDong() == 1)
    #expect(limiter.layThongKe().clients == 0)
  }

  @Test("statistics report the rejection rate under the seed's key")
  func statistics() throws {
    let limiter = BoGioiHanTocDo(goiY: 3, cuaSo: .seconds(60), clock: ManualClock())
    for _ in 0..<4 { _ = limiter.choPhep("x") }
    let stats = limiter.layThongKe()
    #expect(stats.tyLeTuChoi == 0.25)
    #expect(stats.requestsTotal == 4)
    #expect(stats.allowed == 3)
    #expect(
      try jsonKeys(stats).isSuperset(of: [
        "ty_le_tu_choi", "requests_total", "allowed", "rejected", "clients",
      ])
    )
  }

  @Test(
    "many threads deciding at once never allow more than the capacity",
    arguments: [BoGioiHanTocDo.CheDo.allCases]
  )
  func concurrentDecisions(modes: [BoGioiHanTocDo.CheDo]) async {
    for mode in modes {
      let limiter = BoGioiHanTocDo(goiY: 500, cuaSo: .seconds(60), cheDo: mode, clock: ManualClock())
      let allowed = Counter()
      await withTaskGroup(of: Void.self) { group in
        for task in 0..<8 {
          group.addTask {
            for i in 0..<2_000 {
              // One hot client shared by all, and many cold ones.
              if limiter.choPhep("hot") { allowed.increment() }
              _ = limiter.choPhep("client-\(task)-\(i % 50)")
            }
          }
        }
      }
      #expect(allowed.current == 500, "\(mode)")
      let stats = limiter.layThongKe()
      #expect(stats.requestsTotal == 32_000)
      #expect(stats.clients == 401)
    }
  }

  @Test(
    "deciding many requests at once is deciding them one by one",
    arguments: BoGioiHanTocDo.CheDo.allCases
  )
  func manyAtOnce(mode: BoGioiHanTocDo.CheDo) async {
    let clock = ManualClock()
    let together = BoGioiHanTocDo(goiY: 5, cuaSo: .seconds(10), cheDo: mode, clock: clock)
    let oneByOne = BoGioiHanTocDo(goiY: 5, cuaSo: .seconds(10), cheDo: mode, clock: clock)
    for (count, advance) in [(3, 0), (4, 0), (1, 3), (6, 20), (0, 0)] {
      clock.advance(by: .seconds(advance))
      let decision = together.choPhep("c", soYeuCau: count)
      let allowed = (0..<count).filter { _ in oneByOne.choPhep("c") }.count
      #expect(decision.allowed == allowed, "\(count) after \(advance) s")
      if allowed < count {
        #expect(decision.retryAfter == oneByOne.thoiGianCho("c"))
      }
    }
    let (a, b) = (together.layThongKe(), oneByOne.layThongKe())
    #expect(a.allowed == b.allowed && a.rejected == b.rejected && a.requestsTotal == 14)
  }
}
