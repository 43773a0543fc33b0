import ArgumentParser
import Foundation
import VietnameseAIClient

/// `rpc-cli ping`: round trips to the server.
struct PingCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ping",
    abstract: "Measure round trips to the server."
  )

  @OptionGroup var connection: ConnectionOptions

  @Option(name: .shortAndLong, help: "How many pings.")
  var count = 3

  func run() async throws {
    try await connection.withClient { client in
      for _ in 0..<max(count, 1) {
        let rtt = try await client.ping()
        Output.line(
          String(format: "pong from %@:%d in %.3f ms", connection.host, connection.port, rtt.seconds * 1000)
        )
      }
    }
  }
}
