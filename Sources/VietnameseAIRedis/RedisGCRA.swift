@_spi(Locking) import VietnameseAIConcurrency

/// The generic cell rate algorithm (GCRA) as one Lua script in Redis: a limit shared by every
/// server that names the same Redis, with Redis `TIME` as the only clock, so that the servers'
/// own clocks do not matter.
///
/// A key holds its theoretical arrival time (TAT). A call asks for up to `want` units (a lease
/// a server then spends locally) and is granted as many as the limit allows now, at least one,
/// or none with the time until one is allowed.
///
/// For limits that charge what was used after the fact (tokens a stream generated), a call
/// may also be ``Mode/all``: it first charges `spent` units whatever the limit says (the key
/// may go into debt), then grants all `want` units if at least one is allowed, else none.
public struct RedisGCRA: Sendable {
  /// What a call was granted.
  public struct Grant: Hashable, Sendable {
    /// Units granted now, `0...want`.
    public var granted: Int
    /// Units the key could still grant at once after this call.
    public var remaining: Int
    /// While the key is over its limit (nothing granted): how long until one unit is. Zero
    /// otherwise.
    public var retryAfter: Duration
    /// How long until the key is back to its full burst.
    public var resetAfter: Duration
  }

  /// Units per `period`, in a steady flow.
  public var rate: Int
  public var period: Duration
  /// Units that may pass at once after a quiet spell.
  public var burst: Int

  /// How a call grants.
  public enum Mode: String, Sendable {
    /// Up to `want` units, as many as the limit allows now.
    case upTo = "up_to"
    /// Charges `spent` first, then all `want` units if one is allowed now, else none.
    case all
  }

  public init(rate: Int, period: Duration, burst: Int) {
    self.rate = rate
    self.period = period
    self.burst = burst
  }

  /// KEYS[1] the client's key; ARGV: emission interval in µs, burst, want, mode, spent.
  /// Times in whole microseconds since the epoch, which a Lua double holds exactly. Returns
  /// granted, remaining, retry_after_us, reset_after_us.
  public static let script = """
    local key = KEYS[1]
    local emission = tonumber(ARGV[1])
    local burst = tonumber(ARGV[2])
    local want = tonumber(ARGV[3])
    local mode = ARGV[4]
    local spent = tonumber(ARGV[5])
    local clock = redis.call("TIME")
    local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
    local tat = tonumber(redis.call("GET", key) or now)
    if tat < now then tat = now end
    tat = tat + emission * spent
    local available = math.floor((now - (tat - emission * burst)) / emission)
    local granted = 0
    if available >= 1 then
      if mode == "all" then granted = want else granted = math.min(available, want) end
    end
    local new_tat = tat + emission * granted
    if new_tat > now then
      redis.call("SET", key, string.format("%d", new_tat), "PX", math.ceil((new_tat - now) / 1000) + 1)
    end
    if available < 1 then
      return {0, 0, (tat - emission * burst) + emission - now, tat - now}
    end
    return {granted, math.max(available - granted, 0), 0, new_tat - now}
    """

  /// The arguments of ``script`` for a call wanting `want` units, after `spent`.
  func arguments(want: Int, mode: Mode = .upTo, spent: Int = 0) -> [String] {
    let microseconds =
      period.components.seconds * 1_000_000 + period.components.attoseconds / 1_000_000_000_000
    let emission = max(microseconds / Int64(max(rate, 1)), 1)
    let want = mode == .upTo ? max(want, 1) : max(want, 0)
    return [String(emission), String(burst), String(want), mode.rawValue, String(max(spent, 0))]
  }

  static func grant(from reply: RESPValue) throws(RedisError) -> Grant {
    guard case .array(let values?) = reply, values.count == 4,
      let granted = values[0].integer, let remaining = values[1].integer,
      let retry = values[2].integer, let reset = values[3].integer
    else {
      throw RedisError(.protocolError, "the GCRA script answered \(reply)")
    }
    return Grant(
      granted: Int(granted),
      remaining: Int(remaining),
      retryAfter: .microseconds(max(retry, 0)),
      resetAfter: .microseconds(max(reset, 0))
    )
  }
}

/// Runs ``RedisGCRA/script`` on a connection by its SHA1 (`EVALSHA`), loading it again
/// (`SCRIPT LOAD`) when Redis answers `NOSCRIPT`, as after a restart or `SCRIPT FLUSH`.
public final class RedisGCRARunner: Sendable {
  public let limit: RedisGCRA
  private let sha = Locked<String?>(nil)

  public init(limit: RedisGCRA) {
    self.limit = limit
  }

  /// Asks for `want` units of `key`'s limit (up to `want`, or all of them, by `mode`), after
  /// charging `spent`.
  ///
  /// - Throws: ``RedisError`` when Redis cannot be reached or answers with an error.
  public func acquire(
    _ key: String,
    want: Int,
    mode: RedisGCRA.Mode = .upTo,
    spent: Int = 0,
    on connection: RedisConnection
  ) async throws(RedisError) -> RedisGCRA.Grant {
    let arguments = ["1", key] + limit.arguments(want: want, mode: mode, spent: spent)
    if let sha = sha.withLock({ $0 }) {
      let reply = try await connection.send(["EVALSHA", sha] + arguments)
      if case .error(let message) = reply, message.hasPrefix("NOSCRIPT") {
        return try await loadAndRun(arguments, on: connection)
      }
      return try Self.checked(reply)
    }
    return try await loadAndRun(arguments, on: connection)
  }

  private func loadAndRun(_ arguments: [String], on connection: RedisConnection) async throws(RedisError)
    -> RedisGCRA.Grant
  {
    let loaded = try await connection.send(["SCRIPT", "LOAD", RedisGCRA.script])
    guard case .bulkString = loaded, let digest = loaded.text else {
      throw RedisError(.protocolError, "SCRIPT LOAD answered \(loaded)")
    }
    sha.withLock { $0 = digest }
    return try Self.checked(try await connection.send(["EVALSHA", digest] + arguments))
  }

  private static func checked(_ reply: RESPValue) throws(RedisError) -> RedisGCRA.Grant {
    if case .error(let message) = reply { throw RedisError(.commandFailed, message) }
    return try RedisGCRA.grant(from: reply)
  }
}
