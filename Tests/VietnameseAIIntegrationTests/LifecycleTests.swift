import Foundation
import Logging
import ServiceLifecycle
import TestSupport
import Testing
import VietnameseAI
import VietnameseAIClient
import VietnameseAIServer

extension UnderLoad {
  @Suite("Cancellation, disconnects and draining")
  struct LifecycleTests {
    @Test("cancelling the calling task answers it CANCELLED at once and withdraws it from the queue")
    func cancelCall() async throws {
      let gate = Gate()
      try await TestServer.with(models: [gatedModel(gate: gate)]) { server in
        let client = try await server.connect()
        let running = Task { try await client.predict(model: "gated", input: "in the model") }
        try await eventually("the first request reached the model") { gate.entered == 1 }
        let queued = Task { try await client.predict(model: "gated", input: "in the queue") }
        try await eventually("the second request is queued") {
          (try? server.statistics().batch["queue_size"]) == 1
        }
        queued.cancel()
        await expectRPCError(.cancelled) { try await queued.value }
        try await eventually("the server withdrew it") {
          let batch = try? server.statistics().batch
          return batch?["cancelled"] == 1 && batch?["queue_size"] == 0
        }
        gate.open()
        #expect(try await running.value == "in the model")
        #expect(gate.entered == 1, "the cancelled request must never reach the model")
        await client.close()
      }
    }

    @Test("calls of a task cancelled before they start are refused CANCELLED and use up no request slot")
    func cancelledBeforeSending() async throws {
      let configuration = TestServer.configuration { $0.maxConcurrentRequests = 4 }
      try await TestServer.with(configuration: configuration) { server in
        let client = try await server.connect()
        // Never sent, so never answered by the server: were their ids kept as abandoned
        // calls awaiting an answer, four of them would use up the connection's limit.
        for _ in 0..<20 {
          let call = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await client.predict(model: "echo", input: "không gửi")
          }
          await expectRPCError(.cancelled) { try await call.value }
        }
        #expect(try await client.predict(model: "echo", input: "vẫn còn chỗ") == "vẫn còn chỗ")
        await client.close()
      }
    }

    @Test("stopping a stream mid-way cancels its generator and frees its slot")
    func cancelStream() async throws {
      try await TestServer.with { server in
        let client = try await server.connect()
        var received = 0
        for try await _ in client.stream(prompt: "", model: "endless") {
          received += 1
          if received == 5 { break }
        }
        try await eventually("the stream ended on the server") {
          let stream = try? server.statistics().stream
          return stream?["client_hien_tai"] == 0 && stream?["cancelled"] == 1
        }
        // The connection still serves.
        #expect(try await client.predict(model: "echo", input: "tiếp") == "tiếp")
        await client.close()
      }
    }

    @Test("cancelling the task that reads a stream, or dropping an unread stream, cancels it on the server")
    func cancelStreamByTaskOrDrop() async throws {
      try await TestServer.with { server in
        let client = try await server.connect()
        let reader = Task {
          var received = 0
          for try await _ in client.stream(prompt: "", model: "endless") { received += 1 }
          return received
        }
        try await eventually("the stream runs") { (try? server.statistics().stream["client_hien_tai"]) == 1 }
        reader.cancel()
        await expectRPCError(.cancelled) { try await reader.value }
        do {
          // Never iterated: released at the end of this scope.
          _ = client.stream(prompt: "", model: "endless")
        }
        try await eventually("both streams ended on the server") {
          let stream = try? server.statistics().stream
          return stream?["client_hien_tai"] == 0 && stream?["cancelled"] == 2
        }
        #expect(try await client.predict(model: "echo", input: "tiếp") == "tiếp")
        await client.close()
      }
    }

    @Test(
      "an unpaced stream leaves its connection serving other requests while it runs",
      .timeLimit(.minutes(4))
    )
    func unpacedStreamDoesNotStarve() async throws {
      // Endless and unpaced: the stream cannot end before the requests below are answered, so
      // the check holds on a machine of any speed; a server whose loop the generator
      // monopolised would let their (generous) deadlines pass.
      try await TestServer.with(generators: [TestServer.counter]) { server in
        let client = try await server.connect()
        let reader = Task {
          for try await _ in client.stream(prompt: "", model: "counter") {}
        }
        try await eventually("the stream runs") {
          (try? server.statistics().stream["tokens_sent"]) ?? 0 > 1000
        }
        let other = try await server.connect(clientID: "other")
        #expect(try await other.predict(model: "echo", input: "khác", deadline: .seconds(60)) == "khác")
        #expect(
          try await client.predict(model: "echo", input: "vẫn phục vụ", deadline: .seconds(60))
            == "vẫn phục vụ"
        )
        #expect(try server.statistics().stream["client_hien_tai"] == 1, "the stream ended")
        reader.cancel()
        _ = try? await reader.value
        await other.close()
        await client.close()
      }
    }

    @Test("a client that disconnects cancels its queued requests and its streams")
    func disconnectCancels() async throws {
      let gate = Gate()
      let models = [gatedModel(gate: gate)]
      try await TestServer.with(models: models) { server in
        let leaving = try await server.connect(clientID: "leaving")
        let calls = (0..<5).map { index in
          Task { try await leaving.predict(model: "gated", input: "\(index)") }
        }
        let stream = Task {
          for try await _ in leaving.stream(prompt: "", model: "endless") {}
        }
        try await eventually("one running, four queued, one stream") {
          let stats = try? server.statistics()
          return gate.entered == 1 && stats?.batch["queue_size"] == 4 && stats?.stream["client_hien_tai"] == 1
        }
        await leaving.close()
        for call in calls { await expectRPCError(.unavailable) { try await call.value } }
        await expectRPCError(.unavailable) { try await stream.value }
        try await eventually("the server dropped the departed client's work") {
          let stats = try? server.statistics()
          return stats?.batch["queue_size"] == 0 && stats?.batch["cancelled"] == 5
            && stats?.stream["client_hien_tai"] == 0
        }
        // Another client is unaffected.
        gate.open()
        let staying = try await server.connect(clientID: "staying")
        #expect(try await staying.predict(model: "gated", input: "ở lại") == "ở lại")
        await staying.close()
      }
    }

    @Test(
      "graceful shutdown: GOAWAY, new requests refused, every request in flight answered, then run() returns"
    )
    func drainWithRequestsInFlight() async throws {
      let gate = Gate()
      let configuration = TestServer.configuration()
      let server = RPCServer(
        configuration: configuration,
        models: [gatedModel(gate: gate, kichThuocBatch: 8), BuiltinModels.echo()],
        generators: [BuiltinModels.syllables],
        logger: TestServer.quietLogger
      )
      let services = ServiceGroup(services: [server], logger: TestServer.quietLogger)
      let running = Task { try await services.run() }
      let port = try await server.listeningAddress().port
      let clients = try await [
        RPCClient.connect(port: port, clientID: "a", timeout: .seconds(60)),
        RPCClient.connect(port: port, clientID: "b", timeout: .seconds(60)),
      ]
      let calls = (0..<40).map { index in
        Task { try await clients[index % 2].predict(model: "gated", input: "yêu cầu \(index)") }
      }
      try await eventually("all forty requests are in the server") {
        (try? ServerStatistics.decode(server.statisticsJSON()).batch["requests_total"]) == 40
      }

      await services.triggerGracefulShutdown()
      // After GOAWAY, a new request is refused on the same connection.
      let clock = ContinuousClock()
      let giveUp = clock.now.advanced(by: .seconds(60))
      var refused: RPCError?
      while refused == nil && clock.now < giveUp {
        do {
          _ = try await clients[0].predict(model: "echo", input: "probe")
          try await Task.sleep(for: .milliseconds(1))
        } catch let error as RPCError {
          refused = error
        }
      }
      // REFUSED from the server (the request crossed GOAWAY), or refused by the client's own
      // table once GOAWAY came: never started either way.
      #expect(
        (refused?.code == .refused || refused?.code == .unavailable) && refused?.neverSent == true,
        "\(String(describing: refused))"
      )

      gate.open()
      for (index, call) in calls.enumerated() {
        #expect(try await call.value == "yêu cầu \(index)")
      }
      try await running.value
      for client in clients { await client.close() }
    }
  }
}
