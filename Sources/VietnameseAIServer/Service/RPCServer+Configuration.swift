public import NIOCore
public import Prometheus
public import VietnameseAI
import VietnameseAIRedis
import VietnameseAIWire

extension RPCServer {
  /// Everything that shapes a server except its models. Defaults are the design's (rate
  /// limit, streaming) and the protocol's (frame size, compression threshold).
  public struct Configuration: Sendable {
    /// The address to listen on.
    public var host = "127.0.0.1"
    /// The port; `0` picks a free one (see ``RPCServer/listeningAddress()``).
    public var port = 7070
    /// The largest frame payload accepted, as sent and after decompression.
    public var maxFrameSize = WireProtocol.defaultMaxFrameSize
    /// Whether clients may negotiate zlib.
    public var allowsCompression = true
    /// The smallest payload the server compresses, once zlib is negotiated.
    public var compressionThreshold = WireProtocol.defaultCompressionThreshold
    /// Connections at once; one more is answered `RESOURCE_EXHAUSTED` and closed.
    public var maxConnections = 10_000
    /// Requests in flight on one connection; one more is answered `RESOURCE_EXHAUSTED`.
    public var maxConcurrentRequests = 1024
    /// How long a new connection may take to send its `HELLO`.
    public var handshakeTimeout: Duration = .seconds(10)
    /// How long a connection may stay idle (no frame received and no request in flight)
    /// before the server sends `GOAWAY` and closes it; zero keeps idle connections forever.
    public var idleTimeout: Duration = .seconds(300)
    /// How long a graceful shutdown waits for requests in flight before it answers the rest
    /// `UNAVAILABLE` and closes.
    public var drainTimeout: Duration = .seconds(30)
    /// Auth tokens and the client id each one stands for. Empty: no authentication, and a
    /// client is known by the id it claims (or by its address if it claims none).
    public var authTokens: [String: String] = [:]
    /// The per-client rate limit every request passes first.
    public var rateLimit = RateLimit()
    /// Shares ``rateLimit`` (and ``tokenLimit``) through Redis; `nil`: this server's own.
    public var sharedRateLimit: SharedRateLimit?
    /// Tokens per window per client, for streams; `nil`: none.
    public var tokenLimit: TokenLimit?
    /// Streaming: pacing, caps and timeout of the server's ``MayChuStream``.
    public var streaming = Streaming()
    /// The event loops to serve on; `nil` uses NIO's shared group (one loop per core).
    public var eventLoopGroup: (any EventLoopGroup)?
    /// Whether generators that return a plain sequence are pulled on their connection's
    /// event loop, in bursts written straight into the connection's buffer, rather than run
    /// as a task per stream. On by default: a token then costs no task switch, no lock and no
    /// hand-off between threads, and the loop polls for I/O between two bursts, so an
    /// endless stream never keeps a connection from being read. Turn it off for generators
    /// whose tokens take long to compute (a model behind a plain `Sequence`), which would
    /// otherwise hold up every connection of their loop. Asynchronous generators always run
    /// as tasks.
    public var generatorsRunOnEventLoops = true

    /// Whether a model's batches run on an event loop: the loop of the connections whose
    /// requests the batch was formed for (each loop queues in a lane of its own). On by
    /// default: a batch's answers then reach their connections without a hop between threads.
    /// Turn it off for models whose batch function holds the CPU for long without suspending,
    /// which would otherwise hold up the connections of its loop.
    public var batchesRunOnEventLoops = true

    /// The HTTP door; `nil` (the default of the library) serves the binary protocol alone.
    public var http: HTTP?

    /// Where the server registers its metrics, which the HTTP door serves at `/metrics`.
    /// `rpc-server` passes the registry it also bootstrapped as the swift-metrics backend, so
    /// an embedding program's own metrics appear beside the server's; `nil` gives the server a
    /// registry of its own.
    public var metricsRegistry: PrometheusCollectorRegistry?

    public init() {}

    /// The HTTP door: OpenAI-compatible endpoints, the seed's SSE, the Open Inference
    /// Protocol, `/metrics` and `/health`.
    public struct HTTP: Sendable {
      /// The address to listen on; `nil` for the binary protocol's.
      public var host: String?
      /// The port; `0` picks a free one (see ``RPCServer/httpListeningAddress()``).
      public var port = 8080
      /// The largest request body accepted; a larger one is answered 413.
      public var maxBodySize = 4 * 1024 * 1024
      /// How long a connection may take to send a complete request head, whether it is new,
      /// idle between keep-alive requests, or sending headers that never end. It is then
      /// closed.
      public var headerTimeout: Duration = .seconds(30)
      /// How often an SSE response sends a `: keep-alive` comment while it waits for its first
      /// token, so that proxies do not cut a quiet stream.
      public var sseKeepAlive: Duration = .seconds(15)

      public init() {}
    }

    /// The parameters of ``BoGioiHanTocDo``, with the design's defaults.
    public struct RateLimit: Sendable {
      /// Requests per window (default 100).
      public var goiY = 100
      /// The window (default 60 s).
      public var cuaSo: Duration = .seconds(60)
      /// The bucket's capacity (default `goiY`).
      public var kichThuocBurst: Int?
      public var cheDo = BoGioiHanTocDo.CheDo.tokenBucket

      public init() {}
    }

    /// A rate limit shared by every server that names the same Redis.
    public struct SharedRateLimit: Sendable {
      /// What a server does while Redis cannot be reached.
      public enum Policy: String, Sendable, CaseIterable {
        /// Each server decides with its own limiter (each then admits up to the whole limit).
        case local
        /// Requests are refused (`UNAVAILABLE`, HTTP 503).
        case refuse
      }

      /// `redis://HOST[:PORT][/DB]`.
      public var redisURL: String
      /// Units a server leases at a time and spends locally. Over any window, the servers
      /// together admit at most the limit plus one lease each.
      public var leaseSize = 10
      public var policy = Policy.local
      /// Prefixes the clients' keys in Redis.
      public var keyPrefix = "vai:rate:"
      /// Prefixes the clients' token-limit keys in Redis.
      public var tokenKeyPrefix = "vai:tokens:"

      public init(redisURL: String) {
        self.redisURL = redisURL
      }
    }

    /// Tokens each client's streams may use per window: a stream is charged its prompt's tokens
    /// (its words) when it opens and its tokens as they are produced; a client over the limit
    /// may not open a stream until it has come back.
    public struct TokenLimit: Sendable {
      public var limit: Int
      public var window: Duration

      public init(limit: Int, window: Duration = .seconds(60)) {
        self.limit = limit
        self.window = window
      }
    }

    /// The parameters of ``MayChuStream``, with the design's defaults.
    public struct Streaming: Sendable {
      /// The least time between two tokens of a stream (default 0.02 s).
      public var tocDoToken: Duration = .milliseconds(20)
      /// Streams at once over the whole server (default 100).
      public var toiDaClient = 100
      /// The longest a stream may run (default 60 s).
      public var timeout: Duration = .seconds(60)
      /// Streams at once per client id (default: no limit of its own).
      public var toiDaMoiClient: Int?

      public init() {}
    }

    /// Checks every value, so that a front end can report a bad flag before serving.
    ///
    /// - Throws: ``VietnameseAIError/Code/invalidArgument`` naming the first bad value.
    public func validate() throws(VietnameseAIError) {
      func bad(_ message: String) -> VietnameseAIError {
        VietnameseAIError(code: .invalidArgument, message: message)
      }
      guard (0...65_535).contains(port) else { throw bad("port must be in 0...65535, got \(port)") }
      guard maxFrameSize >= 1024 && maxFrameSize <= Int(UInt32.max) else {
        throw bad("max frame size must be in 1 KiB...4 GiB, got \(maxFrameSize)")
      }
      guard compressionThreshold >= 0 else {
        throw bad("compression threshold must not be negative, got \(compressionThreshold)")
      }
      guard maxConnections >= 1 else {
        throw bad("max connections must be at least 1, got \(maxConnections)")
      }
      guard maxConcurrentRequests >= 1 && maxConcurrentRequests <= Int(UInt32.max) else {
        throw bad("max concurrent requests must be at least 1, got \(maxConcurrentRequests)")
      }
      guard handshakeTimeout > .zero else { throw bad("handshake timeout must be positive") }
      guard idleTimeout >= .zero else { throw bad("idle timeout must not be negative (0 means none)") }
      guard drainTimeout >= .zero else { throw bad("drain timeout must not be negative") }
      if let http {
        guard (0...65_535).contains(http.port) else {
          throw bad("HTTP port must be in 0...65535, got \(http.port)")
        }
        guard http.maxBodySize >= 1024 else {
          throw bad("max HTTP body size must be at least 1 KiB, got \(http.maxBodySize)")
        }
        guard http.headerTimeout > .zero else { throw bad("HTTP header timeout must be positive") }
        guard http.sseKeepAlive > .zero else { throw bad("SSE keep-alive interval must be positive") }
      }
      for (token, clientID) in authTokens where token.isEmpty || clientID.isEmpty {
        throw bad("auth tokens and their client ids must not be empty")
      }
      try BoGioiHanTocDo.validate(
        goiY: rateLimit.goiY,
        cuaSo: rateLimit.cuaSo,
        kichThuocBurst: rateLimit.kichThuocBurst
      )
      if let shared = sharedRateLimit {
        do {
          _ = try RedisClient.Configuration(url: shared.redisURL)
        } catch {
          throw bad(error.message)
        }
        guard shared.leaseSize >= 1 else {
          throw bad("lease size must be at least 1, got \(shared.leaseSize)")
        }
      }
      if let tokenLimit {
        guard tokenLimit.limit >= 1 else {
          throw bad("token limit must be at least 1, got \(tokenLimit.limit)")
        }
        guard tokenLimit.window > .zero else { throw bad("token window must be positive") }
      }
      try MayChuStream.validate(
        tocDoToken: streaming.tocDoToken,
        toiDaClient: streaming.toiDaClient,
        timeout: streaming.timeout,
        toiDaMoiClient: streaming.toiDaMoiClient
      )
    }
  }
}
