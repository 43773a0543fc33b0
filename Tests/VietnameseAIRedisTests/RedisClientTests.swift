import TestSupport
import Testing
import VietnameseAIRedis

@Suite("Redis client")
struct RedisClientTests {
  @Test(
    "redis:// addresses are read with their port and database",
    arguments: [
      ("redis://cache", "cache", 6379, 0), ("redis://10.0.0.7:6380", "10.0.0.7", 6380, 0),
      ("redis://cache:7000/3", "cache", 7000, 3), ("redis://[::1]:6390/", "::1", 6390, 0),
    ]
  )
  func url(text: String, host: String, port: Int, database: Int) throws {
    let configuration = try RedisClient.Configuration(url: text)
    #expect(configuration.host == host && configuration.port == port && configuration.database == database)
  }

  @Test(
    "anything else is refused, typed",
    arguments: [
      "http://cache", "redis://", "redis://cache:0", "redis://cache:99999", "redis://cache/x",
      "redis://h/5000",
    ]
  )
  func badURL(text: String) {
    #expect(throws: RedisError.self) { try RedisClient.Configuration(url: text) }
  }

  @Test(
    "a server that goes away fails commands at once until it is back, then the client reconnects",
    .enabled(if: RedisServer.available, "needs redis-server")
  )
  func reconnects() async throws {
    let first = try await RedisServer()
    var configuration = RedisClient.Configuration(host: "127.0.0.1", port: first.port)
    configuration.timeout = RedisServer.patient
    configuration.reconnectDelay = .milliseconds(50)
    configuration.maxReconnectDelay = .milliseconds(200)
    let client = RedisClient(configuration: configuration)
    #expect(try await client.send(["SET", "k", "1"]) == .simpleString("OK"))
    first.stop()
    await #expect(throws: RedisError.self) { try await client.send(["GET", "k"]) }
    // Within the delay the next attempt is not made: the command fails without a connection.
    await #expect(throws: RedisError.self) { try await client.send(["GET", "k"]) }
    let second = try await RedisServer(port: first.port)
    defer { second.stop() }
    try await eventually("the client reconnects") {
      (try? await client.send(["PING"])) == .simpleString("PONG")
    }
    await client.close()
  }

  @Test("the database of the address is selected", .enabled(if: RedisServer.available, "needs redis-server"))
  func database() async throws {
    let server = try await RedisServer()
    defer { server.stop() }
    var configuration = try RedisClient.Configuration(url: "redis://127.0.0.1:\(server.port)/3")
    configuration.timeout = RedisServer.patient
    let client = RedisClient(configuration: configuration)
    #expect(try await client.send(["SET", "k", "ba"]) == .simpleString("OK"))
    configuration.database = 0
    let plain = RedisClient(configuration: configuration)
    #expect(try await plain.send(["GET", "k"]) == .bulkString(nil))
    #expect(try await plain.send(pipeline: [["SELECT", "3"], ["GET", "k"]])[1].text == "ba")
    await client.close()
    await plain.close()
  }
}
