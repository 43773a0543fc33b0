import VietnameseAIRedis

/// One kind of limit kept in Redis as GCRA (``RedisGCRA``), one key per client: leases of a
/// request limit, or a token limit charged after the fact.
struct RedisLimitStore: LeaseSource, TokenStore {
  let client: RedisClient
  let runner: RedisGCRARunner
  /// Prefixes every client's key, so that limits of different kinds or deployments sharing a
  /// Redis do not meet.
  let keyPrefix: String

  init(client: RedisClient, limit: RedisGCRA, keyPrefix: String) {
    self.client = client
    self.runner = RedisGCRARunner(limit: limit)
    self.keyPrefix = keyPrefix
  }

  func lease(_ clientID: String, want: Int) async throws -> LeaseGrant {
    let grant = try await runner.acquire(keyPrefix + clientID, want: want, on: client.connection())
    return LeaseGrant(granted: grant.granted, retryAfter: grant.retryAfter)
  }

  func charge(_ clientID: String, spent: Int, prompt: Int?) async throws -> Duration? {
    let grant = try await runner.acquire(
      keyPrefix + clientID,
      want: prompt ?? 0,
      mode: .all,
      spent: spent,
      on: client.connection()
    )
    return grant.retryAfter > .zero ? grant.retryAfter : nil
  }
}
