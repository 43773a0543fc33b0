import Foundation
import VietnameseAI

/// The statistics document a server reports (`STATS` on the binary protocol): the design's
/// three groups under its own keys, plus every model's figures. Times are seconds.
///
/// `batch` describes one model, the first the server was given, named by `batch_model`; the
/// others are under `models`, by name, beside it.
struct StatisticsDocument: Encodable {
  var batch: ThongKeBatch?
  var batchModel: String?
  var stream: ThongKeStream
  var rateLimit: ThongKeGioiHan
  var models: [String: ThongKeBatch]
  /// Models that cannot serve now (served by workers, none of which is connected).
  var modelsNotReady: [String]

  enum CodingKeys: String, CodingKey {
    case batch
    case batchModel = "batch_model"
    case stream
    case rateLimit = "rate_limit"
    case models
    case modelsNotReady = "models_not_ready"
  }

  init(primaryModel: ServedModel?, models: [ServedModel], stream: ThongKeStream, rateLimit: ThongKeGioiHan) {
    self.batch = primaryModel?.statistics()
    self.batchModel = primaryModel?.name
    self.stream = stream
    self.rateLimit = rateLimit
    self.models = Dictionary(
      models.map { ($0.name, $0.statistics()) },
      uniquingKeysWith: { first, _ in first }
    )
    self.modelsNotReady = models.filter { !$0.isReady() }.map(\.name).sorted()
  }

  /// The document as JSON text, keys sorted.
  func json() -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    // Encoding plain numbers and strings cannot fail.
    let data = (try? encoder.encode(self)) ?? Data("{}".utf8)
    return String(decoding: data, as: UTF8.self)
  }
}
