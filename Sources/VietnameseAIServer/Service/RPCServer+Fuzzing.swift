public import NIOCore

/// Connections of a server driven in memory, without a socket: the entry points of the
/// connection fuzzer in `tools/fuzz`. Not API: only importers of `@_spi(Fuzzing)` see them.
extension RPCServer {
  /// Starts the models (and checks the configuration) without listening.
  @_spi(Fuzzing)
  public func startWithoutListening() throws {
    try configuration.validate()
    try core.start()
  }

  /// Stops the models started by ``startWithoutListening()``.
  @_spi(Fuzzing)
  public func stopWithoutListening() async {
    await core.stop()
  }

  /// A handler for one more connection of this server, for the caller to install in a channel
  /// on that channel's event loop. Generators run as tasks: there is no poll to yield to.
  @_spi(Fuzzing)
  public func makeConnectionHandler() -> any ChannelHandler {
    BinaryConnectionHandler(
      core: core,
      registry: registry,
      yield: nil,
      lane: BatchLanes.Lane(index: 0, executor: nil),
      logger: logger
    )
  }
}
