import Foundation
import NIOCore
import ServiceLifecycle
import TestSupport
import Testing
import VietnameseAI
import VietnameseAIClient
import VietnameseAIServer
import VietnameseAIWire

extension UnderLoad {
  /// Faults the service must survive: failing and hanging models, clients that stall, leave or
  /// churn, and a shutdown with thousands of requests in flight. Every accepted request still
  /// gets exactly one answer, and memory and descriptors stay bounded.
  @Suite("Faults")
  struct FaultTests {
    struct Broken: Error {}

    @Test("a model that throws, returns the wrong number of outputs or hangs fails only its own requests")
    func failingModels() async throws {
      func model(_ name: String, _ body: @escaping @Sendable ([String]) async throws -> [String])
        -> ServedModel
      {
        .text(
          name: name,
          batcher: MayChuBatch(
            hamDuDoan: body,
            kichThuocBatch: 1,
            timeoutBatch: .zero,
            soWorker: 4,
            toiDaCho: 100
          )
        )
      }
      let models = [
        model("throws") { inputs in
          if inputs.contains("hỏng") { throw Broken() }
          return inputs
        },
        model("miscounts") { inputs in inputs.contains("thiếu") ? [] : inputs },
        model("hangs") { inputs in
          if inputs.contains("treo") { try await Task.sleep(for: .seconds(600)) }
          return inputs
        },
        BuiltinModels.echo(),
      ]
      try await TestServer.with(models: models) { server in
        let client = try await server.connect()
        let failed = await expectRPCError(.internal) {
          try await client.predict(model: "throws", input: "hỏng")
        }
        #expect(failed?.message.contains("model failed") == true, "\(String(describing: failed))")
        #expect(try await client.predict(model: "throws", input: "lành") == "lành")
        let miscounted = await expectRPCError(.internal) {
          try await client.predict(model: "miscounts", input: "thiếu")
        }
        #expect(
          miscounted?.message.contains("0 outputs for 1 inputs") == true,
          "\(String(describing: miscounted))"
        )
        #expect(try await client.predict(model: "miscounts", input: "đủ") == "đủ")
        await expectRPCError(.deadlineExceeded) {
          try await client.predict(model: "hangs", input: "treo", deadline: .milliseconds(100))
        }
        #expect(try await client.predict(model: "hangs", input: "chạy") == "chạy")
        #expect(try await client.predict(model: "echo", input: "vẫn phục vụ") == "vẫn phục vụ")
        let stats = try server.statistics().models
        #expect(stats["throws"]?["failed"] == 1 && stats["miscounts"]?["failed"] == 1, "\(stats)")
        // Past its deadline the server fails the request; on a machine slow enough that the
        // client's own give-up (deadline plus a grace) comes first, its CANCEL ends it instead.
        let hung = (stats["hangs"]?["deadline_exceeded"] ?? 0) + (stats["hangs"]?["cancelled"] ?? 0)
        #expect(hung == 1, "\(stats)")
        await client.close()
      }
    }

    @Test(
      "a client that stops reading a fast stream holds the server to a bounded buffer",
      .timeLimit(.minutes(4))
    )
    func slowReader() async throws {
      try await TestServer.with(generators: [TestServer.counter]) { server in
        let stalled = try await RawConnection.connect(port: server.port, reading: false)
        try await stalled.handshake()
        let open = WireMessage.StreamOpen(deadlineMilliseconds: 0, model: "", prompt: "")
        try await stalled.send(WireFrame(requestID: 1, message: .streamOpen(open)))
        // The server writes until the kernel's buffers and its own outbound buffer are full,
        // then stops producing: the count of tokens sent stops growing.
        let stalledAt = try await server.tokensSentOnceStalled()
        // A few megabytes of frames at most (kernel buffers plus the 256 KiB high watermark),
        // nowhere near what an unbounded buffer would hold by now.
        #expect(stalledAt < 1_000_000, "\(stalledAt) tokens sent to a client that reads nothing")
        // A second later it is still bounded: the kernel may still grow its buffers a little
        // (TCP autotuning), the server's own buffer does not grow.
        try await Task.sleep(for: .seconds(1))
        let later = try #require(try server.statistics().stream["tokens_sent"])
        #expect(
          later < 1_000_000,
          "\(later) tokens sent to a client that reads nothing (\(stalledAt) at the stall)"
        )
        // Other clients are served meanwhile.
        let other = try await server.connect(clientID: "other")
        #expect(try await other.predict(model: "echo", input: "song song") == "song song")
        await other.close()
        // Once the client reads again, the stream goes on.
        try await stalled.startReading()
        try await eventually("the stream resumes") {
          (try? server.statistics().stream["tokens_sent"]) ?? 0 > later + 10_000
        }
        await stalled.close()
        try await eventually("the stream ended with its connection") {
          (try? server.statistics().stream["client_hien_tai"]) == 0
        }
      }
    }

    @Test("a client leaving mid-stream does not disturb another client's stream")
    func leavingMidStream() async throws {
      try await TestServer.with(generators: [BuiltinModels.syllables, TestServer.counter]) { server in
        let leaving = try await server.connect(clientID: "leaving")
        let staying = try await server.connect(clientID: "staying")
        let prompt = (1...10_000).map { "t\($0)" }.joined(separator: " ")
        let reader = Task {
          var count = 0
          for try await _ in staying.stream(prompt: prompt, model: "syllables") { count += 1 }
          return count
        }
        var received = 0
        for try await _ in leaving.stream(prompt: "", model: "counter") {
          received += 1
          if received == 2_000 { break }
        }
        await leaving.close()
        #expect(try await reader.value == 10_000)
        try await eventually("both streams are over on the server") {
          (try? server.statistics().stream["client_hien_tai"]) == 0
        }
        await staying.close()
      }
    }

    @Test("thousands of connect, handshake and close cycles leave no socket and no handler behind")
    func connectionChurn() async throws {
      try await TestServer.with { server in
        // Warm up: the first connections allocate the loops' and the allocator's own memory.
        for _ in 0..<300 { await (try await server.connect()).close() }
        let memory = Self.residentKiB()
        for round in 0..<4_000 {
          let client = try await server.connect(clientID: "churn-\(round % 10)")
          if round % 100 == 0 { #expect(try await client.predict(model: "echo", input: "x") == "x") }
          await client.close()
        }
        // Other tests open sockets in this process meanwhile, so descriptors are counted for
        // this server's port alone: an open socket is ESTABLISHED or CLOSE_WAIT there.
        try await eventually("every socket of the churned connections is closed") {
          Self.openSockets(port: server.port) == 0
        }
        // Exact: every connection handler is freed once its connection is gone.
        try await eventually("every connection handler is freed") {
          server.server.liveConnectionHandlers == 0
        }
        let grown = Self.residentKiB() - memory
        // Coarse, as other tests run in the same process meanwhile: a leak of both ends'
        // handlers (about 6 KiB a connection) would add some 24 MiB over these cycles.
        #expect(grown < 16 * 1024, "resident memory grew \(grown) KiB over 4000 connections")
      }
    }

    @Test(
      "a graceful shutdown with thousands of requests and hundreds of streams answers each exactly once",
      .timeLimit(.minutes(5))
    )
    func drainUnderLoad() async throws {
      let gate = Gate()
      var configuration = TestServer.configuration()
      configuration.drainTimeout = .seconds(2)
      configuration.streaming.tocDoToken = .milliseconds(5)
      configuration.streaming.toiDaClient = 1_000
      let server = RPCServer(
        configuration: configuration,
        models: [gatedModel(gate: gate, kichThuocBatch: 64, toiDaCho: 10_000)],
        generators: [TestServer.counter],
        logger: TestServer.quietLogger
      )
      let services = ServiceGroup(services: [server], logger: TestServer.quietLogger)
      let running = Task { try await services.run() }
      let port = try await server.listeningAddress().port
      // Within the default 1024 requests in flight per connection.
      let requestsPerConnection = 900
      let streamsPerConnection = 50
      let connectionCount = 4
      var connections: [RawConnection] = []
      let clock = ContinuousClock()
      var began = clock.now
      do {
        for _ in 0..<connectionCount {
          let connection = try await RawConnection.connected(port: port)
          var frames = EncodedFrames()
          for id in 1...UInt32(requestsPerConnection) {
            let predict = WireMessage.Predict(
              deadlineMilliseconds: 0,
              model: "gated",
              input: .init(string: "\(id)")
            )
            try frames.append(WireFrame(requestID: id, message: .predict(predict)))
          }
          for offset in 1...UInt32(streamsPerConnection) {
            let open = WireMessage.StreamOpen(deadlineMilliseconds: 0, model: "counter", prompt: "")
            try frames.append(
              WireFrame(requestID: UInt32(requestsPerConnection) + offset, message: .streamOpen(open))
            )
          }
          try await connection.send(frames.bytes)
          connections.append(connection)
        }
        try await eventually("every request and stream is in the server") {
          let stats = try? ServerStatistics.decode(server.statisticsJSON())
          return stats?.batch["requests_total"] == Double(connectionCount * requestsPerConnection)
            && stats?.stream["client_hien_tai"] == Double(connectionCount * streamsPerConnection)
        }

        began = clock.now
        await services.triggerGracefulShutdown()
        // The queued requests finish during the drain; the endless streams cannot, and are
        // answered UNAVAILABLE when the drain timeout runs out.
        gate.open()
        try await running.value
      } catch {
        // A failed test must not leave its server, and its endless streams, running beside
        // the tests that follow.
        gate.open()
        await services.triggerGracefulShutdown()
        _ = try? await running.value
        for connection in connections { await connection.close() }
        throw error
      }
      #expect(clock.now - began < .seconds(120), "the server took \(clock.now - began) to stop")

      for connection in connections {
        try await connection.waitUntilClosed()
        var terminal: [UInt32: [WireMessage]] = [:]
        for frame in try connection.receivedFrames() where frame.requestID != 0 {
          switch frame.message {
          case .result, .error, .streamEnd: terminal[frame.requestID, default: []].append(frame.message)
          default: break
          }
        }
        for id in 1...UInt32(requestsPerConnection + streamsPerConnection) {
          let answers = terminal[id] ?? []
          #expect(answers.count == 1, "request \(id) got \(answers.count) terminal frames")
          guard let answer = answers.first else { continue }
          if id <= UInt32(requestsPerConnection) {
            #expect(answer == .result(.init(string: "\(id)")), "request \(id): \(answer)")
          } else if case .error(let info) = answer {
            #expect(info.code == .unavailable, "stream \(id): \(info)")
          } else {
            Issue.record("stream \(id) ended with \(answer)")
          }
        }
        await connection.close()
      }
    }

    /// TCP sockets of this machine still open on `port` (either end), from `/proc/net/tcp`.
    static func openSockets(port: Int) -> Int {
      let hexPort = String(format: ":%04X", port)
      var open = 0
      for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        guard let text = try? String(contentsOfFile: table, encoding: .utf8) else { continue }
        for line in text.split(separator: "\n").dropFirst() {
          let fields = line.split(separator: " ")
          guard fields.count > 3 else { continue }
          let (local, remote, state) = (fields[1], fields[2], fields[3])
          // 01 ESTABLISHED, 08 CLOSE_WAIT: a descriptor still holds the socket.
          guard state == "01" || state == "08" else { continue }
          if local.hasSuffix(hexPort) || remote.hasSuffix(hexPort) { open += 1 }
        }
      }
      return open
    }

    static func residentKiB() -> Int {
      guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
      for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
      }
      return 0
    }
  }
}
