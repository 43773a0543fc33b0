public import Logging
import NIOCore
import NIOPosix
public import ServiceLifecycle
import Synchronization
@_spi(Locking) import VietnameseAIConcurrency

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
  private let state = Locked(State())

  private struct State {
    var address: Result<SocketAddress, any Error>?
    var addressWaiters: [CheckedContinuation<SocketAddress, any Error>] = []
    var shutdown: ShutdownRequest?
    var shutdownWaiter: CheckedContinuation<ShutdownRequest, Never>?
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
    self.core = ServingCore(configuration: configuration, models: models, generators: generators)
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
      resolveAddress(.failure(error))
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
      resolveAddress(.failure(error))
      await core.stop()
      throw error
    }
    let address = channel.localAddress!
    resolveAddress(.success(address))
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
    try? await channel.close()
    if request == .graceful {
      registry.drainAll()
      await waitForConnections(timeout: configuration.drainTimeout)
    }
    if registry.count > 0 {
      logger.warning("closing connections that did not drain", metadata: ["connections": "\(registry.count)"])
      registry.closeAll()
      await waitForConnections(timeout: .seconds(5))
    }
    await yields.close()
    await core.stop()
    logger.info("stopped")
  }

  /// The address the server listens on; waits until ``run()`` has bound it.
  ///
  /// - Throws: the error that stopped ``run()`` from binding.
  public func listeningAddress() async throws -> Address {
    let address = try await withCheckedThrowingContinuation { continuation in
      let ready = state.withLock { state -> Result<SocketAddress, any Error>? in
        if let address = state.address { return address }
        state.addressWaiters.append(continuation)
        return nil
      }
      if let ready { continuation.resume(with: ready) }
    }
    return Address(host: address.ipAddress ?? configuration.host, port: address.port ?? configuration.port)
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

  private func resolveAddress(_ result: Result<SocketAddress, any Error>) {
    let waiters = state.withLock { state in
      state.address = result
      defer { state.addressWaiters.removeAll() }
      return state.addressWaiters
    }
    for waiter in waiters { waiter.resume(with: result) }
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
