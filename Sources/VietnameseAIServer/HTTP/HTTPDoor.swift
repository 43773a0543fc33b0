import FoundationEssentials
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import VietnameseAI

/// The HTTP front door: a thin layer that decodes HTTP requests, calls the serving core, and
/// encodes what comes back, for the tools people already use (curl, the OpenAI SDK,
/// tritonclient, Prometheus).
///
/// Runs on Hummingbird, on the binary door's event loops, inside ``RPCServer/run()``. Each API
/// family lives in a file of its own (``OpenAIEndpoints``, ``InferenceEndpoints``); this type
/// holds what they share: who the client is, the request's deadline, the body, the answers.
final class HTTPDoor: Sendable {
  let core: ServingCore
  let settings: RPCServer.Configuration.HTTP
  let host: String
  let connections: HTTPConnections
  let requestMetrics: HTTPRequestMetrics
  let logger: Logger
  /// The event loops' lanes in the batchers, as the binary door's connections use them.
  let lanes: BatchLanes
  private let binaryConnections: @Sendable () -> Int

  init(
    core: ServingCore,
    settings: RPCServer.Configuration.HTTP,
    host: String,
    maxConnections: Int,
    lanes: BatchLanes,
    binaryConnections: @escaping @Sendable () -> Int,
    logger: Logger
  ) {
    self.core = core
    self.lanes = lanes
    self.binaryConnections = binaryConnections
    self.settings = settings
    self.host = settings.host ?? host
    self.connections = HTTPConnections(limit: maxConnections)
    self.requestMetrics = HTTPRequestMetrics(registry: core.metrics.registry)
    self.logger = logger
  }

  /// The Hummingbird application of the door, on `group`; `onRunning` receives the listening
  /// channel.
  func makeApplication(
    group: any EventLoopGroup,
    onRunning: @escaping @Sendable (any Channel) async -> Void
  ) -> some ApplicationProtocol {
    let router = Router(context: DoorContext.self)
    router.add(middleware: requestMetrics)
    if core.configuration.batchesRunOnEventLoops { router.add(middleware: LoopAffinity(group: group)) }
    router.get("/health") { _, _ in
      Response(status: self.core.isDraining ? .serviceUnavailable : .ok)
    }
    router.get("/metrics") { _, _ in
      let text = self.core.metrics.emit(
        binaryConnections: self.binaryConnections(),
        httpConnections: self.connections.count
      )
      return Response(
        status: .ok,
        headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
        body: ResponseBody(byteBuffer: ByteBuffer(bytes: text))
      )
    }
    OpenAIEndpoints(door: self).register(on: router)
    InferenceEndpoints(door: self).register(on: router)
    let connections = self.connections
    return Application(
      router: router,
      server: .http1(
        configuration: HTTP1Channel.Configuration(
          additionalChannelHandlers: [HTTPConnectionGate(connections: connections)],
          idleTimeout: TimeAmount(settings.headerTimeout)
        )
      ),
      configuration: ApplicationConfiguration(
        address: .hostname(self.host, port: settings.port),
        serverName: nil,
        backlog: 1024,
        reuseAddress: true
      ),
      onServerRunning: onRunning,
      eventLoopGroupProvider: .shared(group),
      logger: logger
    )
  }

  // MARK: What every endpoint needs

  /// Predicts through the core; the work is withdrawn if the client leaves meanwhile.
  func predict(
    model: String,
    inputs: [ByteBuffer],
    deadline: Duration?,
    client: String,
    context: DoorContext
  ) async throws(ServingError) -> [ByteBuffer] {
    let work = CancellableWork()
    let presence = connections.presence(of: context.channel)
    presence?.watch(work)
    defer { presence?.unwatch() }
    return try await core.predict(
      model: model,
      inputs: inputs,
      deadline: deadline,
      client: client,
      lane: lanes.lane(for: context.channel.eventLoop),
      work: work
    )
  }

  /// The client a request comes from: its bearer token's client id when tokens are
  /// configured, else its `X-Client-ID`, else its address.
  func client(of request: Request, context: DoorContext) -> Result<String, ServingError> {
    var token = ""
    if let authorization = request.headers[.authorization] {
      let parts = authorization.split(separator: " ", maxSplits: 1)
      if parts.count == 2, parts[0].lowercased() == "bearer" {
        token = Self.trimmed(parts[1])
      }
    }
    let claimed = request.headers[Self.clientIDHeader] ?? ""
    return core.identities.identify(
      token: token,
      claimedID: claimed,
      peerAddress: context.remoteAddress?.ipAddress
    )
  }

  static let clientIDHeader = HTTPField.Name("X-Client-ID")!
  static let timeoutHeader = HTTPField.Name("X-Request-Timeout")!

  /// The request's deadline: `X-Request-Timeout` in seconds, else `bodySeconds` (a field of
  /// the body); `nil` for none.
  func deadline(of request: Request, bodySeconds: Double?) -> Result<Duration?, ServingError> {
    var seconds = bodySeconds
    var source = "the timeout field"
    if let header = request.headers[Self.timeoutHeader] {
      guard let value = Double(Self.trimmed(header[...])) else {
        return .failure(ServingError(.invalidArgument, "X-Request-Timeout must be a number of seconds"))
      }
      seconds = value
      source = "X-Request-Timeout"
    }
    guard let seconds else { return .success(nil) }
    guard seconds.isFinite, seconds > 0, seconds <= 86_400 else {
      return .failure(ServingError(.invalidArgument, "\(source) must be a number of seconds in (0, 86400]"))
    }
    return .success(.nanoseconds(Int64(seconds * 1e9)))
  }

  /// The request's body, whole, up to the size limit.
  func body(of request: inout Request) async -> Result<ByteBuffer, ServingError> {
    do {
      return .success(try await request.collectBody(upTo: settings.maxBodySize))
    } catch is NIOTooManyBytesError {
      return .failure(
        ServingError(
          .resourceExhausted,
          "the request body is larger than the \(settings.maxBodySize) bytes allowed"
        )
      )
    } catch {
      return .failure(ServingError(.invalidArgument, "the request body could not be read"))
    }
  }

  /// `bytes` decoded as `T`, or an error that says where the JSON is wrong.
  static func decode<T: Decodable>(_ type: T.Type, from bytes: ByteBuffer) -> Result<T, ServingError> {
    do {
      return .success(try JSONDecoder().decode(T.self, from: Data(bytes.readableBytesView)))
    } catch let error as DecodingError {
      return .failure(ServingError(.invalidArgument, Self.describe(error)))
    } catch {
      return .failure(ServingError(.invalidArgument, "the body is not valid JSON"))
    }
  }

  private static func describe(_ error: DecodingError) -> String {
    func path(_ keys: [any CodingKey]) -> String {
      keys.isEmpty
        ? "the body" : keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
    switch error {
    case .dataCorrupted(let context):
      return context.codingPath.isEmpty
        ? "the body is not valid JSON" : "\(path(context.codingPath)) is invalid"
    case .keyNotFound(let key, let context):
      return "\(path(context.codingPath + [key])) is required"
    case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
      return "\(path(context.codingPath)) must be \(Self.typeName(type))"
    @unknown default:
      return "the body does not match the API"
    }
  }

  private static func typeName(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: "a string"
    case is Bool.Type: "a boolean"
    case is Int.Type, is Double.Type: "a number"
    case is [Any].Type: "an array"
    default: "of another type"
    }
  }

  /// A JSON response.
  static func json(_ status: HTTPResponse.Status, _ text: String, headers: HTTPFields = [:]) -> Response {
    var fields = headers
    fields[.contentType] = "application/json"
    return Response(status: status, headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
  }

  /// `text` without the spaces and tabs around it.
  static func trimmed(_ text: Substring) -> String {
    let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
    return String(text.drop(while: blank).reversed().drop(while: blank).reversed())
  }

  /// The rate limit in force, for the headers of a 429.
  var ratePolicy: (limit: Int, window: Duration) {
    (core.limiter.goiY, core.limiter.cuaSo)
  }
}

extension HTTPDoor {
  /// The headers of every SSE response: no caching, no buffering by a proxy; and the end of
  /// the connection with the response (see ``watchedHeaders``).
  static let eventStreamHeaders: HTTPFields = [
    .contentType: "text/event-stream",
    .cacheControl: "no-cache",
    HTTPField.Name("X-Accel-Buffering")!: "no",
    .connection: "close",
  ]

  /// The headers of a response whose work watched for the client leaving: Hummingbird closes
  /// such a connection after the response (the watch consumed its inbound stream), so the
  /// response says so, and the client opens a new one rather than reuse a closed one.
  static let watchedHeaders: HTTPFields = [.connection: "close"]
}
