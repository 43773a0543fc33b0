import Foundation
import NIOCore
import NIOPosix
import TestSupport
import Testing
import VietnameseAIClient
import VietnameseAIServer

/// Workers started elsewhere that connect to `--worker-listen`: admitted by token, sharing a
/// model's batches, leaving and coming back.
extension UnderLoad {
  @Suite("Attached workers")
  struct AttachedWorkerTests {
    static let token = "attach-\(UInt64.random(in: 0...UInt64.max))"

    /// A worker script that serves `remote` (each answer names the process) and `remote-gen`,
    /// to the server at argv[1] with the token argv[2]; `extra` declares more.
    static func script(extra: String = "") throws -> String {
      let path = WorkerTests.temporaryPath("attached") + ".py"
      let text = """
        import os, sys, time
        sys.path.insert(0, \(String(reflecting: WorkerTests.library)))
        from vietnamese_ai_worker import MaySinh, MoHinh, chay
        def run(batch):
            time.sleep(0.02)
            return ["%d:%s" % (os.getpid(), x) for x in batch]
        served = [MoHinh(ten="remote", ham_du_doan=run), MaySinh(ten="remote-gen", ham_sinh=lambda p: iter(p.split()))]
        \(extra)
        chay(*served, address=sys.argv[1], token=sys.argv[2])
        """
      try text.write(toFile: path, atomically: true, encoding: .utf8)
      return path
    }

    /// Starts `python3 script address token`; the caller ends it with ``end(_:)``.
    static func launch(_ script: String, address: String, token: String = token) throws -> Process {
      let process = Process()
      process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
      process.arguments = ["python3", script, address, token]
      process.standardOutput = FileHandle.nullDevice
      process.standardError = FileHandle.nullDevice
      try process.run()
      return process
    }

    /// Kills a launched worker. An attached worker outlives its server on purpose, and the
    /// test runner may pass it `SIGTERM` ignored: only `SIGKILL` is sure.
    static func end(_ processes: Process...) {
      for process in processes where process.isRunning {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
      }
    }

    static func configuration(port: Int = 0) -> WorkerSupervisor.Configuration {
      var configuration = WorkerSupervisor.Configuration(
        commands: [],
        attached: [.init(name: "remote", kind: .model), .init(name: "remote-gen", kind: .generator)]
      )
      configuration.attachHost = "127.0.0.1"
      configuration.attachPort = port
      configuration.attachTokens = [token]
      configuration.batching.timeoutBatch = .milliseconds(2)
      configuration.stopGrace = .milliseconds(500)
      return configuration
    }

    static func address(_ supervisor: WorkerSupervisor) throws -> String {
      let address = try #require(supervisor.attachAddress)
      return "127.0.0.1:\(try #require(address.port))"
    }

    /// The process ids that answered `count` concurrent predicts of `remote`.
    static func answerers(_ client: RPCClient, count: Int) async throws -> Set<String> {
      try await withThrowingTaskGroup(of: String.self) { group in
        for index in 0..<count {
          group.addTask { try await client.predict(model: "remote", input: "\(index)") }
        }
        return try await group.reduce(into: Set<String>()) { $0.insert(String($1.split(separator: ":")[0])) }
      }
    }

    @Test("attached workers serve a model and a generator, share the batches, leave and come back")
    func serve() async throws {
      let path = try Self.script()
      try await WorkerTests.with(Self.configuration()) { server, supervisor in
        let address = try Self.address(supervisor)
        let client = try await server.connect()
        #expect(try await server.http("GET", "/v2/models/remote/ready").status == 503)
        await expectRPCError(.unavailable) { try await client.predict(model: "remote", input: "x") }

        let first = try Self.launch(path, address: address)
        let second = try Self.launch(path, address: address)
        defer { Self.end(first, second) }
        try await eventually("a worker serves") {
          (try? await client.predict(model: "remote", input: "x"))?.hasSuffix(":x") == true
        }
        try await eventually("both workers take batches") {
          (try? await Self.answerers(client, count: 64))?.count == 2
        }
        // The model took the signature its workers declared: text, which the HTTP door serves.
        #expect(try await server.http("GET", "/v2/models/remote/ready").status == 200)
        var tokens: [String] = []
        for try await token in client.stream(prompt: "một hai", model: "remote-gen") { tokens.append(token) }
        #expect(tokens == ["một", "hai"])

        kill(first.processIdentifier, SIGKILL)
        kill(second.processIdentifier, SIGKILL)
        try await eventually("the model is not ready without workers") {
          (try? await server.http("GET", "/v2/models/remote/ready").status) == 503
        }
        let third = try Self.launch(path, address: address)
        defer { Self.end(third) }
        try await eventually("a new worker serves") {
          (try? await Self.answerers(client, count: 4)) == ["\(third.processIdentifier)"]
        }
        await client.close()
      }
    }

    @Test("a worker with a wrong token, or declaring a name the server does not take, is refused and exits")
    func refused() async throws {
      let stranger = try Self.script(extra: "served.append(MoHinh(ten='unknown', ham_du_doan=run))")
      let path = try Self.script()
      try await WorkerTests.with(Self.configuration()) { server, supervisor in
        let address = try Self.address(supervisor)
        let wrongToken = try Self.launch(path, address: address, token: "not-the-token")
        let undeclared = try Self.launch(stranger, address: address)
        defer { Self.end(wrongToken, undeclared) }
        for process in [wrongToken, undeclared] {
          try await eventually("the refused worker exits") { !process.isRunning }
          #expect(process.terminationStatus != 0)
        }
        #expect(try await server.http("GET", "/v2/models/remote/ready").status == 503)
      }
    }

    @Test("an attached worker started before its server keeps trying and serves once the server listens")
    func reconnects() async throws {
      let port = try await freePort()
      let path = try Self.script()
      let early = try Self.launch(path, address: "127.0.0.1:\(port)")
      defer { Self.end(early) }
      try await Task.sleep(for: .milliseconds(300))
      #expect(early.isRunning)
      try await WorkerTests.with(Self.configuration(port: port)) { server, _ in
        let client = try await server.connect()
        try await eventually("the early worker serves") {
          (try? await client.predict(model: "remote", input: "x")) == "\(early.processIdentifier):x"
        }
        await client.close()
      }
    }

    /// A port nothing listens on now.
    func freePort() async throws -> Int {
      let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .bind(host: "127.0.0.1", port: 0).get()
      let port = try #require(channel.localAddress?.port)
      try await channel.close()
      return port
    }
  }
}
