import NIOCore
import Testing
import VietnameseAIWire

@testable import VietnameseAIServer

/// The binary connection's decisions, on plain values: frames and completions in, actions out,
/// no channel and no socket. `Work` is a string naming the work, so that a test sees which
/// work an action refers to.
@Suite("Binary connection state machine")
struct BinaryConnectionStateMachineTests {
  typealias Machine = BinaryConnectionHandler.StateMachine<String>

  static func configuration(
    maxConcurrentRequests: Int = 4,
    tokens: [String: String] = [:],
    idleTimeout: Duration = .seconds(300)
  ) -> Machine.Configuration {
    Machine.Configuration(
      admission: Admission(maxConcurrentRequests: maxConcurrentRequests),
      identities: ClientIdentities(tokens: tokens),
      maxFrameSize: 1 << 20,
      allowsCompression: true,
      handshakeTimeout: .seconds(10),
      idleTimeout: idleTimeout
    )
  }

  static func hello(
    versions: [UInt8] = [1],
    clientID: String = "c1",
    token: String = "",
    compressions: [UInt8] = [0, 1],
    maxFrameSize: UInt32? = nil
  ) -> WireFrame {
    WireFrame(
      requestID: 0,
      message: .hello(
        WireMessage.Hello(
          versions: versions,
          clientID: clientID,
          authToken: token,
          compressions: compressions,
          maxFrameSize: maxFrameSize
        )
      )
    )
  }

  /// A machine past its handshake.
  static func active(_ configuration: Machine.Configuration = configuration()) -> Machine {
    var machine = Machine(configuration: configuration)
    _ = machine.connectionOpened(.accepted, peerAddress: "10.0.0.7")
    guard case .welcome = machine.received(hello()) else {
      Issue.record("no WELCOME")
      return machine
    }
    return machine
  }

  static func batch(_ id: UInt32) -> WireFrame {
    WireFrame(requestID: id, message: .batchPredict(WireMessage.BatchPredict(model: "m", inputs: [])))
  }

  static func stream(_ id: UInt32) -> WireFrame {
    WireFrame(requestID: id, message: .streamOpen(WireMessage.StreamOpen(prompt: "p")))
  }

  // MARK: Opening and handshake

  @Test("an accepted connection waits for HELLO under the handshake timeout")
  func accepted() {
    var machine = Machine(configuration: Self.configuration())
    guard case .awaitHello(let timeout) = machine.connectionOpened(.accepted, peerAddress: nil) else {
      Issue.record("no handshake timer")
      return
    }
    #expect(timeout == .seconds(10))
    #expect(machine.phase == .awaitingHello)
  }

  @Test("a connection over the limit is refused RESOURCE_EXHAUSTED on id 0 before HELLO, and closed")
  func overTheConnectionLimit() {
    var machine = Machine(configuration: Self.configuration())
    let action = machine.connectionOpened(.full(limit: 3), peerAddress: nil)
    #expect(action.closing?.error?.code == .resourceExhausted)
    #expect(action.closing?.frame?.requestID == 0)
    #expect(machine.phase == .closed)
  }

  @Test("a connection accepted while draining gets GOAWAY and is closed")
  func acceptedWhileDraining() {
    var machine = Machine(configuration: Self.configuration())
    let action = machine.connectionOpened(.draining, peerAddress: nil)
    guard case .goAway(let goAway)? = action.closing?.frame?.message else {
      Issue.record("\(action)")
      return
    }
    #expect(goAway.code == .unavailable)
  }

  @Test("HELLO is answered WELCOME with the server's limits, the client id and zlib if offered")
  func welcome() throws {
    var machine = Machine(configuration: Self.configuration())
    _ = machine.connectionOpened(.accepted, peerAddress: "10.0.0.7")
    machine.readReceived(at: .uptimeNanoseconds(1_000))
    guard case .welcome(let handshake) = machine.received(Self.hello(maxFrameSize: 65_536)) else {
      Issue.record("no WELCOME")
      return
    }
    #expect(handshake.welcome.clientID == "c1")
    #expect(handshake.welcome.maxConcurrentRequests == 4)
    #expect(handshake.welcome.maxFrameSize == 1 << 20)
    #expect(handshake.compression && handshake.welcome.compression == WireProtocol.compressionZlib)
    #expect(handshake.peerMaxFrameSize == 65_536)
    #expect(handshake.idleCheck == .uptimeNanoseconds(1_000) + .seconds(300))
    #expect(machine.phase == .active)
  }

  @Test("a HELLO without a frame limit means the client accepts the protocol's default")
  func defaultPeerLimit() {
    var machine = Machine(configuration: Self.configuration(idleTimeout: .zero))
    _ = machine.connectionOpened(.accepted, peerAddress: nil)
    guard case .welcome(let handshake) = machine.received(Self.hello(compressions: [0])) else {
      Issue.record("no WELCOME")
      return
    }
    #expect(handshake.peerMaxFrameSize == WireProtocol.defaultMaxFrameSize)
    #expect(!handshake.compression)
    #expect(handshake.idleCheck == nil)
  }

  @Test("unknown versions and compression ids are ignored; version 0 among them too")
  func unknownOffersIgnored() {
    var machine = Machine(configuration: Self.configuration())
    _ = machine.connectionOpened(.accepted, peerAddress: nil)
    let action = machine.received(Self.hello(versions: [0, 7, 1], compressions: [9, 0, 200]))
    guard case .welcome(let handshake) = action else {
      Issue.record("\(action)")
      return
    }
    #expect(handshake.welcome.version == 1 && !handshake.compression)
  }

  @Test("an empty client id becomes the peer's address")
  func emptyClientID() {
    var machine = Machine(configuration: Self.configuration())
    _ = machine.connectionOpened(.accepted, peerAddress: "10.0.0.7")
    guard case .welcome(let handshake) = machine.received(Self.hello(clientID: "")) else {
      Issue.record("no WELCOME")
      return
    }
    #expect(handshake.welcome.clientID == "addr:10.0.0.7")
    #expect(machine.clientID == "addr:10.0.0.7")
  }

  @Test(
    "a HELLO is refused on id 0, and the connection closed, in this order of reasons",
    arguments: [
      // No version in common wins over everything else.
      (
        Self.hello(versions: [3], clientID: String(repeating: "x", count: 300)), StatusCode.unsupportedVersion
      ),
      (Self.hello(versions: []), .unsupportedVersion),
      // Fields out of bounds win over authentication.
      (Self.hello(clientID: String(repeating: "x", count: 257)), .invalidArgument),
      (Self.hello(maxFrameSize: 1023), .invalidArgument),
      (Self.hello(token: "wrong"), .unauthenticated),
      (Self.hello(token: ""), .unauthenticated),
    ]
  )
  func handshakeRefused(hello: WireFrame, code: StatusCode) {
    var machine = Machine(configuration: Self.configuration(tokens: ["s3cret": "alice"]))
    _ = machine.connectionOpened(.accepted, peerAddress: nil)
    let action = machine.received(hello)
    #expect(action.closing?.error?.code == code, "\(action)")
    #expect(action.closing?.frame?.requestID == 0)
    #expect(machine.phase == .closed)
  }

  @Test("with tokens configured, the token decides the client id, whatever the client claims")
  func tokenDecides() {
    var machine = Machine(configuration: Self.configuration(tokens: ["s3cret": "alice"]))
    _ = machine.connectionOpened(.accepted, peerAddress: nil)
    guard case .welcome(let handshake) = machine.received(Self.hello(clientID: "mallory", token: "s3cret"))
    else {
      Issue.record("no WELCOME")
      return
    }
    #expect(handshake.welcome.clientID == "alice")
  }

  @Test("a 256-byte client id is the longest accepted")
  func longestClientID() {
    var machine = Machine(configuration: Self.configuration())
    _ = machine.connectionOpened(.accepted, peerAddress: nil)
    let id = String(repeating: "é", count: 128)  // 256 bytes of UTF-8
    guard case .welcome(let handshake) = machine.received(Self.hello(clientID: id)) else {
      Issue.record("a 256-byte id was refused")
      return
    }
    #expect(handshake.welcome.clientID == id)
  }

  @Test("any frame but HELLO first, or a second HELLO, is a protocol error on id 0")
  func helloFirstAndOnce() {
    var first = Machine(configuration: Self.configuration())
    _ = first.connectionOpened(.accepted, peerAddress: nil)
    #expect(first.received(WireFrame(requestID: 0, message: .ping(1))).closing?.error?.code == .protocolError)

    var predictFirst = Machine(configuration: Self.configuration())
    _ = predictFirst.connectionOpened(.accepted, peerAddress: nil)
    #expect(predictFirst.predictReceived(1).closing?.error?.code == .protocolError)

    var second = Self.active()
    let action = second.received(Self.hello())
    #expect(action.closing?.error?.code == .protocolError)
    #expect(action.closing?.error?.message.contains("second HELLO") == true)
  }

  @Test("the handshake timer closes a connection still waiting for HELLO, and only such a one")
  func handshakeTimeout() {
    var waiting = Machine(configuration: Self.configuration())
    _ = waiting.connectionOpened(.accepted, peerAddress: nil)
    let action = waiting.handshakeTimedOut()
    #expect(action.closing?.error?.code == .protocolError)
    #expect(action.closing?.error?.message.contains("handshake timeout") == true)

    var done = Self.active()
    guard case .none = done.handshakeTimedOut() else {
      Issue.record("a completed handshake timed out")
      return
    }
  }

  // MARK: Requests

  @Test("requests are admitted into the table and started")
  func admitted() {
    var machine = Self.active()
    guard case .gather = machine.predictReceived(1) else { return record("predict not gathered") }
    guard case .startBatch(2, _) = machine.received(Self.batch(2)) else { return record("no batch") }
    guard case .openStream(3, _) = machine.received(Self.stream(3)) else { return record("no stream") }
    let stats = machine.received(WireFrame(requestID: 4, message: .statsRequest))
    guard case .answerStatistics(4) = stats else { return record("no stats") }
    #expect(machine.inFlight == 4)
  }

  @Test("a request id already in flight is a protocol error that closes the connection")
  func duplicateID() {
    var machine = Self.active()
    _ = machine.predictReceived(7)
    let action = machine.received(Self.batch(7))
    #expect(action.closing?.error?.code == .protocolError)
    #expect(action.closing?.error?.message.contains("already in flight") == true)
    #expect(machine.phase == .closed)

    var twice = Self.active()
    _ = twice.received(Self.stream(9))
    #expect(twice.predictReceived(9).closing?.error?.code == .protocolError)
  }

  @Test("beyond the most requests in flight, a new one is refused RESOURCE_EXHAUSTED on its id")
  func inFlightLimit() {
    var machine = Self.active(Self.configuration(maxConcurrentRequests: 2))
    _ = machine.predictReceived(1)
    _ = machine.predictReceived(2)
    let refused = machine.predictReceived(3)
    #expect(refused.written?.requestID == 3)
    #expect(refused.written?.error?.code == .resourceExhausted)
    #expect(machine.received(Self.batch(4)).written?.error?.code == .resourceExhausted)
    #expect(machine.inFlight == 2)
    // An answer frees a place.
    _ = machine.requestFinished(1, .result(ByteBuffer(string: "x")))
    guard case .gather = machine.predictReceived(3) else { return record("not admitted") }
  }

  @Test("a request the decoder refused is answered on its id, after the connection's own checks")
  func refusedByDecoder() {
    var machine = Self.active(Self.configuration(maxConcurrentRequests: 1))
    let invalid = WireError(
      code: .invalidArgument,
      message: "not UTF-8",
      requestID: 5,
      closesConnection: false
    )
    #expect(machine.refusedByDecoder(invalid).written?.error?.code == .invalidArgument)
    _ = machine.predictReceived(1)
    // The connection is full: that answer comes first.
    #expect(machine.refusedByDecoder(invalid).written?.error?.code == .resourceExhausted)
    // An id in flight is a duplicate whatever its content.
    let duplicate = WireError(code: .invalidArgument, message: "x", requestID: 1, closesConnection: false)
    #expect(machine.refusedByDecoder(duplicate).closing?.error?.code == .protocolError)
  }

  @Test("PING is answered PONG with its value; an unsolicited PONG is ignored")
  func pingPong() {
    var machine = Self.active()
    #expect(machine.received(WireFrame(requestID: 0, message: .ping(42))).written?.message == .pong(42))
    guard case .none = machine.received(WireFrame(requestID: 0, message: .pong(42))) else {
      return record("a PONG was answered")
    }
  }

  @Test("a server-to-client message from a client is a protocol error")
  func wrongDirection() {
    var machine = Self.active()
    let action = machine.received(WireFrame(requestID: 3, message: .streamEnd(tokenCount: 1)))
    #expect(action.closing?.error?.code == .protocolError)
  }

  // MARK: Completion

  @Test(
    "each outcome becomes its answer, exactly once",
    arguments: [
      (Machine.Outcome.result(ByteBuffer(string: "r")), WireMessage.result(ByteBuffer(string: "r"))),
      (.batchResult([ByteBuffer(string: "a")]), .batchResult([ByteBuffer(string: "a")])),
      (.statistics(json: "{}"), .stats(json: "{}")),
      (
        .failure(ServingError(.deadlineExceeded, "late")),
        .error(WireMessage.ErrorInfo(code: .deadlineExceeded, message: "late"))
      ),
      (
        .failure(ServingError(.rateLimited, "slow down", retryAfter: .milliseconds(1500))),
        .error(WireMessage.ErrorInfo(code: .rateLimited, retryAfterMilliseconds: 1500, message: "slow down"))
      ),
    ]
  )
  func outcomes(outcome: Machine.Outcome, answer: WireMessage) {
    var machine = Self.active()
    _ = machine.received(Self.batch(1))
    machine.workStarted(1, "ticket 1")
    #expect(machine.requestFinished(1, outcome).written == WireFrame(requestID: 1, message: answer))
    guard case .none = machine.requestFinished(1, outcome) else { return record("answered twice") }
    #expect(machine.inFlight == 0)
  }

  @Test("a stream's end carries the tokens written for it")
  func streamEnd() {
    var machine = Self.active()
    _ = machine.received(Self.stream(3))
    machine.workStarted(3, "stream 3")
    let first = machine.tokenWritten(3)
    let burst = machine.tokensWritten(3, count: 63)
    #expect(first && burst)
    #expect(machine.requestFinished(3, .streamEnd).written?.message == .streamEnd(tokenCount: 64))
    // A token for a stream answered already is not written.
    let late = machine.tokenWritten(3)
    #expect(!late)
  }

  @Test("work that reports back before it is recorded as started is answered once, and not recorded")
  func finishedBeforeStarted() {
    var machine = Self.active()
    _ = machine.received(Self.batch(1))
    #expect(machine.requestFinished(1, .batchResult([])).written != nil)
    machine.workStarted(1, "late ticket")
    guard case .none = machine.received(WireFrame(requestID: 1, message: .cancel)) else {
      return record("the late ticket was recorded")
    }
  }

  // MARK: Cancellation

  @Test("CANCEL of queued or running work stops it; the work's own report is the answer")
  func cancelStarted() {
    var machine = Self.active()
    _ = machine.predictReceived(1)
    machine.workStarted(1, "ticket 1")
    guard case .cancel("ticket 1") = machine.received(WireFrame(requestID: 1, message: .cancel)) else {
      return record("not cancelled")
    }
    #expect(machine.inFlight == 1)  // until the work reports back
    let answer = machine.requestFinished(1, .failure(ServingError(.cancelled, "cancelled by the client")))
    #expect(answer.written?.error?.code == .cancelled)
  }

  @Test("CANCEL of an unknown id, or of one answered already, is ignored")
  func cancelUnknown() {
    var machine = Self.active()
    guard case .none = machine.received(WireFrame(requestID: 99, message: .cancel)) else {
      return record("an unknown id was cancelled")
    }
    _ = machine.received(Self.batch(1))
    machine.workStarted(1, "ticket 1")
    _ = machine.requestFinished(1, .batchResult([]))
    guard case .none = machine.received(WireFrame(requestID: 1, message: .cancel)) else {
      return record("an answered id was cancelled")
    }
  }

  @Test("a token the client cannot receive gives its stream up: no more tokens, one RESOURCE_EXHAUSTED")
  func tokenRefused() {
    var machine = Self.active()
    _ = machine.received(Self.stream(5))
    machine.workStarted(5, "stream 5")
    let tooLarge = WireError(code: .frameTooLarge, message: "4 KiB", requestID: 5, closesConnection: false)
    guard case .cancel("stream 5") = machine.tokenRefused(5, tooLarge) else { return record("kept") }
    let after = machine.tokenWritten(5)
    #expect(!after)
    // The stream reports its cancellation; the answer says why the server gave it up.
    let answer = machine.requestFinished(5, .failure(ServingError(.cancelled, "cancelled")))
    #expect(answer.written?.error?.code == .resourceExhausted)
  }

  // MARK: Draining and closing

  @Test("drain with requests and streams in flight: GOAWAY, new requests UNAVAILABLE, the last answer closes")
  func drainWithWork() {
    var machine = Self.active()
    _ = machine.predictReceived(1)
    machine.workStarted(1, "ticket 1")
    _ = machine.received(Self.stream(2))
    machine.workStarted(2, "stream 2")
    guard case .goAway? = machine.drain().written?.message else { return record("no GOAWAY") }
    #expect(machine.phase == .draining)
    #expect(machine.predictReceived(3).written?.error?.code == .unavailable)
    #expect(machine.received(Self.stream(4)).written?.error?.code == .unavailable)
    // Connection frames still work.
    #expect(machine.received(WireFrame(requestID: 0, message: .ping(1))).written?.message == .pong(1))
    #expect(machine.requestFinished(1, .result(ByteBuffer())).written != nil)
    let last = machine.requestFinished(2, .streamEnd)
    #expect(last.closing?.frame?.message == .streamEnd(tokenCount: 0))
    #expect(machine.phase == .closed)
  }

  @Test("version 2: offered with 1, it is chosen, and a request arriving while draining is REFUSED")
  func version2() {
    var machine = Machine(configuration: Self.configuration())
    _ = machine.connectionOpened(.accepted, peerAddress: "10.0.0.7")
    guard case .welcome(let handshake) = machine.received(Self.hello(versions: [1, 2])) else {
      return record("no WELCOME")
    }
    #expect(handshake.welcome.version == 2, "the highest version both speak")
    _ = machine.predictReceived(1)
    machine.workStarted(1, "ticket 1")
    guard case .goAway? = machine.drain().written?.message else { return record("no GOAWAY") }
    #expect(machine.predictReceived(3).written?.error?.code == .refused)
    #expect(machine.received(Self.stream(4)).written?.error?.code == .refused)
  }

  @Test("drain closes at once a connection with nothing in flight, or still in its handshake")
  func drainIdle() {
    var idle = Self.active()
    guard case .goAway? = idle.drain().closing?.frame?.message else { return record("not closed") }
    var handshaking = Machine(configuration: Self.configuration())
    _ = handshaking.connectionOpened(.accepted, peerAddress: nil)
    guard case .goAway? = handshaking.drain().closing?.frame?.message else { return record("not closed") }
    guard case .none = idle.drain() else { return record("drained twice") }
  }

  @Test("closing now answers every request UNAVAILABLE in order of id and stops its work")
  func closeNow() throws {
    var machine = Self.active()
    _ = machine.received(Self.stream(9))
    machine.workStarted(9, "stream 9")
    _ = machine.predictReceived(3)
    machine.workStarted(3, "ticket 3")
    _ = machine.predictReceived(5)  // gathered, not started
    let closing = machine.closeNow()
    let shutdown = try #require(closing)
    #expect(Set(shutdown.cancel) == ["stream 9", "ticket 3"])
    #expect(shutdown.answers.map(\.requestID) == [3, 5, 9])
    #expect(shutdown.answers.allSatisfy { $0.error?.code == .unavailable })
    // Later reports change nothing.
    guard case .none = machine.requestFinished(9, .streamEnd) else { return record("answered") }
    let again = machine.closeNow()
    #expect(again == nil)
  }

  @Test("a closed channel stops every request's work and answers nothing")
  func channelClosed() {
    var machine = Self.active()
    _ = machine.received(Self.batch(1))
    machine.workStarted(1, "ticket 1")
    _ = machine.predictReceived(2)
    #expect(machine.channelClosed() == ["ticket 1"])
    guard case .none = machine.requestFinished(1, .batchResult([])) else { return record("answered") }
  }

  @Test("a connection error is answered on id 0 once, and closes")
  func connectionError() {
    var machine = Self.active()
    let action = machine.fail(WireError(code: .frameTooLarge, message: "too big", closesConnection: true))
    #expect(action.closing?.error?.code == .frameTooLarge)
    guard case .none = machine.fail(.protocolViolation("again")) else { return record("twice") }
  }

  // MARK: Idling

  @Test("idle: nothing read for the timeout and nothing in flight closes with GOAWAY")
  func idle() {
    var machine = Self.active(Self.configuration(idleTimeout: .seconds(10)))
    machine.readReceived(at: .uptimeNanoseconds(0))
    // Read 4 s ago: look again 10 s after that read.
    guard case .checkIdle(let again) = machine.idleTimerFired(now: .uptimeNanoseconds(4_000_000_000)) else {
      return record("closed too early")
    }
    #expect(again == .uptimeNanoseconds(10_000_000_000))
    let action = machine.idleTimerFired(now: .uptimeNanoseconds(10_000_000_000))
    guard case .goAway(let goAway)? = action.closing?.frame?.message else { return record("\(action)") }
    #expect(goAway.code == .unavailable && goAway.message.contains("idle"))
  }

  @Test("idle: a request in flight keeps the connection open, however long it takes")
  func busyIsNotIdle() {
    var machine = Self.active(Self.configuration(idleTimeout: .seconds(10)))
    machine.readReceived(at: .uptimeNanoseconds(0))
    _ = machine.predictReceived(1)
    guard case .checkIdle(let again) = machine.idleTimerFired(now: .uptimeNanoseconds(50_000_000_000)) else {
      return record("a busy connection idled out")
    }
    #expect(again == .uptimeNanoseconds(60_000_000_000))
  }

  // MARK: Answers that do not fit

  @Test("an answer too large for the client becomes RESOURCE_EXHAUSTED on its id; a connection frame cannot")
  func substitute() {
    let error = WireError(code: .frameTooLarge, message: "5 KiB", requestID: 4, closesConnection: false)
    let result = WireFrame(requestID: 4, message: .result(ByteBuffer(repeating: 1, count: 5000)))
    let answer = Machine.substitute(for: result, refusedWith: error)
    #expect(answer?.requestID == 4 && answer?.error?.code == .resourceExhausted)
    let welcome = WireFrame(requestID: 0, message: .pong(1))
    #expect(Machine.substitute(for: welcome, refusedWith: error) == nil)
  }

  @Test("error messages are cut to fit the smallest frame a client may accept")
  func longMessages() {
    var machine = Self.active()
    _ = machine.received(Self.batch(1))
    let long = String(repeating: "ồ", count: 5000)
    let answer = machine.requestFinished(1, .failure(ServingError(.internal, long)))
    let message = answer.written?.error?.message ?? ""
    #expect(message.utf8.count <= WireMessage.ErrorInfo.maxMessageBytes)
    #expect(message.hasSuffix("…") && message.hasPrefix("ồồồ"))
  }
}

extension BinaryConnectionHandler.StateMachine.Action {
  /// The frame of a ``write(_:)``.
  var written: WireFrame? {
    if case .write(let frame) = self { return frame }
    return nil
  }

  /// The frame of a ``close(_:)``, if it is one.
  var closing: (frame: WireFrame?, error: WireMessage.ErrorInfo?)? {
    if case .close(let frame) = self { return (frame, frame?.error) }
    return nil
  }
}

extension WireFrame {
  var error: WireMessage.ErrorInfo? {
    if case .error(let info) = message { return info }
    return nil
  }
}
