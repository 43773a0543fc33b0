/// Where a limiter keeps its clients' allowances: ``TokenBucketTable`` for the token bucket,
/// whose 16-byte buckets change by compare-and-swap, and ``SlidingWindowShards`` for the
/// sliding window, whose logs change under a lock.
protocol ClientStore: AnyObject, Sendable {
  associatedtype Allowance: ClientAllowance

  /// Runs `body` on `key`'s allowance, inserting `makeNew()` first if the key is absent, stores
  /// what `body` leaves, and counts the requests it says it allowed and rejected.
  ///
  /// `body` may run more than once, each time on a fresh copy; only the last run's result and
  /// changes count.
  func update<R: Sendable>(
    _ key: BoGioiHanTocDo.ClientKey,
    new makeNew: () -> Allowance,
    _ body: (inout Allowance) -> (result: R, allowed: Int, rejected: Int)
  ) -> R

  /// Runs `read` on `key`'s allowance, `nil` if the key is absent, without storing anything.
  ///
  /// `read` may run under a lock and must not call the store.
  func peek<R: Sendable>(_ key: BoGioiHanTocDo.ClientKey, _ read: (Allowance?) -> R) -> R

  /// Forgets `key`.
  func remove(_ key: BoGioiHanTocDo.ClientKey)

  /// Forgets every client whose allowance satisfies `shouldRemove`. Returns how many.
  func removeAll(where shouldRemove: @Sendable (Allowance) -> Bool) -> Int

  /// Requests allowed and rejected so far, and clients held.
  func statistics() -> (allowed: Int, rejected: Int, clients: Int)
}
