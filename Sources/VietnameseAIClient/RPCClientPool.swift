@_spi(Locking) import VietnameseAIConcurrency

/// Connections to several `rpc-server`s serving the same models, used as one.
///
/// ```swift
/// let pool = try RPCClientPool(endpoints: [.init(host: "10.0.0.1", port: 7070), .init(host: "10.0.0.2", port: 7070)])
/// let answer = try await pool.predict(model: "echo", input: "xin chào")
/// await pool.close()
/// ```
///
/// Each call goes to the server with the fewest of this pool's calls in flight. A server that
/// sent `GOAWAY` (it is draining) or whose connection was lost is left alone and connected
/// again after a delay that doubles with each failure (0.1 s to 5 s by default); connections
/// are made when first needed. A call whose request provably never reached a server (its
/// error's ``RPCError/neverSent``: the connection was gone, draining or full before the
/// request was written) is sent again to another server, up to ``Configuration/maxAttempts``
/// attempts and within a retry budget: each call earns ``Configuration/retryRatio`` of a retry,
/// up to ``Configuration/maxRetryTokens`` saved, so that a fleet in trouble is not flooded
/// with retries. A call that may have reached a model is never sent again: it fails with its
/// error. Streams are opened like calls but never retried.
public final class RPCClientPool: Sendable {
  public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
      self.host = host
      self.port = port
    }

    /// Parses `HOST:PORT`.
    public init(parsing text: String) throws {
      guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
        (1...65_535).contains(port), colon > text.startIndex
      else {
        throw RPCError(code: .invalidArgument, message: "expected HOST:PORT, got \"\(text)\"")
      }
      self.init(host: String(text[..<colon]), port: port)
    }

    public var description: String { "\(host):\(port)" }
  }

  public struct Configuration: Sendable {
    public var clientID = ""
    public var authToken = ""
    public var compression = false
    /// The most a connection and its handshake may take.
    public var connectTimeout: Duration = .seconds(5)
    /// The wait before connecting again to a server that failed, doubling up to the maximum.
    public var reconnectDelay: Duration = .milliseconds(100)
    public var maxReconnectDelay: Duration = .seconds(5)
    /// Attempts per call, the first included.
    public var maxAttempts = 3
    /// Retries each call earns, and the most saved up.
    public var retryRatio = 0.2
    public var maxRetryTokens = 10.0

    public init() {}
  }

  public let endpoints: [Endpoint]
  public let configuration: Configuration
  private let state: Locked<State>

  private struct State {
    var book: EndpointBook<RPCClient>
    var retryTokens: Double
    var waiters: [CheckedContinuation<Void, Never>] = []
    /// Counts finished connection attempts, so that a caller that saw one under way and is
    /// about to wait knows whether it ended meanwhile.
    var attempts = 0
    var closed = false
  }

  public init(endpoints: [Endpoint], configuration: Configuration = Configuration()) throws {
    guard !endpoints.isEmpty else {
      throw RPCError(code: .invalidArgument, message: "a pool needs at least one endpoint")
    }
    self.endpoints = endpoints
    self.configuration = configuration
    self.state = Locked(
      State(
        book: EndpointBook(
          count: endpoints.count,
          firstDelay: configuration.reconnectDelay,
          maxDelay: configuration.maxReconnectDelay
        ),
        retryTokens: configuration.maxRetryTokens
      )
    )
  }

  // MARK: Calls

  public func predict(model: String, input: [UInt8], deadline: Duration? = nil) async throws -> [UInt8] {
    try await call { try await $0.predict(model: model, input: input, deadline: deadline) }
  }

  public func predict(model: String, input: String, deadline: Duration? = nil) async throws -> String {
    try await call { try await $0.predict(model: model, input: input, deadline: deadline) }
  }

  public func predictBatch(model: String, inputs: [[UInt8]], deadline: Duration? = nil) async throws
    -> [[UInt8]]
  {
    try await call { try await $0.predictBatch(model: model, inputs: inputs, deadline: deadline) }
  }

  public func predictBatch(model: String, inputs: [String], deadline: Duration? = nil) async throws
    -> [String]
  {
    try await call { try await $0.predictBatch(model: model, inputs: inputs, deadline: deadline) }
  }

  /// Opens a stream on the least busy server; see ``RPCClient/stream(prompt:model:deadline:)``.
  public func stream(prompt: String, model: String = "", deadline: Duration? = nil) async throws
    -> RPCTokenStream
  {
    let (index, client) = try await acquire(excluding: [])
    defer { release(index) }
    return client.stream(prompt: prompt, model: model, deadline: deadline)
  }

  /// The statistics of the least busy server.
  public func stats() async throws -> ServerStatistics {
    try await call { try await $0.stats() }
  }

  /// Closes every connection; later calls fail with ``RPCError/Code/unavailable``.
  public func close() async {
    let (clients, waiters) = state.withLock { state in
      state.closed = true
      defer { state.waiters = [] }
      return (state.book.endpoints.indices.compactMap { state.book.connection(at: $0) }, state.waiters)
    }
    for waiter in waiters { waiter.resume() }
    for client in clients { await client.close() }
  }

  // MARK: Internals

  /// Runs `body` on the least busy server, again on another while it fails without having
  /// sent its request and the budget allows.
  private func call<T>(_ body: (RPCClient) async throws -> T) async throws -> T {
    var tried: Set<Int> = []
    var attempt = 1
    while true {
      let (index, client) = try await acquire(excluding: tried, earningRetry: attempt == 1)
      do {
        let result = try await body(client)
        release(index)
        return result
      } catch let error as RPCError {
        release(index, lost: !client.isAcceptingCalls ? client : nil)
        guard error.neverSent, attempt < configuration.maxAttempts, takeRetry() else { throw error }
        tried.insert(index)
        // Every server tried: they may take calls again, a new connection made meanwhile.
        if tried.count == endpoints.count { tried = [] }
        attempt += 1
      }
    }
  }

  private func takeRetry() -> Bool {
    state.withLock { state in
      guard state.retryTokens >= 1 else { return false }
      state.retryTokens -= 1
      return true
    }
  }

  /// A server to call, connecting one first if none is ready.
  private func acquire(excluding tried: Set<Int>, earningRetry: Bool = false) async throws -> (Int, RPCClient)
  {
    // The call's share of the retry budget, earned with its first pick.
    var earningRetry = earningRetry
    while true {
      let now = ContinuousClock.now
      let (pick, attempts) = try state.withLock { state -> (EndpointBook<RPCClient>.Pick, Int) in
        guard !state.closed else {
          throw RPCError(code: .unavailable, message: "the pool is closed", neverSent: true)
        }
        if earningRetry {
          state.retryTokens = min(state.retryTokens + configuration.retryRatio, configuration.maxRetryTokens)
        }
        // A server that sent GOAWAY, or whose connection closed, is left alone for a while.
        for index in state.book.endpoints.indices {
          if let client = state.book.connection(at: index), !client.isAcceptingCalls {
            state.book.failed(index, now: now)
          }
        }
        return (state.book.pick(excluding: tried, now: now), state.attempts)
      }
      earningRetry = false
      switch pick {
      case .use(let index, let client):
        return (index, client)
      case .connect(let indices):
        await withTaskGroup(of: Void.self) { group in
          for index in indices { group.addTask { await self.connect(index) } }
        }
      case .wait:
        await withCheckedContinuation { continuation in
          let resumeNow = state.withLock { state -> Bool in
            guard !state.closed, state.attempts == attempts else { return true }
            state.waiters.append(continuation)
            return false
          }
          if resumeNow { continuation.resume() }
        }
      case .unavailable(let until):
        // No other server can take the call now: the ones tried may.
        if !tried.isEmpty { return try await acquire(excluding: []) }
        let when = until.map { " before \($0 - now)" } ?? ""
        throw RPCError(
          code: .unavailable,
          message: "no server can be reached\(when): \(endpoints.map(\.description).joined(separator: ", "))",
          neverSent: true
        )
      }
    }
  }

  private func connect(_ index: Int) async {
    let endpoint = endpoints[index]
    let client = try? await RPCClient.connect(
      host: endpoint.host,
      port: endpoint.port,
      clientID: configuration.clientID,
      authToken: configuration.authToken,
      compression: configuration.compression,
      timeout: configuration.connectTimeout
    )
    let (waiters, closed) = state.withLock { state in
      state.attempts += 1
      if let client, !state.closed {
        state.book.connected(index, client)
      } else {
        state.book.failed(index, now: .now)
      }
      defer { state.waiters = [] }
      return (state.waiters, state.closed)
    }
    for waiter in waiters { waiter.resume() }
    if closed { await client?.close() }
  }

  /// A call on `index` ended; `lost`, if its connection no longer takes calls.
  private func release(_ index: Int, lost: RPCClient? = nil) {
    state.withLock { state in
      state.book.finished(index)
      if let lost, state.book.connection(at: index) === lost {
        state.book.failed(index, now: .now)
      }
    }
  }
}
