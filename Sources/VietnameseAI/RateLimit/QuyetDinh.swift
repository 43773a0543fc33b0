/// The outcome of one rate-limit decision, with what a server needs to answer it.
public struct QuyetDinh: Sendable, Equatable {
  /// Whether the request may go ahead. When true, its cost has been taken.
  public var choPhep: Bool
  /// Requests of cost 1 the client could make right now, after this decision.
  public var conLai: Int
  /// When rejected: how long until a request of the same cost would be allowed (the HTTP
  /// `Retry-After`), or `nil` if it never will be because the cost exceeds the limit's
  /// capacity. When allowed: zero.
  public var retryAfter: Duration?

  public init(choPhep: Bool, conLai: Int, retryAfter: Duration?) {
    self.choPhep = choPhep
    self.conLai = conLai
    self.retryAfter = retryAfter
  }
}
