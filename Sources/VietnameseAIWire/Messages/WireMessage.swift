public import NIOCore

/// One decoded frame: the request it belongs to and its message.
public struct WireFrame: Hashable, Sendable {
  /// The request id; 0 for connection frames (`HELLO`, `WELCOME`, `PING`, `PONG`, `GOAWAY`,
  /// and an `ERROR` about the whole connection).
  public var requestID: UInt32
  public var message: WireMessage

  public init(requestID: UInt32, message: WireMessage) {
    self.requestID = requestID
    self.message = message
  }
}

/// Every message of protocol version 1. The payload layout of each is in
/// `Protocol/PROTOCOL.md` and next to its encoder in `WireMessage+Payload.swift`.
public enum WireMessage: Hashable, Sendable {
  /// Client → server, opens every connection.
  case hello(Hello)
  /// Server → client, accepts the handshake.
  case welcome(Welcome)
  /// Predict one input with a model.
  case predict(Predict)
  /// Predict many inputs with a model; outputs come back in the same order.
  case batchPredict(BatchPredict)
  /// Open a token stream for a prompt.
  case streamOpen(StreamOpen)
  /// The client gives up the request with this frame's id.
  case cancel
  /// Ask for the server's statistics.
  case statsRequest
  /// Liveness check; the peer answers `pong` with the same value.
  case ping(UInt64)
  case pong(UInt64)
  /// The output of a `predict`.
  case result(ByteBuffer)
  /// The outputs of a `batchPredict`, in input order.
  case batchResult([ByteBuffer])
  /// One token of a stream.
  case token(String)
  /// A stream ended normally after `tokenCount` tokens.
  case streamEnd(tokenCount: UInt32)
  /// The statistics, as JSON with the seed's keys.
  case stats(json: String)
  /// A request (or, on id 0, the connection) failed.
  case error(ErrorInfo)
  /// The server is draining: no new requests on this connection.
  case goAway(GoAway)

  public var type: FrameType {
    switch self {
    case .hello: return .hello
    case .welcome: return .welcome
    case .predict: return .predict
    case .batchPredict: return .batchPredict
    case .streamOpen: return .streamOpen
    case .cancel: return .cancel
    case .statsRequest: return .statsRequest
    case .ping: return .ping
    case .pong: return .pong
    case .result: return .result
    case .batchResult: return .batchResult
    case .token: return .token
    case .streamEnd: return .streamEnd
    case .stats: return .stats
    case .error: return .error
    case .goAway: return .goAway
    }
  }
}

extension WireMessage {
  /// The client's half of the handshake.
  public struct Hello: Hashable, Sendable {
    /// Protocol versions the client speaks, in order of preference.
    public var versions: [UInt8]
    /// Who the client says it is; the rate limiter's key unless an auth token says otherwise.
    public var clientID: String
    /// An auth token, or empty for none.
    public var authToken: String
    /// Compression algorithms the client accepts (``WireProtocol/compressionZlib``, ...).
    public var compressions: [UInt8]
    /// The largest payload the client accepts, if it says; `nil` means the protocol's default
    /// (``WireProtocol/defaultMaxFrameSize``). Sent only when set, so that a client at the
    /// default speaks to servers that predate the field.
    public var maxFrameSize: UInt32?

    public init(
      versions: [UInt8],
      clientID: String,
      authToken: String = "",
      compressions: [UInt8],
      maxFrameSize: UInt32? = nil
    ) {
      self.versions = versions
      self.clientID = clientID
      self.authToken = authToken
      self.compressions = compressions
      self.maxFrameSize = maxFrameSize
    }
  }

  /// The server's half of the handshake.
  public struct Welcome: Hashable, Sendable {
    /// The version both sides speak from now on.
    public var version: UInt8
    /// The compression both sides may use from now on (0: none, 1: zlib).
    public var compression: UInt8
    /// The largest payload the server accepts.
    public var maxFrameSize: UInt32
    /// The most requests the client may have in flight on this connection.
    public var maxConcurrentRequests: UInt32
    /// The client id the server uses for this connection (from the token, when configured).
    public var clientID: String

    public init(
      version: UInt8,
      compression: UInt8,
      maxFrameSize: UInt32,
      maxConcurrentRequests: UInt32,
      clientID: String
    ) {
      self.version = version
      self.compression = compression
      self.maxFrameSize = maxFrameSize
      self.maxConcurrentRequests = maxConcurrentRequests
      self.clientID = clientID
    }
  }

  public struct Predict: Hashable, Sendable {
    /// Milliseconds the client will wait, from when the server reads the frame; 0 for none.
    public var deadlineMilliseconds: UInt32
    public var model: String
    public var input: ByteBuffer

    public init(deadlineMilliseconds: UInt32 = 0, model: String, input: ByteBuffer) {
      self.deadlineMilliseconds = deadlineMilliseconds
      self.model = model
      self.input = input
    }
  }

  public struct BatchPredict: Hashable, Sendable {
    public var deadlineMilliseconds: UInt32
    public var model: String
    public var inputs: [ByteBuffer]

    public init(deadlineMilliseconds: UInt32 = 0, model: String, inputs: [ByteBuffer]) {
      self.deadlineMilliseconds = deadlineMilliseconds
      self.model = model
      self.inputs = inputs
    }
  }

  public struct StreamOpen: Hashable, Sendable {
    public var deadlineMilliseconds: UInt32
    /// The generator to use; empty for the server's default.
    public var model: String
    public var prompt: String

    public init(deadlineMilliseconds: UInt32 = 0, model: String = "", prompt: String) {
      self.deadlineMilliseconds = deadlineMilliseconds
      self.model = model
      self.prompt = prompt
    }
  }

  public struct ErrorInfo: Hashable, Sendable {
    public var code: StatusCode
    /// For ``StatusCode/rateLimited``: milliseconds until a retry can succeed; 0 otherwise.
    public var retryAfterMilliseconds: UInt32
    public var message: String

    public init(code: StatusCode, retryAfterMilliseconds: UInt32 = 0, message: String) {
      self.code = code
      self.retryAfterMilliseconds = retryAfterMilliseconds
      self.message = message
    }
  }

  public struct GoAway: Hashable, Sendable {
    public var code: StatusCode
    public var message: String

    public init(code: StatusCode, message: String) {
      self.code = code
      self.message = message
    }
  }
}
