public import Logging
import NIOCore
import NIOPosix
public import ServiceLifecycle
import Synchronization
import VietnameseAI
@_spi(Locking) import VietnameseAIConcurrency
import VietnameseAIRedis

/// The serving process: models, generators and a rate limiter behind the binary protocol, on
/// SwiftNIO.
///
/// ```swift
/// let server = RPCServer(
///   configuration: .init(),
///   models: [.text(name: "my-model", batcher: MayChuBatch(moHinh: MyModel()))],
///   generators: [BuiltinModels.essay],
///   logger: Logger(label: "my-server")
/// )
/// try await ServiceGroup(services: [server], gracefulShutdownSignals: [.sigterm, .sigint],
///                        logger: logger).run()
/// ```
///
/// ``run()`` binds, serves until a graceful shutdown (SIGTERM or SIGINT through a
/// `ServiceGroup`) or cancellation, then drains: every connection gets `GOAWAY`, requests in
/// flight finish (up to ``Configuration/drainTimeout``, after which they are answered
/// `UNAVAILABLE`), and the batchers answer what they still hold before `run()` returns.
public final class RPCServer: Service, Sendable {
  public let configuration: Configuration
  let core: ServingCore
  let registry: ConnectionRegistry
  let logger: Logger
  /// The connection to the shared rate limit's Redis, if any.
  private let redis: RedisClient?
  private let state = Locked(State())

  private struct State {
    var addresses: [Door: Result<SocketAddress, any Error>] = [:]
    var addressWaiters: [Door: [CheckedContinuation<SocketAddress, any Error>]] = [:]
    var shutdown: ShutdownRequest?
    var shutdownWaiter: CheckedContinuation<ShutdownRequest, Never>?
  }

  private enum Door {
    case binary
    case http
  }

  private enum ShutdownRequest {
    case graceful
    case immediate
  }

  /// The address the server listens on, once bound.
  public struct Address: Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var description: String { "\(host):\(port)" }
  }

  /// - Parameters:
  ///   - configuration: Limits, rate limit, streaming; checked by ``run()``.
  ///   - models: The models for `PREDICT` and `BATCH_PREDICT`; the first one's statistics
  ///     fill the `batch` member of `STATS`.
  ///   - generators: The token generators for `STREAM_OPEN`; the first is the default.
  public init(
    configuration: Configuration,
    models: [ServedModel],
    generators: [ServedGenerator],
    logger: Logger = Logger(label: "rpc-server")
  ) {
    self.configuration = configuration
    // An invalid URL makes no client here; run() reports it.
    let shared = configuration.sharedRateLimit
    let redis = shared.flatMap { try? RedisClient.Configuration(url: $0.redisURL) }.map {
      RedisClient(
        configuration: $0,
        group: configuration.eventLoopGroup ?? MultiThreadedEventLoopGroup.singleton
      )
    }
    self.redis = redis
    let loop = (configuration.eventLoopGroup ?? MultiThreadedEventLoopGroup.singleton).any()
    let health = shared.flatMap { shared in
      redis.map {
        StoreHealth(
          location: "redis://\($0.configuration.host):\($0.configuration.port)",
          policy: shared.policy,
          logger: logger
        )
      }
    }
    let makeShared: ((BoGioiHanTocDo) -> SharedRateLimit)?
    if let shared, let redis, let health {
      makeShared = { limiter in
        let limit = RedisGCRA(rate: limiter.goiY, period: limiter.cuaSo, burst: limiter.kichThuocBurst)
        return SharedRateLimit(
          source: RedisLimitStore(client: redis, limit: limit, keyPrefix: shared.keyPrefix),
          leaseSize: shared.leaseSize,
          health: health,
          fallback: limiter,
          loop: loop
        )
      }
    } else {
      makeShared = nil
    }
    let tokenLimit = configuration.tokenLimit.map { tokens in
      TokenLimit(
        limit: tokens.limit,
        window: tokens.window,
        store: shared.flatMap { shared in
          redis.map {
            RedisLimitStore(
              client: $0,
              limit: RedisGCRA(rate: tokens.limit, period: tokens.window, burst: tokens.limit),
              keyPrefix: shared.tokenKeyPrefix
            )
          }
        },
        health: health,
        loop: loop
      )
    }
    self.core = ServingCore(
      configuration: configuration,
      models: models,
      generators: generators,
      sharedLimit: makeShared,
      tokenLimit: tokenLimit
    )
    self.registry = ConnectionRegistry(limit: configuration.maxConnections)
    self.logger = logger
  }

  /// Serves until a graceful shutdown or cancellation, then drains and returns.
  ///
  /// - Throws: ``VietnameseAIError`` for an invalid configuration; the bind error if the
  ///   address cannot be used.
  public func run() async throws {
    do {
      try configuration.validate()
      try core.start()
    } catch {
      resolveAddresses(.failure(error))
      throw error
    }
    let group = configuration.eventLoopGroup ?? MultiThreadedEventLoopGroup.singleton
    let channel: any Channel
    let yields: PollYields
    do {
      yields = try await PollYields.make(for: group)
      do {
        channel = try await bind(group: group, yields: yields)
      } catch {
        await yields.close()
        throw error
      }
    } catch {
      resolveAddresses(.failure(error))
      await core.stop()
      throw error
    }
    let address = channel.localAddress!
    resolveAddress(.binary, .success(address))
    let http: HTTPRun?
    do {
      http = try await startHTTP(group: group)
    } catch {
      resolveAddresses(.failure(error))
      try? await channel.close()
      await yields.close()
      await core.stop()
      throw error
    }
    logger.info(
      "serving",
      metadata: [
        "address": "\(address)",
        "models": "\(core.modelNames)",
        "generators": "\(core.generatorNames)",
      ]
    )

    let request = await withGracefulShutdownHandler {
      await withTaskCancellationHandler {
        await waitForShutdown()
      } onCancel: {
        requestShutdown(.immediate)
      }
    } onGracefulShutdown: {
      self.requestShutdown(.graceful)
    }

    logger.info("shutting down", metadata: ["connections": "\(registry.count)"])
    core.beginDraining()
    try? await channel.close()
    if request == .graceful {
      registry.drainAll()
      await http?.group.triggerGracefulShutdown()
      await waitForConnections(timeout: configuration.drainTimeout)
      await http?.finish(within: configuration.drainTimeout)
    }
    if registry.count > 0 {
      logger.warning("closing connections that did not drain", metadata: ["connections": "\(registry.count)"])
      registry.closeAll()
      await waitForConnections(timeout: .seconds(5))
    }
    await http?.finish(within: .zero)
    await yields.close()
    await core.stop()
    await redis?.close()
    logger.info("stopped")
  }

  /// The address the binary protocol listens on; waits until ``run()`` has bound it.
  ///
  /// - Throws: the error that stopped ``run()`` from binding.
  public func listeningAddress() async throws -> Address {
    let address = try await address(of: .binary)
    return Address(host: address.ipAddress ?? configuration.host, port: address.port ?? configuration.port)
  }

  /// The address the HTTP door listens on; waits until ``run()`` has bound it.
  ///
  /// - Throws: the error that stopped ``run()`` from binding, or ``VietnameseAIError`` if the
  ///   configuration has no HTTP door.
  public func httpListeningAddress() async throws -> Address {
    guard let http = configuration.http else {
      throw VietnameseAIError(code: .invalidArgument, message: "the server has no HTTP door")
    }
    let address = try await address(of: .http)
    return Address(
      host: address.ipAddress ?? http.host ?? configuration.host,
      port: address.port ?? http.port
    )
  }

  private func address(of door: Door) async throws -> SocketAddress {
    try await withCheckedThrowingContinuation { continuation in
      let ready = state.withLock { state -> Result<SocketAddress, any Error>? in
        if let address = state.addresses[door] { return address }
        state.addressWaiters[door, default: []].append(continuation)
        return nil
      }
      if let ready { continuation.resume(with: ready) }
    }
  }

  /// Connection handlers still in memory, for tests that look for leaked connections.
  package var liveConnectionHandlers: Int { registry.liveHandlers }

  /// The server's statistics, as the JSON a `STATS` request returns.
  public func statisticsJSON() -> String {
    core.statisticsJSON()
  }

  // MARK: Internals

  private func bind(group: any EventLoopGroup, yields: PollYields) async throws -> any Channel {
    let core = self.core
    let registry = self.registry
    let logger = self.logger
    let lanes = BatchLanes(group: group, runOnLoops: configuration.batchesRunOnEventLoops)
    return try await ServerBootstrap(group: group)
      .serverChannelOption(.backlog, value: 1024)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
      .childChannelOption(.writeBufferWaterMark, value: .init(low: 32 * 1024, high: 256 * 1024))
      .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(
            BinaryConnectionHandler(
              core: core,
              registry: registry,
              yield: yields.yield(for: channel.eventLoop),
              lane: lanes.lane(for: channel.eventLoop),
              logger: logger
            )
          )
        }
      }
      .bind(host: configuration.host, port: configuration.port)
      .get()
  }

  private func resolveAddress(_ door: Door, _ result: Result<SocketAddress, any Error>) {
    let waiters = state.withLock { state in
      if state.addresses[door] == nil { state.addresses[door] = result }
      defer { state.addressWaiters[door] = nil }
      return (state.addressWaiters[door] ?? [], state.addresses[door]!)
    }
    for waiter in waiters.0 { waiter.resume(with: waiters.1) }
  }

  /// Fails every wait for an address not yet known, with the error that stopped ``run()``.
  private func resolveAddresses(_ result: Result<SocketAddress, any Error>) {
    resolveAddress(.binary, result)
    resolveAddress(.http, result)
  }

  // MARK: The HTTP door

  /// The HTTP door while it runs: its service group and the task running it.
  private struct HTTPRun {
    let group: ServiceGroup
    let task: Task<Void, any Error>

    /// Waits up to `timeout` for the door to stop by itself, then stops it.
    func finish(within timeout: Duration) async {
      let task = self.task
      await withTaskGroup(of: Void.self) { group in
        group.addTask { _ = await task.result }
        group.addTask {
          try? await Task.sleep(for: timeout)
          task.cancel()
        }
        await group.next()
        group.cancelAll()
      }
      _ = await task.result
    }
  }

  /// Starts the HTTP door, if configured, and waits until it listens.
  private func startHTTP(group: any EventLoopGroup) async throws -> HTTPRun? {
    guard let settings = configuration.http else { return nil }
    let registry = self.registry
    let door = HTTPDoor(
      core: core,
      settings: settings,
      host: configuration.host,
      maxConnections: configuration.maxConnections,
      lanes: BatchLanes(group: group, runOnLoops: configuration.batchesRunOnEventLoops),
      binaryConnections: { registry.count },
      logger: logger
    )
    let application = door.makeApplication(group: group) { channel in
      if let address = channel.localAddress { self.resolveAddress(.http, .success(address)) }
    }
    let services = ServiceGroup(
      configuration: ServiceGroupConfiguration(services: [.init(service: application)], logger: logger)
    )
    let task = Task {
      do {
        try await services.run()
        self.resolveAddress(.http, .failure(CancellationError()))
      } catch {
        self.resolveAddress(.http, .failure(error))
        throw error
      }
    }
    do {
      let address = try await address(of: .http)
      logger.info("serving HTTP", metadata: ["address": "\(address)"])
      return HTTPRun(group: services, task: task)
    } catch {
      task.cancel()
      _ = await task.result
      throw error
    }
  }

  private func waitForShutdown() async -> ShutdownRequest {
    await withCheckedContinuation { continuation in
      let request = state.withLock { state -> ShutdownRequest? in
        if let request = state.shutdown { return request }
        state.shutdownWaiter = continuation
        return nil
      }
      if let request { continuation.resume(returning: request) }
    }
  }

  private func requestShutdown(_ request: ShutdownRequest) {
    let waiter = state.withLock { state -> CheckedContinuation<ShutdownRequest, Never>? in
      if state.shutdown == nil { state.shutdown = request }
      defer { state.shutdownWaiter = nil }
      return state.shutdownWaiter
    }
    waiter?.resume(returning: request)
  }

  /// Waits until every connection has closed, or `timeout` has passed.
  ///
  /// The wait runs in a task of its own, not cancelled with `run()`: a cancelled server
  /// still gives its connections their time to close.
  private func waitForConnections(timeout: Duration) async {
    let registry = self.registry
    await Task {
      await withTaskGroup(of: Void.self) { group in
        group.addTask { await registry.waitUntilEmpty() }
        group.addTask { try? await Task.sleep(for: timeout) }
        await group.next()
        group.cancelAll()
      }
    }.value
  }

}
