public import NIOCore

/// One decoded worker protocol frame.
public struct WorkerFrame: Hashable, Sendable {
  /// The work the frame belongs to; 0 for frames about the connection.
  public var requestID: UInt32
  public var message: WorkerMessage

  public init(requestID: UInt32, message: WorkerMessage) {
    self.requestID = requestID
    self.message = message
  }
}

/// Every message of the worker protocol, version 1 (`Protocol/PROTOCOL.md` §11). Payload
/// layouts are next to their encoder in `WorkerMessage+Payload.swift`.
public enum WorkerMessage: Hashable, Sendable {
  /// Worker → server, opens the connection: who the worker is and what it serves.
  case hello(Hello)
  /// Server → worker, accepts the handshake.
  case welcome(Welcome)
  /// Run one batch of a model; answered by `batchDone` or `error`.
  case runBatch(RunBatch)
  /// A batch's outputs, one per input, in order.
  case batchDone([ByteBuffer])
  /// Generate tokens for a prompt; answered by `tokens`, then `generateDone` or `error`.
  case generate(Generate)
  /// Tokens of a generation, within its credit.
  case tokens([String])
  /// A generation ended normally after `tokenCount` tokens.
  case generateDone(tokenCount: UInt32)
  /// Nobody waits for the work with this frame's id any more.
  case cancelWork
  /// The worker may send this many more tokens of the generation.
  case credit(UInt32)
  /// Finish the work in flight and close, within the grace period.
  case shutdown(graceMilliseconds: UInt32)
  case ping(UInt64)
  case pong(UInt64)
  /// Work (or, on id 0, the connection) failed.
  case error(WireMessage.ErrorInfo)

  public var type: WorkerFrameType {
    switch self {
    case .hello: .workerHello
    case .welcome: .workerWelcome
    case .runBatch: .runBatch
    case .batchDone: .batchDone
    case .generate: .generate
    case .tokens: .tokens
    case .generateDone: .generateDone
    case .cancelWork: .cancelWork
    case .credit: .credit
    case .shutdown: .shutdown
    case .ping: .ping
    case .pong: .pong
    case .error: .error
    }
  }
}

extension WorkerMessage {
  /// The worker protocol versions this implementation speaks, newest first.
  public static let supportedVersions: [UInt8] = [1]

  public struct Hello: Hashable, Sendable {
    public var versions: [UInt8]
    /// A name for logs.
    public var workerName: String
    /// The token a spawned worker was given, or one configured for attached workers.
    public var authToken: String
    public var declarations: [Declaration]

    public init(versions: [UInt8], workerName: String, authToken: String, declarations: [Declaration]) {
      self.versions = versions
      self.workerName = workerName
      self.authToken = authToken
      self.declarations = declarations
    }
  }

  /// One model or generator a worker serves.
  public struct Declaration: Hashable, Sendable {
    public enum Kind: UInt8, Sendable {
      case model = 0
      case generator = 1
    }

    public enum Input: UInt8, Sendable {
      case bytes = 0
      case text = 1
    }

    public enum Output: UInt8, Sendable {
      case bytes = 0
      case text = 1
      /// `dimensions` little-endian `float32` values.
      case vector = 2
    }

    public var name: String
    public var kind: Kind
    public var input: Input
    public var output: Output
    /// The length of a vector output; 0 otherwise.
    public var dimensions: UInt32
    /// The batch size the model prefers; 0 leaves it to the server.
    public var preferredBatchSize: UInt32
    /// Work the worker takes at once for this name: streams for a generator, 1 for a model.
    public var concurrency: UInt32

    public init(
      name: String,
      kind: Kind,
      input: Input = .bytes,
      output: Output = .bytes,
      dimensions: UInt32 = 0,
      preferredBatchSize: UInt32 = 0,
      concurrency: UInt32 = 1
    ) {
      self.name = name
      self.kind = kind
      self.input = input
      self.output = output
      self.dimensions = dimensions
      self.preferredBatchSize = preferredBatchSize
      self.concurrency = concurrency
    }
  }

  public struct Welcome: Hashable, Sendable {
    public var version: UInt8
    public var maxFrameSize: UInt32
    public var heartbeatIntervalMilliseconds: UInt32
    public var heartbeatTimeoutMilliseconds: UInt32

    public init(
      version: UInt8,
      maxFrameSize: UInt32,
      heartbeatIntervalMilliseconds: UInt32,
      heartbeatTimeoutMilliseconds: UInt32
    ) {
      self.version = version
      self.maxFrameSize = maxFrameSize
      self.heartbeatIntervalMilliseconds = heartbeatIntervalMilliseconds
      self.heartbeatTimeoutMilliseconds = heartbeatTimeoutMilliseconds
    }
  }

  public struct RunBatch: Hashable, Sendable {
    /// Milliseconds left until the earliest deadline of the batch's requests; 0 for none.
    public var deadlineMilliseconds: UInt32
    public var model: String
    public var inputs: [ByteBuffer]

    public init(deadlineMilliseconds: UInt32 = 0, model: String, inputs: [ByteBuffer]) {
      self.deadlineMilliseconds = deadlineMilliseconds
      self.model = model
      self.inputs = inputs
    }
  }

  public struct Generate: Hashable, Sendable {
    public var deadlineMilliseconds: UInt32
    public var generator: String
    public var prompt: String
    /// 0 for no limit.
    public var maxTokens: UInt32
    /// Tokens the worker may send before it waits for `credit`.
    public var window: UInt32
    /// At most 4 stop sequences.
    public var stops: [String]

    public init(
      deadlineMilliseconds: UInt32 = 0,
      generator: String,
      prompt: String,
      maxTokens: UInt32 = 0,
      window: UInt32,
      stops: [String] = []
    ) {
      self.deadlineMilliseconds = deadlineMilliseconds
      self.generator = generator
      self.prompt = prompt
      self.maxTokens = maxTokens
      self.window = window
      self.stops = stops
    }
  }
}
