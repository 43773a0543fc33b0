import VietnameseAIClient

/// The calls the subcommands make, on one server (``RPCClient``) or on several
/// (``RPCClientPool``, with `--endpoints`).
protocol RPCCalls: Sendable {
  func predict(model: String, input: String, deadline: Duration?) async throws -> String
  func predictBatch(model: String, inputs: [String], deadline: Duration?) async throws -> [String]
  func openStream(prompt: String, model: String, deadline: Duration?) async throws -> RPCTokenStream
  func stats() async throws -> ServerStatistics
  func close() async
}

extension RPCClient: RPCCalls {
  func openStream(prompt: String, model: String, deadline: Duration?) async throws -> RPCTokenStream {
    stream(prompt: prompt, model: model, deadline: deadline)
  }
}

extension RPCClientPool: RPCCalls {
  func openStream(prompt: String, model: String, deadline: Duration?) async throws -> RPCTokenStream {
    try await stream(prompt: prompt, model: model, deadline: deadline)
  }
}
