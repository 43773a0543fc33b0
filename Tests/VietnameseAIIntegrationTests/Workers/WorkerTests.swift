import Foundation
import Logging
import TestSupport
import Testing
import VietnameseAI
import VietnameseAIClient
import VietnameseAIServer

/// Models in Python worker processes behind the server: spawned, served, killed, restarted,
/// stopped. Each test starts real processes with `python3`.
extension UnderLoad {
  @Suite("Worker processes")
  struct WorkerTests {
    /// The repository's `tools/python`, where the worker library lives.
    static let library = URL(fileURLWithPath: #filePath)
      .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent("tools/python").path

    /// A new path in the temporary directory.
    static func temporaryPath(_ prefix: String) -> String {
      FileManager.default.temporaryDirectory.appendingPathComponent(
        "\(prefix)-\(UInt64.random(in: 0...UInt64.max))"
      ).path
    }

    /// A worker script in a temporary file: `body` after the library's import.
    static func script(_ body: String) throws -> String {
      let path = Self.temporaryPath("worker") + ".py"
      let text = """
        import os, socket, struct, sys, time
        sys.path.insert(0, \(String(reflecting: library)))
        from vietnamese_ai_worker import MaySinh, MoHinh, chay, da_huy, han_chot
        NAME = os.environ["VAI_WORKER_MODEL"]
        \(body)
        """
      try text.write(toFile: path, atomically: true, encoding: .utf8)
      return path
    }

    static let echo =
      "chay(MoHinh(ten=NAME, ham_du_doan=lambda batch: batch, dau_vao='bytes', ket_qua='bytes'))"

    /// Batches say they started by creating `gate.entered`, then wait for `gate` to appear, so
    /// that a test can hold one in the worker.
    static func gated(_ gate: String) -> String {
      """
      def run(batch):
          open(\(String(reflecting: gate + ".entered")), "w").close()
          while not os.path.exists(\(String(reflecting: gate))):
              time.sleep(0.01)
          return [x.upper() for x in batch]
      chay(MoHinh(ten=NAME, ham_du_doan=run))
      """
    }

    static func configuration(
      _ commands: [(String, String)],
      _ adjust: (inout WorkerSupervisor.Configuration) -> Void = { _ in }
    )
      -> WorkerSupervisor.Configuration
    {
      var configuration = WorkerSupervisor.Configuration(
        commands: commands.map { .init(name: $0.0, command: $0.1) }
      )
      configuration.batching.timeoutBatch = .milliseconds(2)
      configuration.startTimeout = .seconds(60)
      adjust(&configuration)
      return configuration
    }

    static func with(
      _ configuration: WorkerSupervisor.Configuration,
      _ body: (TestServer, WorkerSupervisor) async throws -> Void
    ) async throws {
      let supervisor = WorkerSupervisor(configuration: configuration, logger: TestServer.quietLogger)
      let served = try await supervisor.start()
      do {
        try await TestServer.with(
          configuration: TestServer.httpConfiguration(),
          models: served.models,
          generators: [BuiltinModels.essay] + served.generators
        ) { server in
          try await body(server, supervisor)
        }
      } catch {
        await supervisor.stop()
        throw error
      }
      await supervisor.stop()
    }

    /// The Python processes running `script` (not the shells that started them).
    static func pids(_ script: String) -> [Int32] {
      let output = Pipe()
      let process = Process()
      process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
      process.arguments = ["pgrep", "-f", "^[^ ]*python3 \(script)"]
      process.standardOutput = output
      try? process.run()
      process.waitUntilExit()
      let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
      return text.split(separator: "\n").compactMap { Int32($0) }
    }

    @Test("a Python worker serves predicts, batch predicts and HTTP infers; stopping leaves no process")
    func serves() async throws {
      let path = try Self.script(Self.echo)
      try await Self.with(Self.configuration([("py-echo", "python3 \(path)")]) { $0.processes = 2 }) {
        server,
        _ in
        #expect(Self.pids(path).count == 2)
        let client = try await server.connect()
        #expect(try await client.predict(model: "py-echo", input: "xin chào") == "xin chào")
        let many = try await withThrowingTaskGroup(of: String.self) { group in
          for index in 0..<50 {
            group.addTask { try await client.predict(model: "py-echo", input: "\(index)") }
          }
          return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(Set(many) == Set((0..<50).map { "\($0)" }))
        #expect(try await client.predictBatch(model: "py-echo", inputs: ["một", "hai"]) == ["một", "hai"])
        #expect(try await server.http("GET", "/v2/models/py-echo/ready").status == 200)
        await client.close()
      }
      try await eventually("the worker processes are gone") { Self.pids(path).isEmpty }
    }

    @Test(
      "a worker killed mid-batch: its requests are UNAVAILABLE at once, it is restarted, later requests served"
    )
    func killedMidBatch() async throws {
      let gate = Self.temporaryPath("gate")
      let path = try Self.script(Self.gated(gate))
      try await Self.with(Self.configuration([("held", "python3 \(path)")])) { server, _ in
        let client = try await server.connect()
        let held = Task { try await client.predict(model: "held", input: "x") }
        try await eventually("the batch is in the worker") {
          FileManager.default.fileExists(atPath: gate + ".entered")
        }
        let running = Self.pids(path)
        try #require(running.count == 1, "the worker process, found by its command line")
        kill(running[0], SIGKILL)
        await expectRPCError(.unavailable) { try await held.value }
        #expect(FileManager.default.createFile(atPath: gate, contents: Data()))
        try await eventually("a new worker serves") {
          (try? await client.predict(model: "held", input: "lại")) == "LẠI"
        }
        await client.close()
      }
    }

    @Test("a worker that dies at start-up leaves its model not ready, and is restarted with growing delays")
    func crashAtStart() async throws {
      let marker = Self.temporaryPath("starts")
      let command = "echo started >> \(marker); exit 3"
      try await Self.with(
        Self.configuration([("broken", command)]) {
          $0.startTimeout = .milliseconds(500)
          $0.stopGrace = .milliseconds(500)
        }
      ) { server, _ in
        #expect(try await server.http("GET", "/v2/models/broken/ready").status == 503)
        #expect(try await server.http("GET", "/v2/health/ready").status == 503)
        #expect(server.server.statisticsJSON().contains(#""models_not_ready":["broken"]"#))
        let client = try await server.connect()
        await expectRPCError(.unavailable) { try await client.predict(model: "broken", input: "x") }
        try await Task.sleep(for: .seconds(2))
        let starts = (try? String(contentsOfFile: marker, encoding: .utf8))?.split(separator: "\n").count ?? 0
        // 0.1 + 0.2 + 0.4 + 0.8 s of delays fit in 2.5 s: about five starts, not hundreds.
        #expect((2...7).contains(starts), "\(starts) starts")
        await client.close()
      }
    }

    @Test("a worker that writes garbage is cut off and its model stays not ready")
    func garbage() async throws {
      let path = try Self.script(
        """
        host, port = os.environ["VAI_WORKER_ADDRESS"].rsplit(":", 1)
        s = socket.create_connection((host, int(port)))
        s.sendall(b"\\x00\\x00\\x00\\x01\\x01\\x42\\x00\\x00\\x00\\x00\\x00x")
        print("sent garbage", file=sys.stderr)
        time.sleep(30)
        """
      )
      try await Self.with(
        Self.configuration([("garbled", "python3 \(path)")]) {
          $0.startTimeout = .milliseconds(500)
          $0.stopGrace = .milliseconds(500)
        }
      ) { server, _ in
        #expect(try await server.http("GET", "/v2/models/garbled/ready").status == 503)
        let client = try await server.connect()
        await expectRPCError(.unavailable) { try await client.predict(model: "garbled", input: "x") }
        await client.close()
      }
    }

    @Test("a worker that stops answering the heartbeat is killed and replaced")
    func hung() async throws {
      let marker = Self.temporaryPath("hung")
      // The first process completes the handshake, then never reads again; later ones serve.
      let path = try Self.script(
        """
        if not os.path.exists(\(String(reflecting: marker))):
            open(\(String(reflecting: marker)), "w").close()
            from vietnamese_ai_worker.worker import Worker
            w = Worker([MoHinh(ten=NAME, ham_du_doan=lambda b: b, dau_vao="bytes", ket_qua="bytes")])
            w.connect(os.environ["VAI_WORKER_ADDRESS"], os.environ["VAI_WORKER_TOKEN"])
            time.sleep(600)
        \(Self.echo)
        """
      )
      let configuration = Self.configuration([("sleepy", "python3 \(path)")]) {
        $0.heartbeatInterval = .milliseconds(50)
        $0.heartbeatTimeout = .milliseconds(300)
      }
      try await Self.with(configuration) { server, _ in
        let client = try await server.connect()
        try await eventually("the hung worker was replaced") {
          (try? await client.predict(model: "sleepy", input: "thức")) == "thức"
        }
        await client.close()
      }
    }

    @Test("a Python generator streams through both doors; max_tokens holds; a client that leaves stops it")
    func generator() async throws {
      let marker = Self.temporaryPath("stopped")
      let pulledMarker = Self.temporaryPath("pulled")
      let path = try Self.script(
        """
        def words(prompt):
            if prompt.startswith("counted"):
                pulled = 0
                try:
                    for word in prompt.split()[1:]:
                        pulled += 1
                        yield word + " "
                finally:
                    open(\(String(reflecting: pulledMarker)), "w").write(str(pulled))
                return
            if prompt == "endless":
                try:
                    n = 0
                    while True:
                        n += 1
                        time.sleep(0.005)
                        yield "%d " % n
                finally:
                    open(\(String(reflecting: marker)), "w").close()
            for word in prompt.split():
                yield word + " "
        chay(MaySinh(ten=NAME, ham_sinh=words, dong_thoi=4))
        """
      )
      try await Self.with(Self.configuration([("py-words", "python3 \(path)")])) { server, _ in
        let client = try await server.connect()
        var tokens: [String] = []
        for try await token in client.stream(prompt: "một hai ba", model: "py-words") { tokens.append(token) }
        #expect(tokens == ["một ", "hai ", "ba "])
        let response = try await server.http(
          "POST",
          "/v1/chat/completions",
          json: #"{"model":"py-words","messages":[{"role":"user","content":"a b c d e"}],"max_tokens":2}"#
        )
        let choice = (try response.json()["choices"] as? [[String: Any]])?.first
        #expect((choice?["message"] as? [String: Any])?["content"] as? String == "a b ")
        #expect(choice?["finish_reason"] as? String == "length")
        // max_tokens and stop reach the worker, which stops generating there: the generator
        // is closed after the tokens it needed, not after the door cut a longer stream.
        let words = (0..<200).map { "w\($0)" }.joined(separator: " ")
        let stopped = try await server.http(
          "POST",
          "/v1/completions",
          json: #"{"model":"py-words","prompt":"counted \#(words)","max_tokens":100,"stop":["w3 "]}"#
        )
        let text = ((try stopped.json()["choices"] as? [[String: Any]])?.first?["text"] as? String)
        #expect(text == "w0 w1 w2 ")
        try await eventually("the generator was closed") {
          FileManager.default.fileExists(atPath: pulledMarker)
        }
        #expect((try? String(contentsOfFile: pulledMarker, encoding: .utf8)) == "4")

        var seen = 0
        for try await _ in client.stream(prompt: "endless", model: "py-words") {
          seen += 1
          if seen == 5 { break }
        }
        try await eventually("the worker's generation stopped") {
          FileManager.default.fileExists(atPath: marker)
        }
        try await eventually("the stream's slot is free") {
          (try? server.statistics().stream["client_hien_tai"]) == 0
        }
        await client.close()
      }
    }

    @Test("a batch nobody waits for any more is cancelled in the worker, which can stop early")
    func cancelledBatch() async throws {
      let marker = Self.temporaryPath("cancelled")
      let path = try Self.script(
        """
        def run(batch):
            while not da_huy():
                time.sleep(0.01)
            open(\(String(reflecting: marker)), "w").close()
            raise RuntimeError("stopped: nobody waits")
        chay(MoHinh(ten=NAME, ham_du_doan=run))
        """
      )
      try await Self.with(Self.configuration([("patient", "python3 \(path)")])) { server, _ in
        let client = try await server.connect()
        await expectRPCError(.deadlineExceeded) {
          try await client.predict(model: "patient", input: "x", deadline: .milliseconds(300))
        }
        try await eventually("the worker saw the cancellation") {
          FileManager.default.fileExists(atPath: marker)
        }
        await client.close()
      }
    }

    @Test("RUN_BATCH tells the worker the batch's deadline; a batch without one has none")
    func deadline() async throws {
      let marker = Self.temporaryPath("deadline")
      let path = try Self.script(
        """
        def run(batch):
            left = han_chot()
            open(\(String(reflecting: marker)), "a").write("none\\n" if left is None else "%.3f\\n" % left)
            return batch
        chay(MoHinh(ten=NAME, ham_du_doan=run))
        """
      )
      try await Self.with(Self.configuration([("timed", "python3 \(path)")])) { server, _ in
        let client = try await server.connect()
        #expect(try await client.predict(model: "timed", input: "a", deadline: .seconds(30)) == "a")
        #expect(try await client.predict(model: "timed", input: "b") == "b")
        let lines = try String(contentsOfFile: marker, encoding: .utf8).split(separator: "\n")
        try #require(lines.count == 2)
        let left = try #require(Double(lines[0]))
        #expect(left > 0 && left <= 30, "\(left) s left of a 30 s deadline")
        #expect(lines[1] == "none")
        await client.close()
      }
    }

    @Test("stopping sends SHUTDOWN: a worker finishes its work and exits by itself, before any signal")
    func shutdown() async throws {
      let marker = Self.temporaryPath("exited")
      let path = try Self.script(
        """
        import atexit
        atexit.register(lambda: open(\(String(reflecting: marker)), "w").close())  # not run when a signal ends it
        \(Self.echo)
        """
      )
      try await Self.with(Self.configuration([("polite", "python3 \(path)")])) { server, _ in
        let client = try await server.connect()
        #expect(try await client.predict(model: "polite", input: "tạm biệt") == "tạm biệt")
        await client.close()
      }
      #expect(FileManager.default.fileExists(atPath: marker))
      #expect(Self.pids(path).isEmpty)
    }
  }
}
