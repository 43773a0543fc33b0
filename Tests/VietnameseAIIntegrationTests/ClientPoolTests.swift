import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import TestSupport
import Testing
import VietnameseAI
import VietnameseAIClient
@_spi(Locking) import VietnameseAIConcurrency
import VietnameseAIServer

/// ``RPCClientPool`` over three servers in this process, one drained and one stopped dead
/// while calls run.
@Suite("Client pool over several servers")
struct ClientPoolTests {
  /// How often the model ran each input, on every server.
  final class Executions: Sendable {
    let counts = Locked([String: Int]())
    let byServer = Locked([Int: Int]())

    func record(_ inputs: [String], server: Int) {
      counts.withLock { counts in
        for input in inputs { counts[input, default: 0] += 1 }
      }
      byServer.withLock { $0[server, default: 0] += inputs.count }
    }
  }

  /// `record`: echoes its inputs after 2 ms, counting each run.
  static func recording(_ executions: Executions, server: Int) -> ServedModel {
    .text(
      name: "record",
      batcher: MayChuBatch(
        hamDuDoan: { inputs in
          executions.record(inputs, server: server)
          try await Task.sleep(for: .milliseconds(2))
          return inputs
        },
        kichThuocBatch: 16,
        timeoutBatch: .zero,
        soWorker: 1,
        toiDaCho: 10_000
      )
    )
  }

  final class Outcomes: Sendable {
    let table = Locked([String: [Outcome]]())
    let stop = Atomic<Bool>(false)

    var count: Int { table.withLock { $0.count } }

    /// Waits until `more` calls beyond those made so far have ended: progress, whatever the
    /// machine's speed.
    func waitFor(_ more: Int) async throws {
      let target = count + more
      try await eventually("\(more) more calls") { count >= target }
    }
  }

  enum Outcome: Sendable, Equatable {
    case answered(String)
    case failed(RPCError.Code, neverSent: Bool)
  }

  /// 8 callers, each making one call after the other until `outcomes.stop`, each call with an
  /// input of its own; every outcome goes into `outcomes` under its input.
  static func load(_ pool: RPCClientPool, model: String, into outcomes: Outcomes) -> [Task<Void, Never>] {
    (0..<8).map { caller in
      Task {
        var call = 0
        while !outcomes.stop.load(ordering: .relaxed) {
          call += 1
          let input = "\(caller)-\(call)"
          let outcome: Outcome
          do {
            outcome = .answered(try await pool.predict(model: model, input: input, deadline: .seconds(60)))
          } catch let error as RPCError {
            outcome = .failed(error.code, neverSent: error.neverSent)
          } catch {
            outcome = .failed(.internal, neverSent: false)
          }
          outcomes.table.withLock { $0[input, default: []].append(outcome) }
        }
      }
    }
  }

  /// Only calls that may have reached the server stopped dead fail: those written to it before
  /// its connection's close reached the client, a few per caller at most. Calls refused unsent
  /// (REFUSED by the draining server, or refused by a closed connection's table) were sent
  /// again elsewhere.
  static func expectFailuresOnlyWhereTheyMayHaveRun(
    _ calls: [String: [Outcome]],
    sourceLocation: SourceLocation = #_sourceLocation
  ) {
    let failed = calls.filter { if case .failed = $0.value[0] { true } else { false } }
    #expect(
      failed.values.allSatisfy { $0[0] == .failed(.unavailable, neverSent: false) },
      "\(failed)",
      sourceLocation: sourceLocation
    )
    #expect(
      failed.count <= 24,
      "\(failed.count) failed calls of \(calls.count)",
      sourceLocation: sourceLocation
    )
  }

  @Test("one server drained, another stopped dead: every call answered once, none run twice")
  func drainedAndKilled() async throws {
    let executions = Executions()
    let servers = (0..<3).map { index in
      RPCServer(
        configuration: TestServer.configuration { $0.drainTimeout = .seconds(30) },
        models: [Self.recording(executions, server: index)],
        generators: [],
        logger: TestServer.quietLogger
      )
    }
    let groups = servers.map { ServiceGroup(services: [$0], logger: TestServer.quietLogger) }
    try await withThrowingTaskGroup(of: Void.self) { running in
      var runs: [Task<Void, any Error>] = []
      for group in groups {
        let run = Task { try await group.run() }
        runs.append(run)
        running.addTask { _ = await run.result }
      }
      var endpoints: [RPCClientPool.Endpoint] = []
      for server in servers {
        endpoints.append(.init(host: "127.0.0.1", port: try await server.listeningAddress().port))
      }
      var configuration = RPCClientPool.Configuration()
      configuration.clientID = "pool"
      configuration.reconnectDelay = .milliseconds(50)
      configuration.connectTimeout = .seconds(2)
      let pool = try RPCClientPool(endpoints: endpoints, configuration: configuration)

      let outcomes = Outcomes()
      let callers = Self.load(pool, model: "record", into: outcomes)
      // Each server has run calls before its end.
      try await eventually("every server runs calls") {
        executions.byServer.withLock { counts in (0..<3).allSatisfy { (counts[$0] ?? 0) > 0 } }
      }
      // As SIGTERM does: server 0 drains.
      await groups[0].triggerGracefulShutdown()
      try await outcomes.waitFor(100)
      // As kill -9 looks to its clients: server 1 closes every connection at once.
      runs[1].cancel()
      try await outcomes.waitFor(100)
      outcomes.stop.store(true, ordering: .relaxed)
      for caller in callers { await caller.value }

      let calls = outcomes.table.withLock { $0 }
      let counts = executions.counts.withLock { $0 }
      #expect(calls.values.allSatisfy { $0.count == 1 }, "every call has exactly one outcome")
      let repeated = counts.filter { $0.value > 1 }
      #expect(repeated.isEmpty, "inputs a model ran more than once: \(repeated.prefix(5))")
      for (input, outcome) in calls {
        if case .answered(let output) = outcome[0] {
          #expect(output == input && counts[input] == 1, "\(input): \(outcome[0]), ran \(counts[input] ?? 0)")
        }
      }
      Self.expectFailuresOnlyWhereTheyMayHaveRun(calls)

      await pool.close()
      await groups[2].triggerGracefulShutdown()
      runs[2].cancel()
      try await running.waitForAll()
    }
  }

  @Test("rpc-server processes: one sent SIGTERM, one killed -9, under load; every call answered once")
  func signals() async throws {
    var processes: [Process] = []
    var endpoints: [RPCClientPool.Endpoint] = []
    for _ in 0..<3 {
      let (process, port) = try await ExecutableTests.startServer([
        "--port", "0", "--rate-limit", "1000000", "--batch-timeout", "0.001",
      ])
      processes.append(process)
      endpoints.append(.init(host: "127.0.0.1", port: port))
    }
    defer {
      for process in processes where process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
    var configuration = RPCClientPool.Configuration()
    configuration.reconnectDelay = .milliseconds(50)
    let pool = try RPCClientPool(endpoints: endpoints, configuration: configuration)
    let outcomes = Outcomes()
    let callers = Self.load(pool, model: "echo", into: outcomes)
    try await outcomes.waitFor(32)
    kill(processes[0].processIdentifier, SIGTERM)
    try await outcomes.waitFor(100)
    kill(processes[1].processIdentifier, SIGKILL)
    try await outcomes.waitFor(100)
    outcomes.stop.store(true, ordering: .relaxed)
    for caller in callers { await caller.value }
    await pool.close()

    let calls = outcomes.table.withLock { $0 }
    #expect(calls.values.allSatisfy { $0.count == 1 }, "every call has exactly one outcome")
    for (input, outcome) in calls {
      if case .answered(let output) = outcome[0] { #expect(output == input) }
    }
    Self.expectFailuresOnlyWhereTheyMayHaveRun(calls)
    // The server sent SIGTERM drained and exited cleanly.
    let drained = processes[0]
    try await ExecutableTests.offPool { drained.waitUntilExit() }
    #expect(drained.terminationStatus == 0)
  }
}
