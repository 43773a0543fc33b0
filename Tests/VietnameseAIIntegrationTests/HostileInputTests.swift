import NIOCore
import TestSupport
import Testing
import VietnameseAI
import VietnameseAIClient
import VietnameseAIServer
import VietnameseAIWire

/// Malformed and hostile bytes sent to a live server over loopback: each gets its documented
/// answer, and a closed connection where the protocol says so; never a crash, a hang or a
/// server that stops serving others.
@Suite("Hostile input against a live server")
struct HostileInputTests {
  /// The golden vectors a server decodes that are refused, as a connection error or a
  /// request error.
  static let hostileVectors: [GoldenVector] = {
    ((try? GoldenVector.all()) ?? []).filter { vector in
      vector.role == .server
        && (vector.connectionError != nil
          || vector.results.contains { if case .requestError = $0 { true } else { false } })
    }
  }()

  @Test("the hostile golden vectors exist")
  func vectorsFound() {
    #expect(Self.hostileVectors.count >= 15)
  }

  @Test(
    "every hostile golden vector, replayed to a live server, gets its documented answer",
    arguments: hostileVectors
  )
  func replay(_ vector: GoldenVector) async throws {
    let configuration = TestServer.configuration { $0.maxFrameSize = vector.maxFrameSize }
    try await TestServer.with(configuration: configuration) { server in
      // A vector that opens with its own HELLO is the handshake; any other follows one.
      let opensWithHello = vector.bytes.count > 5 && vector.bytes[5] == FrameType.hello.rawValue
      let connection =
        opensWithHello
        ? try await RawConnection.connect(port: server.port)
        : try await RawConnection.connected(port: server.port, compression: vector.compression)
      let before = try connection.receivedFrames().count
      try await connection.send(vector.bytes)
      if vector.eof { try await connection.finishSending() }
      if let code = vector.connectionError {
        try await connection.waitUntilClosed()
        if !vector.eof {
          // After end of file nobody reads an answer; otherwise the reason comes first.
          let answers = try connection.receivedFrames().dropFirst(before)
          let reasons = answers.compactMap { frame -> StatusCode? in
            guard frame.requestID == 0, case .error(let info) = frame.message else { return nil }
            return info.code
          }
          #expect(reasons == [code], "\(answers)")
        }
      } else {
        for case .requestError(let code, let id) in vector.results {
          try await eventually("ERROR \(code.name) on request \(id)") {
            (try? connection.receivedFrames())?.contains { frame in
              guard frame.requestID == id, case .error(let info) = frame.message else { return false }
              return info.code == code
            } ?? false
          }
        }
        try await connection.expectAlive()
      }
      await connection.close()
      // The server still serves everyone else.
      let client = try await server.connect()
      #expect(try await client.predict(model: "echo", input: "vẫn ổn") == "vẫn ổn")
      await client.close()
    }
  }

  @Test("bytes that are not the protocol, before the handshake, are refused on id 0 and closed")
  func garbageBeforeHandshake() async throws {
    try await TestServer.with { server in
      let connection = try await RawConnection.connect(port: server.port)
      try await connection.send(Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
      try await connection.waitUntilClosed()
      let frames = try connection.receivedFrames()
      guard case .error(let info) = frames.first?.message else {
        Issue.record("no ERROR: \(frames)")
        return
      }
      #expect(frames.first?.requestID == 0 && info.code == .frameTooLarge, "\(info)")
    }
  }

  @Test("a handshake that never finishes is closed at the handshake timeout", .timeLimit(.minutes(3)))
  func slowloris() async throws {
    let configuration = TestServer.configuration { $0.handshakeTimeout = .seconds(1) }
    try await TestServer.with(configuration: configuration) { server in
      let silent = try await RawConnection.connect(port: server.port)
      let dribbling = try await RawConnection.connect(port: server.port)
      // Five bytes of a header, then nothing more. On a loaded machine the timeout may have
      // closed the connection already: the checks below hold either way.
      try? await dribbling.send([0, 0, 0, 12, 1])
      for connection in [silent, dribbling] {
        try await connection.waitUntilClosed()
        let frames = try connection.receivedFrames()
        guard case .error(let info) = frames.first?.message else {
          Issue.record("no ERROR: \(frames)")
          continue
        }
        #expect(info.code == .protocolError && info.message.contains("handshake timeout"), "\(info)")
      }
    }
  }

  @Test(
    "an idle connection gets GOAWAY and is closed; one with a request in flight is not",
    .timeLimit(.minutes(3))
  )
  func idleTimeout() async throws {
    // Long enough that the busy connection's first write, right after it connects, comes in
    // time on a machine loaded under TSan.
    let configuration = TestServer.configuration { $0.idleTimeout = .seconds(1) }
    let gate = Gate()
    try await TestServer.with(configuration: configuration, models: [gatedModel(gate: gate)]) { server in
      let idle = try await RawConnection.connected(port: server.port)
      // The request goes in the same write as the HELLO, so it is in flight from the moment
      // the handshake is done, however slowly this test runs.
      let busy = try await RawConnection.connect(port: server.port)
      let request = WireMessage.Predict(deadlineMilliseconds: 0, model: "gated", input: .init(string: "chờ"))
      var opening = EncodedFrames()
      try opening.append(RawConnection.hello())
      try opening.append(WireFrame(requestID: 1, message: .predict(request)))
      try await busy.send(opening.bytes)
      try await idle.waitUntilClosed()
      let frames = try idle.receivedFrames()
      guard case .goAway(let goAway) = frames.last?.message else {
        Issue.record("no GOAWAY: \(frames)")
        return
      }
      #expect(goAway.code == .unavailable && goAway.message.contains("idle"), "\(goAway)")
      // Several idle timeouts later, the busy connection is still open and gets its answer.
      try await Task.sleep(for: .seconds(3))
      #expect(!busy.isClosed)
      gate.open()
      let answered = try await busy.frames(count: 2)  // WELCOME, RESULT
      #expect(answered.contains { $0.requestID == 1 && $0.message == .result(.init(string: "chờ")) })
      // Then it is idle too, and goes.
      try await busy.waitUntilClosed()
    }
  }

  @Test("a request id reused while in flight is a protocol error that closes the connection")
  func reusedRequestID() async throws {
    let gate = Gate()
    try await TestServer.with(models: [gatedModel(gate: gate)]) { server in
      let connection = try await RawConnection.connected(port: server.port)
      let request = WireMessage.Predict(deadlineMilliseconds: 0, model: "gated", input: .init(string: "một"))
      try await connection.send(WireFrame(requestID: 7, message: .predict(request)))
      try await eventually("the first request is in the model") { gate.entered == 1 }
      try await connection.send(WireFrame(requestID: 7, message: .predict(request)))
      try await connection.waitUntilClosed()
      let reasons = try connection.receivedFrames().compactMap { frame -> WireMessage.ErrorInfo? in
        guard frame.requestID == 0, case .error(let info) = frame.message else { return nil }
        return info
      }
      #expect(reasons.count == 1 && reasons.first?.code == .protocolError, "\(reasons)")
      #expect(reasons.first?.message.contains("already in flight") == true)
      gate.open()
    }
  }

  @Test("inputs a model refuses, among good ones in one read, are answered each on its own id")
  func refusedInputsAmongGoodOnes() async throws {
    try await TestServer.with { server in
      let connection = try await RawConnection.connected(port: server.port)
      // `sim` takes UTF-8 text; 0xC3 0x28 is not.
      let inputs: [(id: UInt32, bytes: [UInt8])] = [
        (1, Array("một".utf8)), (2, [0xC3, 0x28]), (3, [0xFF]), (4, Array("hai".utf8)),
        (5, [0xC3, 0x28]), (6, Array("ba".utf8)),
      ]
      var read = EncodedFrames()
      for (id, bytes) in inputs {
        let predict = WireMessage.Predict(
          deadlineMilliseconds: 0,
          model: "sim",
          input: ByteBuffer(bytes: bytes)
        )
        try read.append(WireFrame(requestID: id, message: .predict(predict)))
      }
      try await connection.send(read.bytes)
      // The frames so far include the handshake's WELCOME, on id 0.
      let frames = try await connection.frames(count: inputs.count + 1).filter { $0.requestID != 0 }
      let answers = Dictionary(
        frames.map { ($0.requestID, $0.message) },
        uniquingKeysWith: { first, _ in first }
      )
      #expect(answers.count == inputs.count, "\(answers)")
      #expect(answers[1] == .result(ByteBuffer(string: "MỘT")))
      #expect(answers[4] == .result(ByteBuffer(string: "HAI")))
      #expect(answers[6] == .result(ByteBuffer(string: "BA")))
      for id: UInt32 in [2, 3, 5] {
        guard case .error(let info) = answers[id] else {
          Issue.record("request \(id) got \(String(describing: answers[id]))")
          continue
        }
        #expect(info.code == .invalidArgument)
      }
      try await connection.expectAlive()
    }
  }

  @Test("a flood of CANCELs for ids never used is ignored and the connection goes on")
  func cancelFlood() async throws {
    try await TestServer.with { server in
      let connection = try await RawConnection.connected(port: server.port)
      var flood = EncodedFrames()
      for id in UInt32(1000)..<11_000 {
        try flood.append(WireFrame(requestID: id, message: .cancel))
      }
      try await connection.send(flood.bytes)
      try await connection.expectAlive()
      let frames = try connection.receivedFrames()
      #expect(frames.allSatisfy { $0.requestID == 0 }, "answers to cancels: \(frames.prefix(3))")
      let predict = WireMessage.Predict(deadlineMilliseconds: 0, model: "echo", input: .init(string: "sau"))
      try await connection.send(WireFrame(requestID: 1, message: .predict(predict)))
      let after = try await connection.frames(count: frames.count + 1)
      #expect(after.contains { $0.requestID == 1 && $0.message == .result(.init(string: "sau")) })
    }
  }
}

/// Frames encoded one after the other into one buffer.
struct EncodedFrames {
  private var buffer = ByteBuffer()
  private let encoder = FrameEncoder()

  mutating func append(_ frame: WireFrame) throws {
    try encoder.encode(frame, into: &buffer)
  }

  var bytes: [UInt8] { Array(buffer.readableBytesView) }
}
