import ArgumentParser
import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import UnixSignals
import VietnameseAI
import VietnameseAIServer

/// `rpc-server`: serves the built-in models over the binary protocol and over HTTP.
///
/// Times are in seconds on the command line. Once it listens it prints `listening on
/// HOST:PORT` (the binary protocol), then `http listening on HOST:PORT`, to standard output
/// (scripts wait for them); logs go to standard error. SIGINT and SIGTERM drain both doors:
/// `GOAWAY` to every binary client, no new HTTP requests, requests in flight finish, then it
/// exits 0.
@main
struct RPCServerCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "rpc-server",
    abstract: "Serve ML models over the Vietnamese AI binary RPC protocol.",
    discussion: """
      Built-in models: "echo" (returns its input), "sim" (a simulated accelerator: a batch costs \
      --sim-batch-cost plus --sim-item-cost per input; answers upper-cased text), "embed" (a \
      hashed byte-trigram embedding of 64 floats, for the embedding endpoints). Built-in \
      generators: "essay" (default: a short Vietnamese essay on the prompt, one syllable per \
      token) and "syllables" (the prompt, one syllable per token).
      """
  )

  @Option(help: "Address to listen on.")
  var host = "127.0.0.1"

  @Option(help: "Port to listen on; 0 picks a free one (see the 'listening on' line).")
  var port = 7070

  @Option(help: "Address of the HTTP door (default: --host).")
  var httpHost: String?

  @Option(help: "Port of the HTTP door; 0 picks a free one (see the 'http listening on' line).")
  var httpPort = 8080

  @Flag(help: "Serve the binary protocol alone, without the HTTP door.")
  var noHttp = false

  @Option(help: "Largest HTTP request body accepted, in bytes; a larger one is answered 413.")
  var maxBodySize = 4 * 1024 * 1024

  @Option(
    help:
      "Seconds an HTTP connection has to send a complete request head (new, idle or slow); then it is closed."
  )
  var httpHeaderTimeout = 30.0

  @Option(help: "Seconds between ': keep-alive' comments of an SSE response waiting for its first token.")
  var sseKeepalive = 15.0

  @Option(help: "kichThuocBatch: the largest batch a built-in model runs.")
  var batchSize = 32

  @Option(help: "timeoutBatch: seconds to gather a batch; 0 runs whatever is queued at once.")
  var batchTimeout = 0.1

  @Option(help: "soWorker: batches that may run at once, per model; for a --worker model, its processes.")
  var workers = 1

  @Option(
    name: .customLong("worker"),
    help: ArgumentHelp(
      "NAME=COMMAND: serve model or generator NAME from COMMAND, a worker process (repeatable).",
      discussion:
        "COMMAND runs under /bin/sh with VAI_WORKER_ADDRESS, VAI_WORKER_TOKEN and VAI_WORKER_MODEL set, and speaks the worker protocol (Protocol/PROTOCOL.md §11), as tools/python/vietnamese_ai_worker does."
    )
  )
  var workerCommands: [String] = []

  @Option(help: "Seconds to wait for each --worker model's first process before serving without it.")
  var workerStartTimeout = 60.0

  @Option(
    help: ArgumentHelp(
      "HOST:PORT where workers started elsewhere connect (attached workers); PORT 0 picks a free port.",
      discussion:
        "They present a token of --worker-tokens and may serve the --attach-model, --attach-generator and --worker names."
    )
  )
  var workerListen: String?

  @Option(
    help: "A file of worker tokens, one per line ('#' starts a comment), that attached workers present."
  )
  var workerTokens: String?

  @Option(help: "NAME: a model served by attached workers (repeatable).")
  var attachModel: [String] = []

  @Option(help: "NAME: a generator served by attached workers (repeatable).")
  var attachGenerator: [String] = []

  @Option(help: "toiDaCho: requests that may wait per model; more are refused QUEUE_FULL.")
  var maxQueue = 1000

  @Option(help: "Seconds a batch of the 'sim' model costs, whatever its size.")
  var simBatchCost = 0.005

  @Option(help: "Seconds each input adds to a batch of the 'sim' model.")
  var simItemCost = 0.000_05

  @Option(help: "tocDoToken: least seconds between two tokens of a stream.")
  var tokenInterval = 0.02

  @Option(help: "toiDaClient: streams at once over the server.")
  var maxStreams = 100

  @Option(help: "Longest a stream may run, in seconds; 0 for no limit.")
  var streamTimeout = 60.0

  @Option(help: "toiDaMoiClient: streams at once per client id (default: no limit of its own).")
  var maxStreamsPerClient: Int?

  @Option(help: "goiY: requests each client may make per window.")
  var rateLimit = 100

  @Option(help: "cuaSo: the rate limit's window, in seconds.")
  var rateWindow = 60.0

  @Option(help: "kichThuocBurst: the token bucket's capacity (default: --rate-limit).")
  var rateBurst: Int?

  @Option(help: "cheDo: token_bucket or sliding_window.")
  var rateMode = "token_bucket"

  @Option(
    help: """
      Share each client's rate limit with every server naming this Redis \
      (redis://HOST[:PORT][/DB]); GCRA in Redis, whatever --rate-mode says.
      """
  )
  var redisUrl: String?

  @Option(
    help: """
      Units of a client's limit a server leases from Redis at a time and spends locally; \
      the servers together admit at most the limit plus one lease each over any window.
      """
  )
  var redisLease = 10

  @Option(help: "While Redis cannot be reached: local (each server decides alone) or refuse (503).")
  var redisPolicy = "local"

  @Option(
    help: """
      Tokens each client's streams may use per --token-window: a stream is charged its \
      prompt's words when it opens and its tokens as produced; over it, new streams are \
      refused (429). Shared through --redis-url too. Default: no token limit.
      """
  )
  var tokenLimit: Int?

  @Option(help: "The token limit's window, in seconds.")
  var tokenWindow = 60.0

  @Option(help: "Largest frame payload accepted, in bytes.")
  var maxFrameSize = 4 * 1024 * 1024

  @Option(help: "Smallest payload compressed once zlib is negotiated, in bytes.")
  var compressionThreshold = 1024

  @Flag(help: "Refuse to negotiate zlib compression.")
  var noCompression = false

  @Option(help: "Connections at once.")
  var maxConnections = 10_000

  @Option(help: "Requests in flight per connection.")
  var maxConcurrentRequests = 1024

  @Option(help: "Seconds a new connection has to send HELLO.")
  var handshakeTimeout = 10.0

  @Option(help: "Seconds a shutdown waits for requests in flight.")
  var drainTimeout = 30.0

  @Option(
    help: "Seconds a connection may stay idle (no frame, nothing in flight) before it is closed; 0 for never."
  )
  var idleTimeout = 300.0

  @Option(
    help: ArgumentHelp(
      "A file of auth tokens: one 'TOKEN CLIENT_ID' per line, '#' for comments.",
      discussion: "With tokens, a connection without a valid one is refused UNAUTHENTICATED."
    )
  )
  var authTokens: String?

  @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
  var logLevel = "info"

  @Flag(
    help: ArgumentHelp(
      "Run model and generator tasks on Swift's default thread pool, not on the event loops.",
      discussion: """
        By default the event loops also serve as Swift's global executor, so a request is \
        read, batched, computed and answered on one thread with no hand-off between threads \
        (each costs ~10 µs), and streams of plain-sequence generators are pulled on the \
        loops. A model or generator that holds the CPU for long without suspending would \
        then delay the I/O of other connections on its loop: use this flag for such models.
        """
    )
  )
  var poolExecutor = false

  func run() async throws {
    MallocTuning.keepFreedMemoryForReuse()
    if !poolExecutor {
      NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
    }
    guard let level = Logger.Level(rawValue: logLevel) else {
      throw ValidationError("unknown log level \"\(logLevel)\"")
    }
    LoggingSystem.bootstrap { label in
      var handler = StreamLogHandler.standardError(label: label)
      handler.logLevel = level
      return handler
    }
    let logger = Logger(label: "rpc-server")
    // One registry for the server's metrics and for any a program adds through swift-metrics;
    // the HTTP door serves it at /metrics.
    let metrics = PrometheusCollectorRegistry()
    MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: metrics))

    var configuration = try makeConfiguration()
    configuration.metricsRegistry = metrics
    var batching = BuiltinModels.Batching()
    batching.kichThuocBatch = batchSize
    batching.timeoutBatch = try seconds(batchTimeout, "--batch-timeout")
    batching.soWorker = workers
    batching.toiDaCho = maxQueue
    try check {
      try MayChuBatch<Int, Int>.validate(
        kichThuocBatch: batching.kichThuocBatch,
        timeoutBatch: batching.timeoutBatch,
        soWorker: batching.soWorker,
        toiDaCho: batching.toiDaCho
      )
    }
    var models = [
      BuiltinModels.echo(batching: batching),
      BuiltinModels.simulatedAccelerator(
        perBatch: try seconds(simBatchCost, "--sim-batch-cost"),
        perItem: try seconds(simItemCost, "--sim-item-cost"),
        batching: batching
      ),
      BuiltinModels.embedding(batching: batching),
    ]
    var generators = [BuiltinModels.essay, BuiltinModels.syllables]
    var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
    var workersAddress: String?
    if !workerCommands.isEmpty || workerListen != nil {
      let supervisor = try makeSupervisor(
        batching: batching,
        taken: Set(models.map(\.name) + generators.map(\.name)),
        logger: logger
      )
      let served = try await supervisor.start()
      workersAddress = supervisor.attachAddress.map(Self.describe)
      models += served.models
      generators += served.generators
      // First in the group, so that it stops last: the server drains before its workers go.
      services.append(.init(service: supervisor))
    }
    let server = RPCServer(
      configuration: configuration,
      models: models,
      generators: generators,
      logger: logger
    )
    services.append(.init(service: server))
    let serviceGroup = ServiceGroup(
      configuration: ServiceGroupConfiguration(
        services: services,
        gracefulShutdownSignals: [.sigterm, .sigint],
        logger: logger
      )
    )
    let servesHTTP = configuration.http != nil
    let workersListening = workersAddress
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await serviceGroup.run() }
      group.addTask {
        let address = try await server.listeningAddress()
        print("listening on \(address)")
        fflush(nil)
        if let workersListening {
          print("worker listening on \(workersListening)")
          fflush(nil)
        }
        if servesHTTP {
          let http = try await server.httpListeningAddress()
          print("http listening on \(http)")
          fflush(nil)
        }
      }
      try await group.waitForAll()
    }
  }

  /// The supervisor of the `--worker` models; `taken` are the names served already.
  private func makeSupervisor(batching: BuiltinModels.Batching, taken: Set<String>, logger: Logger) throws
    -> WorkerSupervisor
  {
    var names = taken
    let commands = try workerCommands.map { spec -> WorkerSupervisor.Configuration.Command in
      guard let equals = spec.firstIndex(of: "="), equals != spec.startIndex,
        !spec[spec.index(after: equals)...].trimmingCharacters(in: .whitespaces).isEmpty
      else {
        throw ValidationError("--worker takes NAME=COMMAND, not \"\(spec)\"")
      }
      let name = String(spec[..<equals])
      guard names.insert(name).inserted else {
        throw ValidationError("--worker \(name): a model or generator of that name is served already")
      }
      return .init(name: name, command: String(spec[spec.index(after: equals)...]))
    }
    var attached: [WorkerSupervisor.Configuration.Attached] = []
    for (list, kind) in [(attachModel, .model), (attachGenerator, .generator)]
      as [([String], WorkerSupervisor.Configuration.Attached.Kind)]
    {
      for name in list {
        guard !name.isEmpty else { throw ValidationError("--attach-\(kind) takes a NAME") }
        guard names.insert(name).inserted else {
          throw ValidationError(
            "--attach-\(kind) \(name): a model or generator of that name is served already"
          )
        }
        attached.append(.init(name: name, kind: kind))
      }
    }
    var configuration = WorkerSupervisor.Configuration(commands: commands, attached: attached)
    if let workerListen {
      guard !attached.isEmpty || !commands.isEmpty else {
        throw ValidationError(
          "--worker-listen serves nothing without --attach-model, --attach-generator or --worker"
        )
      }
      let (host, port) = try Self.hostAndPort(workerListen, flag: "--worker-listen")
      configuration.attachHost = host
      configuration.attachPort = port
      guard let workerTokens else {
        throw ValidationError("--worker-listen needs --worker-tokens: attached workers must present a token")
      }
      configuration.attachTokens = try Self.readWorkerTokens(from: workerTokens)
    } else if !attached.isEmpty {
      throw ValidationError("--attach-model and --attach-generator need --worker-listen")
    }
    configuration.processes = workers
    configuration.batching = batching
    configuration.startTimeout = try seconds(workerStartTimeout, "--worker-start-timeout")
    return WorkerSupervisor(configuration: configuration, logger: logger)
  }

  private func makeConfiguration() throws -> RPCServer.Configuration {
    var configuration = RPCServer.Configuration()
    configuration.host = host
    configuration.port = port
    configuration.maxFrameSize = maxFrameSize
    configuration.compressionThreshold = compressionThreshold
    configuration.allowsCompression = !noCompression
    configuration.generatorsRunOnEventLoops = !poolExecutor
    configuration.batchesRunOnEventLoops = !poolExecutor
    configuration.maxConnections = maxConnections
    configuration.maxConcurrentRequests = maxConcurrentRequests
    configuration.handshakeTimeout = try seconds(handshakeTimeout, "--handshake-timeout")
    configuration.drainTimeout = try seconds(drainTimeout, "--drain-timeout")
    configuration.idleTimeout = try seconds(idleTimeout, "--idle-timeout")
    configuration.rateLimit.goiY = rateLimit
    configuration.rateLimit.cuaSo = try seconds(rateWindow, "--rate-window")
    configuration.rateLimit.kichThuocBurst = rateBurst
    configuration.rateLimit.cheDo = try check { try BoGioiHanTocDo.CheDo(parsing: rateMode) }
    if let redisUrl {
      var shared = RPCServer.Configuration.SharedRateLimit(redisURL: redisUrl)
      shared.leaseSize = redisLease
      guard let policy = RPCServer.Configuration.SharedRateLimit.Policy(rawValue: redisPolicy) else {
        throw ValidationError("--redis-policy must be local or refuse, got \(redisPolicy)")
      }
      shared.policy = policy
      configuration.sharedRateLimit = shared
    }
    if let tokenLimit {
      configuration.tokenLimit = .init(limit: tokenLimit, window: try seconds(tokenWindow, "--token-window"))
    }
    configuration.streaming.tocDoToken = try seconds(tokenInterval, "--token-interval")
    configuration.streaming.toiDaClient = maxStreams
    configuration.streaming.timeout = try seconds(streamTimeout, "--stream-timeout")
    configuration.streaming.toiDaMoiClient = maxStreamsPerClient
    if !noHttp {
      var http = RPCServer.Configuration.HTTP()
      http.host = httpHost
      http.port = httpPort
      http.maxBodySize = maxBodySize
      http.headerTimeout = try seconds(httpHeaderTimeout, "--http-header-timeout")
      http.sseKeepAlive = try seconds(sseKeepalive, "--sse-keepalive")
      configuration.http = http
    }
    if let authTokens {
      configuration.authTokens = try Self.readTokens(from: authTokens)
    }
    try check { try configuration.validate() }
    return configuration
  }

  /// Splits `HOST:PORT` (`[V6]:PORT` for an IPv6 address).
  static func hostAndPort(_ text: String, flag: String) throws -> (String, Int) {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
      (0...65_535).contains(port), colon != text.startIndex
    else {
      throw ValidationError("\(flag) takes HOST:PORT, not \"\(text)\"")
    }
    var host = String(text[..<colon])
    if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    return (host, port)
  }

  static func describe(_ address: SocketAddress) -> String {
    let host = address.ipAddress ?? "?"
    return host.contains(":") ? "[\(host)]:\(address.port ?? 0)" : "\(host):\(address.port ?? 0)"
  }

  /// Reads one token per line. The tokens themselves never appear in a message.
  static func readWorkerTokens(from path: String) throws -> Set<String> {
    let text: String
    do {
      text = try String(contentsOfFile: path, encoding: .utf8)
    } catch {
      throw ValidationError("cannot read the worker token file \(path): \(error.localizedDescription)")
    }
    var tokens: Set<String> = []
    for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let trimmed = line.trimmingCharacters(in: .whitespaces)
      if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
      guard !trimmed.contains(where: { $0 == " " || $0 == "\t" }) else {
        throw ValidationError("\(path):\(number + 1): expected one token")
      }
      tokens.insert(trimmed)
    }
    guard !tokens.isEmpty else { throw ValidationError("the worker token file \(path) holds no tokens") }
    return tokens
  }

  /// Reads `TOKEN CLIENT_ID` lines. The tokens themselves never appear in a message.
  static func readTokens(from path: String) throws -> [String: String] {
    let text: String
    do {
      text = try String(contentsOfFile: path, encoding: .utf8)
    } catch {
      throw ValidationError("cannot read the auth token file \(path): \(error.localizedDescription)")
    }
    var tokens: [String: String] = [:]
    for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let trimmed = line.trimmingCharacters(in: .whitespaces)
      if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
      let fields = trimmed.split(whereSeparator: { $0 == " " || $0 == "\t" })
      guard fields.count == 2 else {
        throw ValidationError("\(path):\(number + 1): expected 'TOKEN CLIENT_ID'")
      }
      tokens[String(fields[0])] = String(fields[1])
    }
    guard !tokens.isEmpty else { throw ValidationError("the auth token file \(path) holds no tokens") }
    return tokens
  }

  private func seconds(_ value: Double, _ flag: String) throws -> Duration {
    guard value.isFinite, value >= 0, value < 1e9 else {
      throw ValidationError("\(flag) must be a number of seconds, 0 or more; got \(value)")
    }
    return .nanoseconds(Int64((value * 1e9).rounded()))
  }

  /// Turns a component's refusal of a value into a usage error naming it.
  private func check<T>(_ body: () throws -> T) throws -> T {
    do {
      return try body()
    } catch let error as VietnameseAIError {
      throw ValidationError(error.message)
    }
  }
}
