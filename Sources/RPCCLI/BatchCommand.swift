import ArgumentParser
import VietnameseAIClient

/// `rpc-cli batch --model sim "một" "hai" "ba"`: several inputs in one request, one output per
/// line in the order of the inputs.
struct BatchCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "batch",
    abstract: "Predict several inputs in one request; prints one output per line, in order."
  )

  @OptionGroup var connection: ConnectionOptions

  @Option(help: "The model.")
  var model = "echo"

  @Argument(help: "The inputs, as UTF-8 text.")
  var inputs: [String] = []

  func run() async throws {
    let outputs = try await connection.withCalls { client in
      try await client.predictBatch(model: model, inputs: inputs, deadline: connection.deadline)
    }
    for output in outputs { Output.line(output) }
  }
}
