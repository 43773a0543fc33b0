import Foundation
import NIOCore
import Synchronization
import VietnameseAI
import VietnameseAIWire

/// What every connection of a server shares: the models, the generators, the one stream
/// server, the one rate limiter, and the rules that turn their outcomes into protocol answers.
///
/// It knows nothing of sockets: a connection handler asks it to admit, start and cancel work,
/// and receives the outcome in a completion.
final class ServerCore: Sendable {
  let configuration: RPCServer.Configuration
  let models: [String: ServedModel]
  /// The model whose statistics fill the `batch` member of `STATS`: the first one served.
  let primaryModel: ServedModel?
  private let modelOrder: [ServedModel]
  let generators: [String: TokenGenerator]
  let defaultGenerator: ServedGenerator?
  let streams: MayChuStream
  let limiter: BoGioiHanTocDo
  private let tokens: [(token: [UInt8], clientID: String)]
  /// Connection handlers alive, closed or not: a handler that outlives its connection is a
  /// leak, which tests look for here.
  let liveHandlers = Atomic<Int>(0)

  init(configuration: RPCServer.Configuration, models: [ServedModel], generators: [ServedGenerator]) {
    self.configuration = configuration
    self.modelOrder = models
    self.models = Dictionary(models.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    self.primaryModel = models.first
    self.generators = Dictionary(
      generators.map { ($0.name, $0.generator) },
      uniquingKeysWith: { first, _ in first }
    )
    self.defaultGenerator = generators.first
    let streaming = configuration.streaming
    self.streams = MayChuStream(
      generator: generators.first?.generator ?? TokenGenerator { (_: String) in [String]() },
      tocDoToken: streaming.tocDoToken,
      toiDaClient: streaming.toiDaClient,
      timeout: streaming.timeout,
      toiDaMoiClient: streaming.toiDaMoiClient
    )
    let rate = configuration.rateLimit
    self.limiter = BoGioiHanTocDo(
      goiY: rate.goiY,
      cuaSo: rate.cuaSo,
      kichThuocBurst: rate.kichThuocBurst,
      cheDo: rate.cheDo
    )
    self.tokens = configuration.authTokens.map { (Array($0.key.utf8), $0.value) }
  }

  // MARK: Lifecycle

  func start() throws(VietnameseAIError) {
    for model in modelOrder { try model.start() }
  }

  /// Stops every batcher; each answers what it still has queued first.
  func stop() async {
    for model in modelOrder { await model.stop() }
  }

  // MARK: Admission

  /// Whether authentication is on.
  var requiresToken: Bool { !tokens.isEmpty }

  /// The client id `token` stands for, or `nil`.
  ///
  /// Every configured token is compared in full, byte by byte without an early exit, so the
  /// time taken says nothing about how much of a token was right or which one matched.
  func clientID(forToken token: String) -> String? {
    let offered = Array(token.utf8)
    var found: String?
    for entry in tokens {
      if Self.constantTimeEquals(entry.token, offered) { found = entry.clientID }
    }
    return found
  }

  static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
    difference |= UInt8(truncatingIfNeeded: (a.count ^ b.count) >> 8)
    let length = max(a.count, b.count)
    for index in 0..<length {
      let x = index < a.count ? a[index] : 0
      let y = index < b.count ? b[index] : 0
      difference |= x ^ y
    }
    return difference == 0 && a.count == b.count
  }

  /// Takes `count` requests from `clientID`'s allowance, in order: the first `allowed` may go
  /// ahead; the others are answered with `refusal`, which says when to retry.
  func checkRateLimit(_ clientID: String, requests count: Int = 1) -> (
    allowed: Int, refusal: WireMessage.ErrorInfo?
  ) {
    let decision = limiter.choPhep(clientID, soYeuCau: count)
    if decision.allowed == count { return (count, nil) }
    let refusal = WireMessage.ErrorInfo(
      code: .rateLimited,
      retryAfterMilliseconds: WireProtocol.milliseconds(roundingUp: decision.retryAfter ?? .zero),
      message: "rate limit exceeded for client \(clientID): \(limiter.goiY) requests per \(limiter.cuaSo)"
    )
    return (decision.allowed, refusal)
  }

  // MARK: Outcomes

  /// The `ERROR` that answers a request which failed with `error`.
  static func errorInfo(for error: any Error) -> WireMessage.ErrorInfo {
    switch error {
    case let error as VietnameseAIError:
      let code: StatusCode
      switch error.code {
      case .queueFull: code = .queueFull
      case .deadlineExceeded, .streamTimeout: code = .deadlineExceeded
      case .notRunning: code = .unavailable
      case .invalidArgument: code = .invalidArgument
      case .tooManyClients: code = .tooManyStreams
      default: code = .internal
      }
      var message = error.message
      if let cause = error.cause { message += ": \(cause)" }
      return WireMessage.ErrorInfo(code: code, message: message)
    case is CancellationError:
      return WireMessage.ErrorInfo(code: .cancelled, message: "cancelled by the client")
    case let error as ServedModel.InputError:
      return WireMessage.ErrorInfo(code: .invalidArgument, message: error.description)
    default:
      return WireMessage.ErrorInfo(code: .internal, message: "internal error: \(error)")
    }
  }

  // MARK: Statistics

  /// The `STATS` document: the design's three groups plus every model's own figures.
  func statisticsJSON() -> String {
    let document = StatisticsDocument(
      batch: primaryModel?.statistics(),
      batchModel: primaryModel?.name,
      stream: streams.layThongKe(),
      rateLimit: limiter.layThongKe(),
      models: Dictionary(modelOrder.map { ($0.name, $0.statistics()) }, uniquingKeysWith: { a, _ in a })
    )
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    // Encoding plain numbers and strings cannot fail.
    let data = (try? encoder.encode(document)) ?? Data("{}".utf8)
    return String(decoding: data, as: UTF8.self)
  }

  private struct StatisticsDocument: Encodable {
    var batch: ThongKeBatch?
    var batchModel: String?
    var stream: ThongKeStream
    var rateLimit: ThongKeGioiHan
    var models: [String: ThongKeBatch]

    enum CodingKeys: String, CodingKey {
      case batch
      case batchModel = "batch_model"
      case stream
      case rateLimit = "rate_limit"
      case models
    }
  }
}
