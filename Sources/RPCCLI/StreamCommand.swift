import ArgumentParser
import Foundation
import VietnameseAI
import VietnameseAIClient

/// `rpc-cli stream "Viết bài luận về AI"`: prints tokens as they arrive; `--sse` prints them as
/// Server-Sent Events, as an HTTP front end would send them.
struct StreamCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "stream",
    abstract: "Stream a generator's tokens for a prompt, printing them as they arrive."
  )

  @OptionGroup var connection: ConnectionOptions

  @Option(help: "The generator; empty for the server's default.")
  var model = ""

  @Flag(help: "Print Server-Sent Events (data: {\"token\": ...}) instead of plain text.")
  var sse = false

  @Argument(help: "The prompt.")
  var prompt: String

  func run() async throws {
    try await connection.withCalls { client in
      do {
        for try await token in try await client.openStream(
          prompt: prompt,
          model: model,
          deadline: connection.deadline
        ) {
          Output.write(sse ? SSEEvent.token(token) : token)
        }
        Output.write(sse ? SSEEvent.done : "\n")
      } catch let error as RPCError where sse {
        // As a server-side SSE stream does: one error event, then the end marker.
        Output.write(SSEEvent.error("\(error.code): \(error.message)") + SSEEvent.done)
        throw error
      }
    }
  }
}
