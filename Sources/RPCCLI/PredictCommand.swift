import ArgumentParser
import VietnameseAIClient

/// `rpc-cli predict --model echo "xin chào"`: one prediction, printed as text.
struct PredictCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(commandName: "predict", abstract: "Predict one input.")

  @OptionGroup var connection: ConnectionOptions

  @Option(help: "The model.")
  var model = "echo"

  @Argument(help: "The input, as UTF-8 text.")
  var input: String

  func run() async throws {
    let output = try await connection.withCalls { client in
      try await client.predict(model: model, input: input, deadline: connection.deadline)
    }
    Output.line(output)
  }
}
