import VietnameseAIRedis

/// Leases from a GCRA limit kept in Redis (``RedisGCRA``), one key per client.
struct RedisLeaseSource: LeaseSource {
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

  var location: String { "redis://\(client.configuration.host):\(client.configuration.port)" }

  func lease(_ clientID: String, want: Int) async throws -> LeaseGrant {
    let grant = try await runner.acquire(keyPrefix + clientID, want: want, on: client.connection())
    return LeaseGrant(granted: grant.granted, retryAfter: grant.retryAfter)
  }
}
