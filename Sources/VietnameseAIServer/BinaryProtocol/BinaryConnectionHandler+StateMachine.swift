import NIOCore
import VietnameseAIWire

extension BinaryConnectionHandler {
  /// Every decision a binary-protocol connection makes, on plain values: its phase, its
  /// requests in flight, the handshake, the connection-level admission, draining and idling.
  ///
  /// Inputs are decoded frames, completions of the work the connection started, and timer
  /// firings; each transition returns what the handler must do (write, start work, cancel it,
  /// arm a timer, close). It never calls out, so a completion that arrives while the handler
  /// carries out an action is just the next input.
  ///
  /// `Work` is what the handler keeps to cancel a request's work (a ticket in a batcher, a
  /// stream); the state machine only stores it and hands it back.
  ///
  /// Every request in the table is answered exactly once, by ``requestFinished(_:_:)``, once
  /// its work reports back, or by ``closeNow()``. Work that is cancelled still reports back,
  /// and its request keeps its id until then, so an id is never reused while old work may
  /// still answer under it.
  ///
  /// Predicts are the one kind the handler gathers: it submits a read's predicts together at
  /// the end of the read, and before it hands over any other frame, so every frame finds the
  /// predicts before it started.
  struct StateMachine<Work> {
    struct Configuration {
      var admission: Admission
      var identities: ClientIdentities
      /// The largest payload the server reads once the handshake is done.
      var maxFrameSize: Int
      var allowsCompression: Bool
      var handshakeTimeout: Duration
      /// Zero: connections never idle out.
      var idleTimeout: Duration
    }

    enum Phase: Equatable {
      /// Waiting for `HELLO`.
      case awaitingHello
      case active
      /// `GOAWAY` sent: requests in flight finish, new ones are refused.
      case draining
      case closed
    }

    /// A request in flight.
    struct Request {
      /// `nil` until the work has started (a predict waiting for the end of its read).
      var work: Work?
      var tokensSent: UInt32 = 0
      /// The answer the request gets when its work reports back, whatever the work says: set
      /// when the server gave the request up for a reason of its own.
      var failure: ServingError?
    }

    /// How a request's work ended.
    enum Outcome {
      case result(ByteBuffer)
      case batchResult([ByteBuffer])
      case streamEnd
      case statistics(json: String)
      case failure(ServingError)
    }

    /// What the handshake settled.
    struct Handshake {
      var welcome: WireMessage.Welcome
      var compression: Bool
      /// The largest payload the client accepts: every answer must fit it.
      var peerMaxFrameSize: Int
      /// When to look for idleness first; `nil` if connections never idle out.
      var idleCheck: NIODeadline?
    }

    enum Action {
      case none
      case write(WireFrame)
      /// Write the frame, if any, then close the connection.
      case close(WireFrame?)
      /// Arm the handshake timer.
      case awaitHello(timeout: Duration)
      /// Write `WELCOME`, set the codec up as agreed, cancel the handshake timer and arm the
      /// idle timer.
      case welcome(Handshake)
      /// Keep the predict for the submission at the end of the read.
      case gather
      case startBatch(UInt32, WireMessage.BatchPredict)
      case openStream(UInt32, WireMessage.StreamOpen)
      case answerStatistics(UInt32)
      /// Ask the work to stop; it reports back with its outcome.
      case cancel(Work)
      /// Look for idleness again at this time.
      case checkIdle(NIODeadline)
    }

    /// What ``closeNow()`` asks for.
    struct Shutdown {
      /// Work to stop; what it reports back is no longer written.
      var cancel: [Work] = []
      /// Answers to write, then close.
      var answers: [WireFrame] = []
    }

    private(set) var phase = Phase.awaitingHello
    private(set) var clientID = ""
    /// The protocol version the handshake settled on.
    private(set) var version: UInt8 = 1
    private var requests: [UInt32: Request] = [:]
    private var lastRead: NIODeadline?
    private var peerAddress: String?
    private let configuration: Configuration

    init(configuration: Configuration) {
      self.configuration = configuration
    }

    /// Requests in flight.
    var inFlight: Int { requests.count }

    /// Whether the handler should stamp reads with their time, for the idle timeout.
    var tracksReads: Bool { configuration.idleTimeout > .zero }

    // MARK: Opening

    /// The connection was accepted (or not) by the server's registry. `peerAddress` names a
    /// client that claims no id of its own.
    mutating func connectionOpened(_ admission: ConnectionRegistry.Admission, peerAddress: String?) -> Action
    {
      self.peerAddress = peerAddress
      switch admission {
      case .accepted:
        return .awaitHello(timeout: configuration.handshakeTimeout)
      case .full(let limit):
        phase = .closed
        let message = "the server holds its maximum of \(limit) connections"
        return .close(Self.error(.resourceExhausted, message, id: 0))
      case .draining:
        phase = .closed
        return .close(Self.goAway)
      }
    }

    mutating func handshakeTimedOut() -> Action {
      guard phase == .awaitingHello else { return .none }
      let timeout = configuration.handshakeTimeout
      return fail(.protocolError, "no HELLO within the handshake timeout of \(timeout)")
    }

    private mutating func hello(_ hello: WireMessage.Hello) -> Action {
      // The order in which a HELLO is refused: no common version, a field out of bounds, then
      // authentication. Unknown versions and compression ids are ignored: a client may offer
      // those of later versions.
      guard let version = WireProtocol.supportedVersions.first(where: hello.versions.contains) else {
        let offered = hello.versions.map(String.init).joined(separator: ", ")
        let spoken = WireProtocol.supportedVersions.map(String.init).joined(separator: ", ")
        let message = "this server speaks protocol versions \(spoken); the client offered [\(offered)]"
        return fail(.unsupportedVersion, message)
      }
      let peerMaxFrameSize = hello.maxFrameSize.map(Int.init) ?? WireProtocol.defaultMaxFrameSize
      guard peerMaxFrameSize >= WireProtocol.minMaxFrameSize else {
        let message =
          "a client must accept frames of \(WireProtocol.minMaxFrameSize) bytes; it offered \(peerMaxFrameSize)"
        return fail(.invalidArgument, message)
      }
      switch configuration.identities.identify(
        token: hello.authToken,
        claimedID: hello.clientID,
        peerAddress: peerAddress
      ) {
      case .success(let id): clientID = id
      case .failure(let refusal): return fail(StatusCode(refusal.code), refusal.message)
      }
      let zlib = configuration.allowsCompression && hello.compressions.contains(WireProtocol.compressionZlib)
      phase = .active
      self.version = version
      let welcome = WireMessage.Welcome(
        version: version,
        compression: zlib ? WireProtocol.compressionZlib : WireProtocol.compressionIdentity,
        maxFrameSize: UInt32(configuration.maxFrameSize),
        maxConcurrentRequests: UInt32(configuration.admission.maxConcurrentRequests),
        clientID: clientID
      )
      let idleCheck = lastRead.map { $0 + TimeAmount(configuration.idleTimeout) }
      return .welcome(
        Handshake(
          welcome: welcome,
          compression: zlib,
          peerMaxFrameSize: peerMaxFrameSize,
          idleCheck: tracksReads ? idleCheck : nil
        )
      )
    }

    // MARK: Requests

    /// The handler read bytes at `time` (called only while ``tracksReads``).
    mutating func readReceived(at time: NIODeadline) {
      lastRead = time
    }

    /// A frame from the client, other than a `PREDICT` (see ``predictReceived(_:)``).
    mutating func received(_ frame: WireFrame) -> Action {
      let id = frame.requestID
      switch phase {
      case .closed:
        return .none
      case .awaitingHello:
        guard case .hello(let message) = frame.message else {
          return fail(.protocolError, "expected HELLO first, got \(frame.message.type.name)")
        }
        return hello(message)
      case .active, .draining:
        break
      }
      switch frame.message {
      case .predict:
        return predictReceived(id)
      case .batchPredict(let request):
        return admit(id) ?? .startBatch(id, request)
      case .streamOpen(let request):
        return admit(id) ?? .openStream(id, request)
      case .statsRequest:
        return admit(id) ?? .answerStatistics(id)
      case .cancel:
        // An id not in flight may have crossed its answer on the wire: ignored.
        guard let work = requests[id]?.work else { return .none }
        return .cancel(work)
      case .ping(let value):
        return .write(WireFrame(requestID: 0, message: .pong(value)))
      case .pong:
        return .none
      case .hello:
        return fail(.protocolError, "a second HELLO")
      case .welcome, .result, .batchResult, .token, .streamEnd, .stats, .error, .goAway:
        // The decoder refuses server-to-client types from a client.
        return fail(.protocolError, "\(frame.message.type.name) is not sent by clients")
      }
    }

    /// A `PREDICT` on `id`: ``Action/gather`` if it may start, or its refusal. The hot path,
    /// so the message itself stays with the handler.
    mutating func predictReceived(_ id: UInt32) -> Action {
      switch phase {
      case .active, .draining:
        return admit(id) ?? .gather
      case .awaitingHello:
        return fail(.protocolError, "expected HELLO first, got PREDICT")
      case .closed:
        return .none
      }
    }

    /// A request whose frame was well delimited but whose content the decoder refused (text
    /// that is not UTF-8): answered on its id, after the connection's own checks.
    mutating func refusedByDecoder(_ error: WireError) -> Action {
      switch phase {
      case .closed: return .none
      case .awaitingHello: return fail(.protocolError, "expected HELLO first, got a request")
      case .active, .draining: break
      }
      let id = error.requestID ?? 0
      if requests[id] != nil { return duplicate(id) }
      if let refusal = connectionRefusal() { return .write(self.error(refusal, id: id)) }
      return .write(Self.error(error.code, error.message, id: id))
    }

    /// Enters request `id` in the table, or says why it may not start.
    private mutating func admit(_ id: UInt32) -> Action? {
      // One lookup: the check for a duplicate id is the insertion itself.
      if let previous = requests.updateValue(Request(), forKey: id) {
        requests[id] = previous
        return duplicate(id)
      }
      if let refusal = connectionRefusal(alreadyInFlight: requests.count - 1) {
        requests[id] = nil
        return .write(error(refusal, id: id))
      }
      return nil
    }

    private func connectionRefusal(alreadyInFlight count: Int? = nil) -> ServingError? {
      configuration.admission.refusal(draining: phase == .draining, inFlight: count ?? requests.count)
    }

    private mutating func duplicate(_ id: UInt32) -> Action {
      fail(.protocolError, "request id \(id) is already in flight")
    }

    // MARK: Work

    /// The work of request `id` has started; it will report back through
    /// ``requestFinished(_:_:)``. Ignored if the request was answered already (its work
    /// reported back before this call).
    mutating func workStarted(_ id: UInt32, _ work: Work) {
      guard let slot = requests.index(forKey: id) else { return }
      requests.values[slot].work = work
    }

    /// Counts one token written for stream `id`.
    ///
    /// - Returns: Whether the token is to be written: not for a stream that was answered
    ///   already, or that the server gave up.
    mutating func tokenWritten(_ id: UInt32) -> Bool {
      tokensWritten(id, count: 1)
    }

    /// Counts `count` tokens written for stream `id`; as ``tokenWritten(_:)``.
    mutating func tokensWritten(_ id: UInt32, count: Int) -> Bool {
      guard let slot = requests.index(forKey: id), requests.values[slot].failure == nil else { return false }
      requests.values[slot].tokensSent &+= UInt32(truncatingIfNeeded: count)
      return true
    }

    /// A token of stream `id` could not be written (it is larger than the client accepts):
    /// the stream is given up and answered with that, not with its `STREAM_END`.
    mutating func tokenRefused(_ id: UInt32, _ error: WireError) -> Action {
      guard let slot = requests.index(forKey: id), let work = requests.values[slot].work else { return .none }
      requests.values[slot].failure = ServingError(
        .resourceExhausted,
        "the generator gave a token the client cannot receive: \(error.message)"
      )
      return .cancel(work)
    }

    /// Request `id`'s work reported back: its answer, unless it was answered already. While
    /// draining, the last answer closes the connection.
    mutating func requestFinished(_ id: UInt32, _ outcome: Outcome) -> Action {
      guard phase != .closed, let request = requests.removeValue(forKey: id) else { return .none }
      let message: WireMessage
      if let failure = request.failure {
        message = .error(WireMessage.ErrorInfo(failure))
      } else {
        switch outcome {
        case .result(let output): message = .result(output)
        case .batchResult(let outputs): message = .batchResult(outputs)
        case .streamEnd: message = .streamEnd(tokenCount: request.tokensSent)
        case .statistics(let json): message = .stats(json: json)
        case .failure(let error): message = .error(WireMessage.ErrorInfo(error))
        }
      }
      let answer = WireFrame(requestID: id, message: message)
      if phase == .draining && requests.isEmpty {
        phase = .closed
        return .close(answer)
      }
      return .write(answer)
    }

    /// The answer to write instead of `frame` when `frame` is larger than the client accepts.
    ///
    /// - Returns: `nil` for a connection frame, which the server always keeps small: the
    ///   connection must close.
    static func substitute(for frame: WireFrame, refusedWith error: WireError) -> WireFrame? {
      guard frame.requestID != 0 else { return nil }
      let message = "the answer does not fit the client's frame limit: \(error.message)"
      return Self.error(.resourceExhausted, message, id: frame.requestID)
    }

    // MARK: Idle, drain, close

    /// The idle timer fired at `now`: close if nothing was read for the idle timeout and
    /// nothing is in flight, or look again later.
    mutating func idleTimerFired(now: NIODeadline) -> Action {
      guard phase == .active || phase == .draining, configuration.idleTimeout > .zero else { return .none }
      let timeout = TimeAmount(configuration.idleTimeout)
      guard requests.isEmpty else { return .checkIdle(now + timeout) }
      if let lastRead, now - lastRead < timeout { return .checkIdle(lastRead + timeout) }
      phase = .closed
      let message = "idle for longer than the idle timeout of \(configuration.idleTimeout)"
      return .close(
        WireFrame(requestID: 0, message: .goAway(WireMessage.GoAway(code: .unavailable, message: message)))
      )
    }

    /// The server is shutting down: `GOAWAY`, then close once every request is answered. A
    /// connection still in its handshake closes at once.
    mutating func drain() -> Action {
      switch phase {
      case .awaitingHello:
        phase = .closed
        return .close(Self.goAway)
      case .active:
        if requests.isEmpty {
          phase = .closed
          return .close(Self.goAway)
        }
        phase = .draining
        return .write(Self.goAway)
      case .draining, .closed:
        return .none
      }
    }

    /// The drain timeout passed: every request still in flight is answered `UNAVAILABLE`, in
    /// order of id, and the connection closes.
    mutating func closeNow() -> Shutdown? {
      guard phase != .closed else { return nil }
      phase = .closed
      var shutdown = Shutdown()
      let message = "server shut down before the request finished"
      for (id, request) in requests.sorted(by: { $0.key < $1.key }) {
        if let work = request.work { shutdown.cancel.append(work) }
        shutdown.answers.append(Self.error(.unavailable, message, id: id))
      }
      requests.removeAll()
      return shutdown
    }

    /// The bytes from the client can no longer be trusted (a connection error of the decoder):
    /// `ERROR` on id 0, then close.
    mutating func fail(_ error: WireError) -> Action {
      fail(error.code, error.message)
    }

    /// The connection ends for a reason of its own: `ERROR` on id 0, then close. An `ERROR` on
    /// id 0 always closes.
    private mutating func fail(_ code: StatusCode, _ message: String) -> Action {
      guard phase != .closed else { return .none }
      phase = .closed
      return .close(Self.error(code, message, id: 0))
    }

    /// The connection closed: nobody waits for the answers, so every request's work stops.
    mutating func channelClosed() -> [Work] {
      phase = .closed
      let abandoned = requests.values.compactMap(\.work)
      requests.removeAll()
      return abandoned
    }

    // MARK: Frames

    private static var goAway: WireFrame {
      WireFrame(
        requestID: 0,
        message: .goAway(WireMessage.GoAway(code: .unavailable, message: "server is shutting down"))
      )
    }

    private static func error(_ code: StatusCode, _ message: String, id: UInt32) -> WireFrame {
      WireFrame(requestID: id, message: .error(WireMessage.ErrorInfo(code: code, fitting: message)))
    }

    private func error(_ error: ServingError, id: UInt32) -> WireFrame {
      var error = error
      // Version 1 has no REFUSED: the same refusal, as version 1 words it.
      if error.code == .refused && version < 2 { error.code = .unavailable }
      return WireFrame(requestID: id, message: .error(WireMessage.ErrorInfo(error)))
    }
  }
}
