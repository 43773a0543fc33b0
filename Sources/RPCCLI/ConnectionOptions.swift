import ArgumentParser
import Foundation
import VietnameseAIClient

/// The flags every subcommand shares: where the server is and how to connect.
struct ConnectionOptions: ParsableArguments {
  @Option(help: "Server address.")
  var host = "127.0.0.1"

  @Option(help: "Server port.")
  var port = 7070

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

  /// Connects, runs `body`, closes; an ``RPCError`` becomes a message on standard error and
  /// an exit code that tells a script what happened.
  func withClient<T>(_ body: (RPCClient) async throws -> T) async throws -> T {
    do {
      let client = try await connect()
      do {
        let result = try await body(client)
        await client.close()
        return result
      } catch {
        await client.close()
        throw error
      }
    } catch let error as RPCError {
      throw Self.exit(for: error)
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
