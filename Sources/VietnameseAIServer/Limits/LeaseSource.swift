/// Where a limit shared between servers lives: it leases shares of a client's allowance.
protocol LeaseSource: Sendable {
  /// Asks for up to `want` units of `client`'s allowance.
  ///
  /// - Returns: The units granted, `0...want`; with none, how long until one would be.
  /// - Throws: When the store cannot be reached or answers wrongly.
  func lease(_ client: String, want: Int) async throws -> LeaseGrant
}

struct LeaseGrant: Sendable, Equatable {
  var granted: Int
  /// With nothing granted: how long until one unit is.
  var retryAfter: Duration
}
