import Foundation

/// The server's statistics, as a `STATS` request returns them.
///
/// The groups keep the design's keys: `batch` has `latency_p50`, `latency_p95`,
/// `batch_size_tb`, `queue_size`, ...; `stream` has `tong_stream`, `client_hien_tai`,
/// `thoi_gian_tb`, ...; `rateLimit` has `ty_le_tu_choi`, .... Times are in seconds.
public struct ServerStatistics: Sendable {
  /// The document exactly as the server sent it.
  public var json: String
  /// The batching figures of the server's primary model (``batchModel``).
  public var batch: [String: Double]
  /// The name of the model `batch` describes.
  public var batchModel: String?
  public var stream: [String: Double]
  public var rateLimit: [String: Double]
  /// Every model's batching figures, by model name.
  public var models: [String: [String: Double]]

  /// Reads a statistics document, as ``RPCClient/stats()`` does, for documents obtained
  /// another way (an embedded server's `statisticsJSON()`).
  public static func decode(_ json: String) throws -> ServerStatistics {
    try ServerStatistics(json: json)
  }

  /// Reads the document, keeping the numbers of each group; members of other kinds, and
  /// groups it does not know, are ignored as the protocol asks.
  init(json: String) throws(RPCError) {
    guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)),
      let document = object as? [String: Any]
    else {
      throw RPCError(code: .internal, message: "the server's statistics are not a JSON object")
    }
    func numbers(_ value: Any?) -> [String: Double] {
      guard let group = value as? [String: Any] else { return [:] }
      return group.compactMapValues { ($0 as? NSNumber)?.doubleValue }
    }
    self.json = json
    self.batch = numbers(document["batch"])
    self.batchModel = document["batch_model"] as? String
    self.stream = numbers(document["stream"])
    self.rateLimit = numbers(document["rate_limit"])
    self.models = (document["models"] as? [String: Any] ?? [:]).mapValues { numbers($0) }
  }
}
