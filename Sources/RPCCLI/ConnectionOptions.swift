import ArgumentParser
import Foundation
import VietnameseAIClient

/// The flags every subcommand shares: where the server is and how to connect.
struct ConnectionOptions: ParsableArguments {
  @Option(help: "Server address.")
  var host = "127.0.0.1"

  @Option(help: "Server port.")
  var port = 7070

  @Option(
    help: """
      Several servers, HOST:PORT,HOST:PORT: each call goes to the least busy one, and a call \
      that provably never reached a server is sent to another (instead of --host/--port).
      """
  )
  var endpoints: String?

  @Option(help: "Client id (the rate limit's key); empty: the server uses your address.")
  var clientID = "rpc-cli"

  @Option(help: "Auth token, if the server requires one.")
  var token = ""

  @Flag(help: "Offer zlib compression.")
  var compress = false

  @Option(help: "Seconds to wait for each call; 0 waits as long as it takes.")
  var timeout = 30.0

  func validate() throws {
    guard (1...65_535).contains(port) else { throw ValidationError("--port must be in 1...65535") }
    if endpoints != nil { _ = try parsedEndpoints() }
    guard timeout.isFinite, timeout >= 0 else { throw ValidationError("--timeout must be 0 or more seconds") }
  }

  /// The per-call deadline, or `nil` for none.
  var deadline: Duration? {
    timeout == 0 ? nil : .nanoseconds(Int64(timeout * 1e9))
  }

  func connect() async throws -> RPCClient {
    try await RPCClient.connect(
      host: host,
      port: port,
      clientID: clientID,
      authToken: token,
      compression: compress,
      timeout: deadline ?? .seconds(30)
    )
  }

  func parsedEndpoints() throws -> [RPCClientPool.Endpoint] {
    do {
      return try (endpoints ?? "").split(separator: ",").map {
        try RPCClientPool.Endpoint(parsing: String($0))
      }
    } catch let error as RPCError {
      throw ValidationError("--endpoints: \(error.message)")
    }
  }

  /// The connection to `--host`/`--port`, or the pool over `--endpoints`.
  func connectCalls() async throws -> any RPCCalls {
    guard endpoints != nil else { return try await connect() }
    var configuration = RPCClientPool.Configuration()
    configuration.clientID = clientID
    configuration.authToken = token
    configuration.compression = compress
    return try RPCClientPool(endpoints: try parsedEndpoints(), configuration: configuration)
  }

  /// ``withClient(_:)`` for the calls both a connection and a pool make.
  func withCalls<T>(_ body: (any RPCCalls) async throws -> T) async throws -> T {
    try await Self.using(connectCalls, close: { await $0.close() }, body)
  }

  /// Connects, runs `body`, closes; an ``RPCError`` becomes a message on standard error and
  /// an exit code that tells a script what happened.
  func withClient<T>(_ body: (RPCClient) async throws -> T) async throws -> T {
    if endpoints != nil { throw ValidationError("this command talks to one server: use --host and --port") }
    return try await Self.using(connect, close: { await $0.close() }, body)
  }

  private static func using<C, T>(
    _ connect: () async throws -> C,
    close: (C) async -> Void,
    _ body: (C) async throws -> T
  ) async throws -> T {
    do {
      let client = try await connect()
      do {
        let result = try await body(client)
        await close(client)
        return result
      } catch {
        await close(client)
        throw error
      }
    } catch let error as RPCError {
      throw exit(for: error)
    }
  }

  static func exit(for error: RPCError) -> ExitCode {
    var message = "error: \(error.code): \(error.message)"
    if let retryAfter = error.retryAfter {
      message += String(format: " (retry after %.3f s)", retryAfter.seconds)
    }
    Output.error(message + "\n")
    switch error.code {
    case .unavailable: return ExitCode(69)
    case .rateLimited, .queueFull, .tooManyStreams, .resourceExhausted: return ExitCode(75)
    case .deadlineExceeded: return ExitCode(124)
    default: return ExitCode(1)
    }
  }
}

extension Duration {
  /// The duration in seconds, for printing.
  var seconds: Double {
    Double(components.seconds) + Double(components.attoseconds) / 1e18
  }
}
