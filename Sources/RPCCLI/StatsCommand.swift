import ArgumentParser
import Foundation
import VietnameseAIClient

/// `rpc-cli stats`: the server's statistics as a table, or `--json` as sent.
struct StatsCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "stats",
    abstract: "Show the server's statistics."
  )

  @OptionGroup var connection: ConnectionOptions

  @Flag(help: "Print the JSON document exactly as the server sent it.")
  var json = false

  func run() async throws {
    let stats = try await connection.withCalls { try await $0.stats() }
    if json {
      Output.line(stats.json)
      return
    }
    var groups: [(String, [String: Double])] = [
      ("batch (\(stats.batchModel ?? "-"))", stats.batch),
      ("stream", stats.stream),
      ("rate_limit", stats.rateLimit),
    ]
    for name in stats.models.keys.sorted() where name != stats.batchModel {
      groups.append(("model \(name)", stats.models[name]!))
    }
    for (title, figures) in groups {
      Output.line(title)
      let width = figures.keys.map(\.count).max() ?? 0
      for key in figures.keys.sorted() {
        Output.line(
          "  \(key.padding(toLength: width, withPad: " ", startingAt: 0))  \(Self.format(figures[key]!))"
        )
      }
    }
  }

  static func format(_ value: Double) -> String {
    if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
    return String(format: "%.6g", value)
  }
}
