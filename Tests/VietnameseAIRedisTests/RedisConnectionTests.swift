import Foundation
import NIOCore
import NIOPosix
import Testing
import VietnameseAIRedis

/// A `redis-server` of its own on a free loopback port, for one test; stopped by ``stop()``.
final class RedisServer: Sendable {
  static let binary = "/usr/bin/redis-server"
  static var available: Bool { FileManager.default.isExecutableFile(atPath: binary) }

  let port: Int
  private let process: Process

  /// Starts a server on `port`, or on a free port.
  init(port chosen: Int? = nil) async throws {
    if let chosen {
      port = chosen
    } else {
      let probe = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .bind(host: "127.0.0.1", port: 0).get()
      port = try #require(probe.localAddress?.port)
      try await probe.close()
    }
    process = Process()
    process.executableURL = URL(fileURLWithPath: Self.binary)
    process.arguments = ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    let deadline = ContinuousClock.now + .seconds(30)
    while ContinuousClock.now < deadline {
      if let connection = try? await RedisConnection.connect(host: "127.0.0.1", port: port) {
        await connection.close()
        return
      }
      try await Task.sleep(for: .milliseconds(20))
    }
    stop()
    throw RedisError(.connectionClosed, "redis-server did not start")
  }

  /// A timeout for commands that must not fail on a machine slowed by the Thread Sanitizer.
  static let patient: Duration = .seconds(30)

  /// Runs `body` with a connection to a server of its own, then stops both.
  static func withConnection(_ body: (RedisConnection) async throws -> Void) async throws {
    let server = try await RedisServer()
    defer { server.stop() }
    let redis = try await RedisConnection.connect(host: "127.0.0.1", port: server.port, timeout: Self.patient)
    defer { Task { await redis.close() } }
    try await body(redis)
  }

  func stop() {
    if process.isRunning {
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
    }
  }
}

@Suite(
  "Redis connection",
  .enabled(if: RedisServer.available, "needs redis-server (apt-get install redis-server)")
)
struct RedisConnectionTests {
  @Test("commands get their replies; a pipeline of 1000 gets them in order; an error reply leaves it usable")
  func replies() async throws {
    try await RedisServer.withConnection { (redis) async throws(any Error) in
      #expect(try await redis.send(["PING"]) == .simpleString("PONG"))
      #expect(try await redis.send(["SET", "khóa", "giá trị"]) == .simpleString("OK"))
      #expect(try await redis.send(["GET", "khóa"]).text == "giá trị")
      #expect(try await redis.send(["GET", "không có"]) == .bulkString(nil))
      let counts = try await redis.send(pipeline: (0..<1000).map { _ in ["INCR", "n"] })
      #expect(counts == (1...1000).map { RESPValue.integer(Int64($0)) })
      guard case .error(let message) = try await redis.send(["NO-SUCH-COMMAND"]) else {
        Issue.record("an unknown command is an error reply")
        return
      }
      #expect(message.hasPrefix("ERR"))
      #expect(try await redis.send(["GET", "n"]).integer == 1000)
    }
  }

  @Test("callers on many tasks share one connection, each getting its own reply")
  func concurrent() async throws {
    try await RedisServer.withConnection { (redis) async throws(any Error) in
      try await withThrowingTaskGroup(of: Void.self) { group in
        for index in 0..<200 {
          group.addTask {
            let set = try await redis.send(["SET", "k\(index)", "\(index)"])
            let got = try await redis.send(["GET", "k\(index)"])
            #expect(set == .simpleString("OK"))
            #expect(got.text == "\(index)")
          }
        }
        try await group.waitForAll()
      }
    }
  }

  @Test("a server that goes away fails the commands waiting and the later ones, typed")
  func serverGone() async throws {
    let server = try await RedisServer()
    let redis = try await RedisConnection.connect(
      host: "127.0.0.1",
      port: server.port,
      timeout: RedisServer.patient
    )
    let blocked = Task { try await redis.send(["BLPOP", "never", "0"]) }
    try await Task.sleep(for: .milliseconds(100))
    server.stop()
    await #expect(throws: RedisError.self) { try await blocked.value }
    await #expect(throws: RedisError.self) { try await redis.send(["PING"]) }
    #expect(!redis.isOpen)
    await #expect(throws: RedisError.self) {
      try await RedisConnection.connect(host: "127.0.0.1", port: server.port)
    }
  }

  @Test("a command with no reply in time fails with timedOut and closes the connection")
  func timeout() async throws {
    let server = try await RedisServer()
    defer { server.stop() }
    let redis = try await RedisConnection.connect(
      host: "127.0.0.1",
      port: server.port,
      timeout: .milliseconds(200),
      connectTimeout: .seconds(30)
    )
    do {
      _ = try await redis.send(["BLPOP", "never", "0"])
      Issue.record("BLPOP on an empty list answered")
    } catch {
      #expect(error.code == .timedOut)
    }
    let after = try? await redis.send(["PING"])
    #expect(after == nil, "replies after a timeout could no longer be matched to their commands")
  }
}
