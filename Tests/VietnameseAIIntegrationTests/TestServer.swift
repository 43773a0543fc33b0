import Logging
import ServiceLifecycle
import TestSupport
import Testing
import VietnameseAI
import VietnameseAIClient
import VietnameseAIServer

/// A server on 127.0.0.1, port 0, inside the test process, run by a `ServiceGroup` as in
/// production.
struct TestServer {
  let server: RPCServer
  let port: Int
  /// The HTTP door's port, when the configuration has one.
  let httpPort: Int?

  func connect(
    clientID: String = "test",
    authToken: String = "",
    compression: Bool = false,
    maxFrameSize: Int = 4 * 1024 * 1024
  ) async throws -> RPCClient {
    try await RPCClient.connect(
      host: "127.0.0.1",
      port: port,
      clientID: clientID,
      authToken: authToken,
      compression: compression,
      timeout: .seconds(60),
      maxFrameSize: maxFrameSize
    )
  }

  /// The server's statistics, read without a connection.
  func statistics() throws -> ServerStatistics {
    try ServerStatistics.decode(server.statisticsJSON())
  }

  /// The tokens sent so far, once a stream to a client that reads nothing has stalled.
  ///
  /// Real sockets and the kernel's buffers: no clock to inject, so "stalled" is a count that
  /// did not move for 200 ms.
  func tokensSentOnceStalled() async throws -> Double {
    var previous = -1.0
    try await eventually("the stream stalls") {
      try? await Task.sleep(for: .milliseconds(200))
      let sent = (try? statistics().stream["tokens_sent"]) ?? 0
      defer { previous = sent }
      return sent > 0 && sent == previous
    }
    return try #require(try statistics().stream["tokens_sent"])
  }

  static let quietLogger = Logger(label: "test-server", factory: { _ in SwiftLogNoOpLogHandler() })

  /// The default test configuration: a free port, no pacing, a rate limit out of the way,
  /// and timeouts that only a broken server reaches, not a slow machine (the tests of each
  /// timeout set their own).
  static func configuration(_ adjust: (inout RPCServer.Configuration) -> Void = { _ in })
    -> RPCServer.Configuration
  {
    var configuration = RPCServer.Configuration()
    configuration.port = 0
    configuration.rateLimit.goiY = 1_000_000
    configuration.streaming.tocDoToken = .zero
    configuration.streaming.timeout = .seconds(600)
    configuration.drainTimeout = .seconds(60)
    configuration.handshakeTimeout = .seconds(60)
    adjust(&configuration)
    return configuration
  }

  static var builtinModels: [ServedModel] {
    var batching = BuiltinModels.Batching()
    batching.timeoutBatch = .milliseconds(2)
    return [
      BuiltinModels.echo(batching: batching),
      BuiltinModels.simulatedAccelerator(
        perBatch: .milliseconds(1),
        perItem: .microseconds(10),
        batching: batching
      ),
    ]
  }

  /// `endless`: numbered tokens, one a millisecond, that never run out, so only a
  /// cancellation, a deadline or a disconnect ends the stream. Paced so that it does not flood
  /// the loops the other tests share.
  static let endless = ServedGenerator(
    name: "endless",
    generator: TokenGenerator { (_: String) async in Ticker() }
  )

  /// `counter`: numbered tokens without end, unpaced, as a plain sequence (pulled on the
  /// connection's loop): the heaviest load a stream puts on a server.
  static let counter = ServedGenerator(
    name: "counter",
    generator: TokenGenerator { (_: String) in (1...).lazy.map { "\($0) " } }
  )

  struct Ticker: AsyncSequence {
    struct AsyncIterator: AsyncIteratorProtocol {
      var count = 0
      mutating func next() async throws -> String? {
        try await Task.sleep(for: .milliseconds(1))
        count += 1
        return "\(count) "
      }
    }
    func makeAsyncIterator() -> AsyncIterator { AsyncIterator() }
  }

  /// Runs `body` against a fresh server, then shuts the server down gracefully and waits for
  /// `run()` to return.
  static func with(
    configuration: RPCServer.Configuration = TestServer.configuration(),
    models: [ServedModel] = TestServer.builtinModels,
    generators: [ServedGenerator] = [BuiltinModels.essay, BuiltinModels.syllables, TestServer.endless],
    _ body: (TestServer) async throws -> Void
  ) async throws {
    let server = RPCServer(
      configuration: configuration,
      models: models,
      generators: generators,
      logger: quietLogger
    )
    let services = ServiceGroup(services: [server], logger: quietLogger)
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await services.run() }
      let address = try await server.listeningAddress()
      let http = configuration.http == nil ? nil : try await server.httpListeningAddress()
      let test = TestServer(server: server, port: address.port, httpPort: http?.port)
      do {
        try await body(test)
      } catch {
        await services.triggerGracefulShutdown()
        try? await group.waitForAll()
        throw error
      }
      await services.triggerGracefulShutdown()
      try await group.waitForAll()
    }
  }
}

/// Expects `body` to throw an ``RPCError`` with `code`, and returns it.
@discardableResult
func expectRPCError<T>(
  _ code: RPCError.Code,
  sourceLocation: SourceLocation = #_sourceLocation,
  _ body: () async throws -> T
) async -> RPCError? {
  do {
    _ = try await body()
    Issue.record("expected \(code), got a result", sourceLocation: sourceLocation)
  } catch let error as RPCError {
    #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
    return error
  } catch {
    Issue.record("expected RPCError \(code), got \(error)", sourceLocation: sourceLocation)
  }
  return nil
}

/// A model whose batches wait at a gate, to hold requests in the queue or in computation.
func gatedModel(
  name: String = "gated",
  gate: Gate,
  kichThuocBatch: Int = 1,
  toiDaCho: Int = 1000
) -> ServedModel {
  .text(
    name: name,
    batcher: MayChuBatch(
      hamDuDoan: { inputs in
        await gate.wait()
        return inputs
      },
      kichThuocBatch: kichThuocBatch,
      timeoutBatch: .zero,
      soWorker: 1,
      toiDaCho: toiDaCho
    )
  )
}
