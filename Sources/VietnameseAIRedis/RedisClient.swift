public import NIOCore
public import NIOPosix
@_spi(Locking) import VietnameseAIConcurrency

/// A Redis server by its address, with a connection made on demand and made again after it
/// fails: attempts are spaced by a delay that doubles (to ``Configuration/maxReconnectDelay``)
/// while they fail, and a command while the server is away fails at once, so that a caller
/// with a fallback (a local rate limit) is never held up by a dead Redis.
public final class RedisClient: Sendable {
  public struct Configuration: Sendable {
    public var host: String
    public var port: Int
    /// The database `SELECT`ed on each new connection.
    public var database = 0
    /// How long a connection, and each command, may take.
    public var timeout: Duration = .milliseconds(500)
    public var reconnectDelay: Duration = .milliseconds(100)
    public var maxReconnectDelay: Duration = .seconds(5)

    public init(host: String, port: Int = 6379) {
      self.host = host
      self.port = port
    }

    /// Reads `redis://HOST[:PORT][/DB]`.
    public init(url: String) throws(RedisError) {
      func bad() -> RedisError {
        RedisError(.invalidURL, "expected redis://HOST[:PORT][/DB], not \(url)")
      }
      guard url.hasPrefix("redis://") else { throw bad() }
      var rest = Substring(url.dropFirst("redis://".count))
      var database = 0
      if let slash = rest.firstIndex(of: "/") {
        let path = rest[rest.index(after: slash)...]
        if !path.isEmpty {
          guard let number = Int(path), (0...1023).contains(number) else { throw bad() }
          database = number
        }
        rest = rest[..<slash]
      }
      var host = String(rest)
      var port = 6379
      if let colon = rest.lastIndex(of: ":"), !rest.hasSuffix("]") {
        guard let number = Int(rest[rest.index(after: colon)...]), (1...65_535).contains(number) else {
          throw bad()
        }
        port = number
        host = String(rest[..<colon])
      }
      if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
      guard !host.isEmpty else { throw bad() }
      self.init(host: host, port: port)
      self.database = database
    }
  }

  public let configuration: Configuration
  private let group: any EventLoopGroup
  private let state = Locked(State())

  private struct State {
    var connection: RedisConnection?
    var connecting: Task<Result<RedisConnection, RedisError>, Never>?
    var nextAttempt = ContinuousClock.Instant.now
    var delay: Duration = .zero
  }

  public init(
    configuration: Configuration,
    group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
  ) {
    self.configuration = configuration
    self.group = group
  }

  /// Sends one command on the current connection, making one first if needed.
  ///
  /// - Throws: ``RedisError``; `connectionClosed` at once while the server is away and the
  ///   next attempt is not due.
  public func send(_ command: [String]) async throws(RedisError) -> RESPValue {
    try await connection().send(command)
  }

  /// Sends `commands` in one write, as ``RedisConnection/send(pipeline:)``.
  public func send(pipeline commands: [[String]]) async throws(RedisError) -> [RESPValue] {
    try await connection().send(pipeline: commands)
  }

  /// Closes the connection; the next command makes a new one.
  public func close() async {
    let connection = state.withLock { state in
      defer { state.connection = nil }
      return state.connection
    }
    await connection?.close()
  }

  /// The current connection, making one first if needed; fails as ``send(_:)`` does.
  public func connection() async throws(RedisError) -> RedisConnection {
    enum Next {
      case use(RedisConnection)
      case wait(Task<Result<RedisConnection, RedisError>, Never>)
      case refuse(Duration)
    }
    let now = ContinuousClock.now
    let next = state.withLock { state -> Next in
      if let connection = state.connection, connection.isOpen { return .use(connection) }
      state.connection = nil
      if let connecting = state.connecting { return .wait(connecting) }
      if now < state.nextAttempt { return .refuse(state.nextAttempt - now) }
      let connecting = Task { await self.connect() }
      state.connecting = connecting
      return .wait(connecting)
    }
    switch next {
    case .use(let connection):
      return connection
    case .wait(let connecting):
      return try await connecting.value.get()
    case .refuse(let wait):
      throw RedisError(
        .connectionClosed,
        "Redis at \(configuration.host):\(configuration.port) is unreachable; next attempt in \(wait)"
      )
    }
  }

  private func connect() async -> Result<RedisConnection, RedisError> {
    let result: Result<RedisConnection, RedisError>
    do {
      let connection = try await RedisConnection.connect(
        host: configuration.host,
        port: configuration.port,
        timeout: configuration.timeout,
        group: group
      )
      if configuration.database != 0 {
        let selected = try await connection.send(["SELECT", String(configuration.database)])
        guard selected == .simpleString("OK") else {
          await connection.close()
          throw RedisError(.commandFailed, "SELECT \(configuration.database) answered \(selected)")
        }
      }
      result = .success(connection)
    } catch let error as RedisError {
      result = .failure(error)
    } catch {
      result = .failure(RedisError(.connectionClosed, "\(error)"))
    }
    let configuration = self.configuration
    state.withLock { state in
      state.connecting = nil
      switch result {
      case .success(let connection):
        state.connection = connection
        state.delay = .zero
      case .failure:
        state.delay =
          state.delay == .zero
          ? configuration.reconnectDelay : min(state.delay * 2, configuration.maxReconnectDelay)
        state.nextAttempt = .now + state.delay
      }
    }
    return result
  }
}
