import Testing
import VietnameseAIRedis

@Suite(
  "GCRA in Redis",
  .enabled(if: RedisServer.available, "needs redis-server (apt-get install redis-server)")
)
struct RedisGCRATests {
  @Test("a burst passes at once, then one unit per emission interval, with the time to wait")
  func burst() async throws {
    try await RedisServer.withConnection { (redis) async throws(any Error) in
      // One unit a minute: however slowly this test runs, nothing comes back between calls.
      let runner = RedisGCRARunner(limit: RedisGCRA(rate: 1, period: .seconds(60), burst: 5))
      var remaining: [Int] = []
      for _ in 0..<5 {
        let grant = try await runner.acquire("client-a", want: 1, on: redis)
        #expect(grant.granted == 1)
        remaining.append(grant.remaining)
      }
      #expect(remaining == [4, 3, 2, 1, 0])
      let refused = try await runner.acquire("client-a", want: 1, on: redis)
      #expect(refused.granted == 0)
      #expect(refused.retryAfter > .seconds(50) && refused.retryAfter <= .seconds(60))
      // Another client has its own limit.
      #expect(try await runner.acquire("client-b", want: 1, on: redis).granted == 1)
    }
  }

  @Test("a lease takes as many units as the limit allows now, up to what it asks for")
  func lease() async throws {
    try await RedisServer.withConnection { (redis) async throws(any Error) in
      let runner = RedisGCRARunner(limit: RedisGCRA(rate: 1, period: .seconds(60), burst: 5))
      #expect(try await runner.acquire("k", want: 3, on: redis).granted == 3)
      #expect(try await runner.acquire("k", want: 3, on: redis).granted == 2)
      let empty = try await runner.acquire("k", want: 3, on: redis)
      #expect(empty.granted == 0)
      #expect(empty.retryAfter > .seconds(50) && empty.retryAfter <= .seconds(60))
    }
  }

  @Test(
    "mode all: what was spent is charged whatever the limit, into debt; nothing more is granted until it is repaid"
  )
  func spendIntoDebt() async throws {
    try await RedisServer.withConnection { (redis) async throws(any Error) in
      // 10 a minute: one unit every 6 s.
      let runner = RedisGCRARunner(limit: RedisGCRA(rate: 10, period: .seconds(60), burst: 10))
      let opened = try await runner.acquire("t", want: 4, mode: .all, on: redis)
      #expect(opened.granted == 4 && opened.remaining == 6 && opened.retryAfter == .zero)
      // 20 spent: 14 over the burst of 10 -> in debt by 14 units.
      let spent = try await runner.acquire("t", want: 0, mode: .all, spent: 20, on: redis)
      #expect(spent.granted == 0)
      // Until one unit is free again: 15 units of 6 s, less the instants since the first call.
      #expect(spent.retryAfter > .seconds(80) && spent.retryAfter <= .seconds(90), "\(spent.retryAfter)")
      let refused = try await runner.acquire("t", want: 1, mode: .all, on: redis)
      #expect(refused.granted == 0 && refused.retryAfter > .seconds(80))
    }
  }

  @Test("after SCRIPT FLUSH (or a restart) the script is loaded again")
  func reload() async throws {
    try await RedisServer.withConnection { (redis) async throws(any Error) in
      let runner = RedisGCRARunner(limit: RedisGCRA(rate: 100, period: .seconds(1), burst: 10))
      #expect(try await runner.acquire("k", want: 1, on: redis).granted == 1)
      #expect(try await redis.send(["SCRIPT", "FLUSH"]) == .simpleString("OK"))
      #expect(try await runner.acquire("k", want: 1, on: redis).granted == 1)
    }
  }

  @Test("three servers sharing one key admit at most the rate plus the burst, not three times it")
  func shared() async throws {
    let server = try await RedisServer()
    defer { server.stop() }
    let limit = RedisGCRA(rate: 20, period: .seconds(1), burst: 5)
    let started = ContinuousClock.now
    let granted = try await withThrowingTaskGroup(of: Int.self) { group in
      for _ in 0..<3 {
        group.addTask {
          let redis = try await RedisConnection.connect(
            host: "127.0.0.1",
            port: server.port,
            timeout: RedisServer.patient
          )
          let runner = RedisGCRARunner(limit: limit)
          var total = 0
          // Asking for more than can be had: each call takes all that accrued since the
          // last, so the total measures the limit, not how often this machine let us call.
          repeat {
            total += try await runner.acquire("shared", want: 100, on: redis).granted
          } while ContinuousClock.now - started < .milliseconds(1500)
          await redis.close()
          return total
        }
      }
      return try await group.reduce(0, +)
    }
    let elapsed = ContinuousClock.now - started
    // At most 20/s for the time the callers ran, plus the burst (and a unit for rounding).
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    #expect(granted >= 5 && Double(granted) <= 20 * seconds + 5 + 1, "\(granted) in \(elapsed)")
  }
}
