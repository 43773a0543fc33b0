public import NIOCore
public import NIOPosix

/// One connection to a Redis server: commands are written as they come and may be pipelined;
/// each gets its reply, or a ``RedisError``, exactly once.
///
/// ```swift
/// let redis = try await RedisConnection.connect(host: "127.0.0.1", port: 6379)
/// let reply = try await redis.send(["INCR", "hits"])
/// ```
public final class RedisConnection: Sendable {
  private let channel: any Channel
  private let handler: NIOLoopBound<RedisReplyHandler>
  /// How long a command waits for its reply.
  public let timeout: Duration

  private init(channel: any Channel, handler: NIOLoopBound<RedisReplyHandler>, timeout: Duration) {
    self.channel = channel
    self.handler = handler
    self.timeout = timeout
  }

  /// Connects to the Redis server at `host`:`port`.
  ///
  /// - Parameters:
  ///   - timeout: How long each command may take, and the connection unless `connectTimeout`
  ///     says otherwise.
  /// - Throws: ``RedisError`` (`connectionClosed`) if no connection is made in time.
  public static func connect(
    host: String,
    port: Int,
    timeout: Duration = .seconds(1),
    connectTimeout: Duration? = nil,
    decoder: RESPDecoder = RESPDecoder(),
    group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
  ) async throws(RedisError) -> RedisConnection {
    do {
      let channel = try await ClientBootstrap(group: group)
        .connectTimeout(TimeAmount(connectTimeout ?? timeout))
        .channelOption(.socketOption(.tcp_nodelay), value: 1)
        .channelInitializer { channel in
          channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(RedisReplyHandler(decoder: decoder))
          }
        }
        .connect(host: host, port: port)
        .get()
      let handler = try await channel.eventLoop.submit {
        NIOLoopBound(
          try channel.pipeline.syncOperations.handler(type: RedisReplyHandler.self),
          eventLoop: channel.eventLoop
        )
      }.get()
      return RedisConnection(channel: channel, handler: handler, timeout: timeout)
    } catch {
      throw RedisError(.connectionClosed, "cannot connect to Redis at \(host):\(port): \(error)")
    }
  }

  /// Whether the connection is still usable; a failed one stays closed (make another).
  public var isOpen: Bool { channel.isActive }

  /// Sends one command and waits for its reply.
  public func send(_ command: [String]) async throws(RedisError) -> RESPValue {
    try await send(pipeline: [command])[0]
  }

  /// Sends `commands` in one write and waits for their replies, in order.
  public func send(pipeline commands: [[String]]) async throws(RedisError) -> [RESPValue] {
    var bytes = channel.allocator.buffer(capacity: 64 * commands.count)
    for command in commands { RESPEncoder.write(command: command, into: &bytes) }
    let loop = channel.eventLoop
    let promises = commands.map { _ in loop.makePromise(of: RESPValue.self) }
    let (handler, timeout, encoded) = (self.handler, self.timeout, bytes)
    loop.execute { handler.value.send(encoded, promises: promises, timeout: timeout) }
    var replies: [RESPValue] = []
    replies.reserveCapacity(promises.count)
    for promise in promises {
      do {
        replies.append(try await promise.futureResult.get())
      } catch let error as RedisError {
        throw error
      } catch {
        throw RedisError(.connectionClosed, "\(error)")
      }
    }
    return replies
  }

  public func close() async {
    try? await channel.close()
  }
}
