// Serving a model of your own: the server embedded in a Swift program.
//
//   swift run custom-model-server      then      swift run rpc-cli predict --model sentiment "tuyệt vời"
//
// The model below is a stand-in (it looks for a few Vietnamese words); put your own inference
// in `duDoanBatch`. Everything else (batching, streaming, rate limiting, the protocol,
// graceful shutdown on SIGINT/SIGTERM) comes from the server.

import Logging
import ServiceLifecycle
import UnixSignals
import VietnameseAI
import VietnameseAIServer

/// Labels a sentence "tích cực" (positive) or "tiêu cực" (negative), a whole batch per call.
struct SentimentModel: MoHinh {
  func duDoan(_ dauVao: String) async throws -> String {
    try await duDoanBatch([dauVao])[0]
  }

  func duDoanBatch(_ dauVao: [String]) async throws -> [String] {
    let positive = ["tốt", "tuyệt", "hay", "thích", "vui"]
    return dauVao.map { sentence in
      positive.contains { sentence.lowercased().contains($0) } ? "tích cực" : "tiêu cực"
    }
  }
}

let logger = Logger(label: "custom-model-server")
let server = RPCServer(
  configuration: .init(),
  models: [
    .text(name: "sentiment", batcher: MayChuBatch(moHinh: SentimentModel(), timeoutBatch: .milliseconds(5)))
  ],
  generators: [BuiltinModels.essay],
  logger: logger
)
try await ServiceGroup(services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
