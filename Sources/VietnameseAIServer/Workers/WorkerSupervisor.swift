public import Logging
public import NIOCore
public import NIOPosix
public import ServiceLifecycle
@_spi(Batching) import VietnameseAI
@_spi(Locking) import VietnameseAIConcurrency
import VietnameseAIWire

/// Models and generators in other processes, in any language (`Protocol/PROTOCOL.md` §11):
/// spawns the worker processes, listens for their connections, admits their handshakes, and
/// serves each declared model as a ``ServedModel`` whose batches go to an idle worker, and
/// each generator as a ``ServedGenerator`` whose streams go to a worker with room.
///
/// ```swift
/// let workers = WorkerSupervisor(configuration: .init(commands: [.init(name: "minilm", command: "python3 tools/models/minilm.py")]), logger: logger)
/// let (models, generators) = try await workers.start()
/// let server = RPCServer(configuration: configuration, models: models, generators: generators)
/// try await ServiceGroup(services: [workers, server], ...).run()  // the server drains first
/// ```
public final class WorkerSupervisor: Service, Sendable {
  public struct Configuration: Sendable {
    /// A model and the command that serves it.
    public struct Command: Sendable {
      public var name: String
      public var command: String

      public init(name: String, command: String) {
        self.name = name
        self.command = command
      }
    }

    /// A model or generator that workers started elsewhere serve (`--attach-model`,
    /// `--attach-generator`).
    public struct Attached: Sendable {
      public enum Kind: Sendable {
        case model
        case generator
      }

      public var name: String
      public var kind: Kind

      public init(name: String, kind: Kind) {
        self.name = name
        self.kind = kind
      }
    }

    public var commands: [Command]
    /// Worker processes per command; each takes one batch at a time (the design's `so_worker`).
    public var processes = 1
    /// Where the spawned workers' listener binds; they connect there.
    public var host = "127.0.0.1"
    /// Where attached workers connect (`--worker-listen`); `nil`: none may. They may serve
    /// the ``attached`` names and the commands' names, beside the spawned processes.
    public var attachHost: String?
    public var attachPort = 0
    /// The tokens attached workers present; spawned workers get one of their own each.
    public var attachTokens: Set<String> = []
    public var attached: [Attached] = []
    /// How long ``start()`` waits for each model's first worker.
    public var startTimeout: Duration = .seconds(60)
    public var handshakeTimeout: Duration = .seconds(10)
    public var heartbeatInterval: Duration = .seconds(1)
    public var heartbeatTimeout: Duration = .seconds(10)
    /// How long a stopping worker has between `SIGTERM` and `SIGKILL`.
    public var stopGrace: Duration = .seconds(5)
    /// The largest payload either side sends on a worker connection.
    public var maxFrameSize = 64 << 20
    /// Batch size (unless the worker prefers one), batch timeout and queue of the models.
    public var batching = BuiltinModels.Batching()

    public init(commands: [Command], attached: [Attached] = []) {
      self.commands = commands
      self.attached = attached
    }
  }

  public let configuration: Configuration
  private let group: any EventLoopGroup
  private let logger: Logger
  private let state = Locked(State())

  private struct State {
    var pools: [String: WorkerPool] = [:]
    var processes: [String: WorkerProcess] = [:]  // by token
    /// The connected workers, the process each spawned one is, and the names each serves.
    var links: [ObjectIdentifier: (link: WorkerLink, process: WorkerProcess?, names: [String])] = [:]
    /// What each model's first worker declared: the signature the model keeps.
    var declarations: [String: WorkerMessage.Declaration] = [:]
    /// Whether each name is served as a model or a generator, once that is decided.
    var kinds: [String: WorkerMessage.Declaration.Kind] = [:]
    var supervision: [Task<Void, Never>] = []
    var listeners: [any Channel] = []
    var attachAddress: SocketAddress?
  }

  public init(
    configuration: Configuration,
    group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
    logger: Logger = Logger(label: "rpc-server")
  ) {
    self.configuration = configuration
    self.group = group
    self.logger = logger
  }

  /// Opens the workers' listener, starts every worker process, and waits (up to
  /// ``Configuration/startTimeout``) for each model's first worker.
  ///
  /// - Returns: The models and generators the commands' workers declared, in the commands'
  ///   order. A command whose worker has not started is served as a model of bytes in and
  ///   out, not ready until a worker connects.
  public func start() async throws -> (models: [ServedModel], generators: [ServedGenerator]) {
    let settings = WorkerChannelHandler.Settings(
      handshakeTimeout: configuration.handshakeTimeout,
      heartbeatInterval: configuration.heartbeatInterval,
      heartbeatTimeout: configuration.heartbeatTimeout,
      maxFrameSize: configuration.maxFrameSize
    )
    let listener = try await listen(host: configuration.host, port: 0, settings: settings)
    if let attachHost = configuration.attachHost {
      let attach = try await listen(host: attachHost, port: configuration.attachPort, settings: settings)
      state.withLock { state in
        state.listeners.append(attach)
        state.attachAddress = attach.localAddress
      }
    }
    let port = listener.localAddress?.port ?? 0
    let address = "\(configuration.host):\(port)"
    var processes: [WorkerProcess] = []
    state.withLock { state in
      state.listeners.append(listener)
      for attached in configuration.attached {
        state.pools[attached.name] = WorkerPool(name: attached.name)
        state.kinds[attached.name] = attached.kind == .model ? .model : .generator
      }
      for command in configuration.commands {
        state.pools[command.name] = WorkerPool(name: command.name)
        for _ in 0..<configuration.processes {
          let token = Self.makeToken()
          let process = WorkerProcess(
            model: command.name,
            command: command.command,
            token: token,
            environment: [
              "VAI_WORKER_ADDRESS": address,
              "VAI_WORKER_TOKEN": token,
              "VAI_WORKER_MODEL": command.name,
            ],
            logger: logger
          )
          state.processes[token] = process
          processes.append(process)
        }
      }
    }
    let tasks = processes.map { process in Task { await process.supervise() } }
    state.withLock { $0.supervision = tasks }

    let deadline = ContinuousClock.now + configuration.startTimeout
    while ContinuousClock.now < deadline, !allStarted() {
      try await Task.sleep(for: .milliseconds(20))
    }
    var served: (models: [ServedModel], generators: [ServedGenerator]) = ([], [])
    let names: [(String, WorkerMessage.Declaration.Kind?)] =
      configuration.commands.map { ($0.name, nil) }
      + configuration.attached.map { ($0.name, $0.kind == .model ? .model : .generator) }
    for (name, configured) in names {
      let (pool, kind) = state.withLock { state in
        // A command's name is served as what its first worker declared, a model if none has.
        let kind = configured ?? state.declarations[name]?.kind ?? .model
        state.kinds[name] = kind
        return (state.pools[name]!, kind)
      }
      if kind == .generator {
        served.generators.append(
          ServedGenerator(
            name: name,
            generator: TokenGenerator { prompt in WorkerTokens(pool: pool, prompt: prompt) }
          )
        )
      } else {
        served.models.append(makeModel(name, attached: configured != nil))
      }
    }
    return served
  }

  /// Where attached workers connect, once ``start()`` has opened it.
  public var attachAddress: SocketAddress? { state.withLock { $0.attachAddress } }

  private func listen(host: String, port: Int, settings: WorkerChannelHandler.Settings) async throws
    -> any Channel
  {
    let logger = self.logger
    return try await ServerBootstrap(group: group)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
      .childChannelInitializer { [self] channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(
            WorkerChannelHandler(
              settings: settings,
              admit: { [self] hello, channel in admit(hello, channel: channel) },
              onClose: { [self] link, hung in closed(link, hung: hung) },
              logger: logger
            )
          )
        }
      }
      .bind(host: host, port: port)
      .get()
  }

  /// Whether every command has a worker connected; attached names are ready when theirs come.
  private func allStarted() -> Bool {
    let names = configuration.commands.map(\.name)
    return state.withLock { state in names.allSatisfy { state.pools[$0]!.isReady } }
  }

  private func makeModel(_ name: String, attached: Bool) -> ServedModel {
    let (pool, declaration) = state.withLock { ($0.pools[name]!, $0.declarations[name]) }
    if declaration == nil {
      if attached {
        logger.info("waiting for attached workers", metadata: ["model": "\(name)"])
      } else {
        logger.error(
          "no worker of the model started in time; it is not ready until one connects",
          metadata: ["model": "\(name)", "waited": "\(configuration.startTimeout)"]
        )
      }
    }
    let batching = configuration.batching
    let preferred = Int(declaration?.preferredBatchSize ?? 0)
    let batcher = MayChuBatch<ByteBuffer, ByteBuffer>(
      hamDuDoan: { inputs in try await pool.run(inputs, deadline: BatchDeadline.remaining) },
      kichThuocBatch: preferred > 0 ? preferred : batching.kichThuocBatch,
      timeoutBatch: batching.timeoutBatch,
      soWorker: max(configuration.processes, 1),
      toiDaCho: batching.toiDaCho
    )
    // One batch at a time per worker connected, spawned or attached.
    pool.observeCapacity { workers in batcher.resize(soWorker: workers) }
    // Bytes in and out until a worker declares more: the model takes its first worker's.
    let signature: @Sendable () -> ServedModel.Signature = { [self] in
      state.withLock { $0.declarations[name] }.map(Self.signature)
        ?? ServedModel.Signature(input: .bytes, output: .bytes)
    }
    return .buffers(
      name: name,
      batcher: batcher,
      signature: signature,
      decode: { bytes in
        if signature().input == .text, bytes.validatedUTF8Text == nil {
          throw ServedModel.InputError("model \(name) takes UTF-8 text")
        }
        return bytes
      },
      isReady: { pool.isReady }
    )
  }

  static func signature(_ declaration: WorkerMessage.Declaration) -> ServedModel.Signature {
    let output: ServedModel.Signature.Kind =
      switch declaration.output {
      case .bytes: .bytes
      case .text: .text
      case .vector: .vector(dimensions: Int(declaration.dimensions))
      }
    return ServedModel.Signature(input: declaration.input == .text ? .text : .bytes, output: output)
  }

  // MARK: Handshakes

  /// Admits a worker's handshake (§11.1). A spawned worker's token names its process, and
  /// the process's model must be among its declarations; an attached worker's token is one of
  /// ``Configuration/attachTokens``, and it serves every name it declares, each of which the
  /// server must take from workers. A name keeps the kind and signature it was first served as.
  private func admit(_ hello: WorkerMessage.Hello, channel: any Channel) -> Result<WorkerLink, WireError> {
    func refuse(_ code: StatusCode, _ message: String) -> Result<WorkerLink, WireError> {
      logger.warning("worker refused", metadata: ["worker": "\(hello.workerName)", "reason": "\(message)"])
      return .failure(WireError(code: code, message: message, closesConnection: true))
    }
    guard hello.versions.contains(1) else {
      return refuse(.unsupportedVersion, "this server speaks worker protocol version 1")
    }
    let process = state.withLock { $0.processes[hello.authToken] }
    let served: [WorkerMessage.Declaration]
    if let process {
      guard let declaration = hello.declarations.first(where: { $0.name == process.model }) else {
        return refuse(
          .invalidArgument,
          "this worker was started for model \(process.model), which it does not declare"
        )
      }
      served = [declaration]
    } else if configuration.attachTokens.contains(hello.authToken) {
      guard !hello.declarations.isEmpty else {
        return refuse(.invalidArgument, "the worker declares nothing")
      }
      served = hello.declarations
    } else {
      return refuse(.unauthenticated, "unknown worker token")
    }
    for declaration in served
    where declaration.output == .vector && !(1...65_536).contains(declaration.dimensions) {
      return refuse(.invalidArgument, "\(declaration.name): a vector of \(declaration.dimensions) dimensions")
    }
    let link = WorkerLink(workerName: hello.workerName, declarations: hello.declarations, channel: channel)
    let names = served.map(\.name)
    let admitted = state.withLock { state -> Result<[WorkerPool], WireError> in
      for declaration in served {
        let name = declaration.name
        guard state.pools[name] != nil else {
          return .failure(
            WireError(
              code: .invalidArgument,
              message:
                "this server takes no model or generator \(name) from workers (rpc-server --attach-model or --attach-generator)",
              closesConnection: true
            )
          )
        }
        if let kind = state.kinds[name], kind != declaration.kind {
          return .failure(
            WireError(
              code: .invalidArgument,
              message: "\(name) is served as a \(kind), not a \(declaration.kind)",
              closesConnection: true
            )
          )
        }
        if let kept = state.declarations[name], Self.signature(kept) != Self.signature(declaration) {
          return .failure(
            WireError(
              code: .invalidArgument,
              message:
                "\(name) is served as a \(kept.kind) of \(Self.signature(kept)); this worker declares a \(declaration.kind) of \(Self.signature(declaration))",
              closesConnection: true
            )
          )
        }
      }
      for declaration in served where state.declarations[declaration.name] == nil {
        state.declarations[declaration.name] = declaration
      }
      state.links[ObjectIdentifier(link)] = (link, process, names)
      return .success(names.map { state.pools[$0]! })
    }
    switch admitted {
    case .failure(let refusal):
      return refuse(refusal.code, refusal.message)
    case .success(let pools):
      for pool in pools {
        pool.add(link)
        logger.info(
          "worker ready",
          metadata: [
            "model": "\(pool.name)", "worker": "\(hello.workerName)", "workers": "\(pool.workerCount)",
            "attached": "\(process == nil)",
          ]
        )
      }
      return .success(link)
    }
  }

  private func closed(_ link: WorkerLink, hung: Bool) {
    let (process, pools) = state.withLock { state -> (WorkerProcess?, [WorkerPool]) in
      guard let entry = state.links.removeValue(forKey: ObjectIdentifier(link)) else { return (nil, []) }
      return (entry.process, entry.names.compactMap { state.pools[$0] })
    }
    for pool in pools { pool.remove(link) }
    if hung { process?.kill() }
  }

  private static func makeToken() -> String {
    var generator = SystemRandomNumberGenerator()
    return (0..<4).map { _ in String(generator.next() as UInt32, radix: 16) }.joined(separator: "-")
  }

  // MARK: Service

  /// Waits for the graceful shutdown (the server in the same group drains first), then stops
  /// the workers (see ``stop()``).
  public func run() async throws {
    // Returns at the graceful shutdown, or throws when the group is cancelled: stop either way.
    try? await gracefulShutdown()
    await stop()
  }

  /// Stops every worker process and closes the listeners.
  ///
  /// Each connected worker is first sent `SHUTDOWN`, and given the grace period to finish its
  /// work and close; what is still running then gets the signals.
  public func stop() async {
    let (processes, tasks, listeners, links) = state.withLock { state in
      (Array(state.processes.values), state.supervision, state.listeners, state.links.values.map(\.link))
    }
    for process in processes { process.stopRestarting() }
    let grace = configuration.stopGrace
    for link in links { link.shutDown(grace: grace) }
    let deadline = ContinuousClock.now + grace
    // A worker that closed its connection may still be exiting (its own exit handlers run
    // then): the signals wait for it too.
    while ContinuousClock.now < deadline,
      state.withLock({ !$0.links.isEmpty }) || processes.contains(where: \.isRunning)
    {
      try? await Task.sleep(for: .milliseconds(10))
    }
    await withTaskGroup(of: Void.self) { group in
      for process in processes {
        group.addTask { await process.stop(grace: self.configuration.stopGrace) }
      }
    }
    for task in tasks { task.cancel() }
    for listener in listeners { try? await listener.close() }
  }
}
