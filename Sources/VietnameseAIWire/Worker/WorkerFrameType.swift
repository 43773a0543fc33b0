/// The type byte of a worker protocol frame (`Protocol/PROTOCOL.md` §11).
///
/// Types a worker sends are `0x80`–`0x9F`, types a server sends a worker `0xA0`–`0xBF`, so that
/// neither is ever read as a client frame; `PING`, `PONG` and `ERROR` keep their values and
/// travel both ways.
public enum WorkerFrameType: UInt8, Sendable, CaseIterable {
  case ping = 0x07
  case pong = 0x08
  case error = 0x47
  case workerHello = 0x80
  case batchDone = 0x81
  case tokens = 0x82
  case generateDone = 0x83
  case workerWelcome = 0xA0
  case runBatch = 0xA1
  case generate = 0xA2
  case cancelWork = 0xA3
  case credit = 0xA4
  case shutdown = 0xA5

  /// Whether a worker may send this type.
  public var sentByWorker: Bool { rawValue & 0xE0 == 0x80 || rawValue < 0x80 }
  /// Whether a server may send this type to a worker.
  public var sentByServer: Bool { rawValue & 0xE0 == 0xA0 || rawValue < 0x80 }

  /// Whether frames of this type belong to the connection (request id 0); `ERROR` may do either.
  var isConnectionFrame: Bool {
    switch self {
    case .ping, .pong, .workerHello, .workerWelcome, .shutdown: true
    case .error, .batchDone, .tokens, .generateDone, .runBatch, .generate, .cancelWork, .credit: false
    }
  }

  /// The specification's name, e.g. `RUN_BATCH`.
  public var name: String {
    switch self {
    case .ping: "PING"
    case .pong: "PONG"
    case .error: "ERROR"
    case .workerHello: "WORKER_HELLO"
    case .batchDone: "BATCH_DONE"
    case .tokens: "TOKENS"
    case .generateDone: "GENERATE_DONE"
    case .workerWelcome: "WORKER_WELCOME"
    case .runBatch: "RUN_BATCH"
    case .generate: "GENERATE"
    case .cancelWork: "CANCEL_WORK"
    case .credit: "CREDIT"
    case .shutdown: "SHUTDOWN"
    }
  }
}
