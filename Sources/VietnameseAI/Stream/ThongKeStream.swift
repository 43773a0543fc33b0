/// A snapshot of a ``MayChuStream``'s statistics.
///
/// JSON keys are the seed's (`tong_stream`, `client_hien_tai`, `thoi_gian_tb`) plus the extra
/// figures below. Times are seconds.
public struct ThongKeStream: Codable, Sendable, Equatable {
  /// Streams started (admitted) since creation.
  public var tongStream: Int
  /// Streams running right now.
  public var clientHienTai: Int
  /// Mean duration of finished streams, in seconds.
  public var thoiGianTB: Double
  /// Tokens handed to consumers.
  public var tokensSent: Int
  /// Streams whose generator failed.
  public var errors: Int
  /// Streams ended by the server's timeout or by their request's deadline.
  public var timeouts: Int
  /// Streams ended early by their consumer (stopped reading, cancelled).
  public var cancelled: Int
  /// Streams refused because too many were running.
  public var rejected: Int
  /// Median time from the start of a stream to its first token, in seconds.
  public var ttftP50: Double
  /// 95th percentile time to first token, in seconds.
  public var ttftP95: Double

  enum CodingKeys: String, CodingKey {
    case tongStream = "tong_stream"
    case clientHienTai = "client_hien_tai"
    case thoiGianTB = "thoi_gian_tb"
    case tokensSent = "tokens_sent"
    case errors
    case timeouts
    case cancelled
    case rejected
    case ttftP50 = "ttft_p50"
    case ttftP95 = "ttft_p95"
  }
}
