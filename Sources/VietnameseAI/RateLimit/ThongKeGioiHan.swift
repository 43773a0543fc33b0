/// A snapshot of a ``BoGioiHanTocDo``'s statistics.
///
/// JSON keys are the seed's (`ty_le_tu_choi`) plus the extra figures below.
public struct ThongKeGioiHan: Codable, Sendable, Equatable {
  /// Rejected decisions over all decisions, 0 when there were none.
  public var tyLeTuChoi: Double
  /// Decisions taken (calls of `choPhep`/`kiemTra`).
  public var requestsTotal: Int
  /// Decisions that allowed the request.
  public var allowed: Int
  /// Decisions that rejected the request.
  public var rejected: Int
  /// Clients the limiter holds state for right now.
  public var clients: Int

  enum CodingKeys: String, CodingKey {
    case tyLeTuChoi = "ty_le_tu_choi"
    case requestsTotal = "requests_total"
    case allowed
    case rejected
    case clients
  }
}
