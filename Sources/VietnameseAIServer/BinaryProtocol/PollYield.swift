import NIOCore
import NIOPosix

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Runs callbacks on an event loop right after the loop has next polled for I/O.
///
/// A NIO loop runs every job queued during a tick, including jobs queued by those jobs,
/// before it polls again. Work that re-queues itself with `execute` (a stream pulling its
/// generator in bursts) therefore keeps the loop from ever reading: a `CANCEL` or another
/// request would wait until the work ends. Work that continues through ``afterNextPoll(_:)``
/// instead lets every connection of the loop read and write in between.
///
/// It is a pipe watched by the loop like any socket: asking for a turn writes one byte into
/// it, the next poll finds it readable, and reading it runs the callbacks. One byte at most
/// is outstanding, so a turn costs two small system calls however many callbacks share it.
final class PollYield: Sendable {
  private let channel: any Channel
  private let state: NIOLoopBound<State>

  fileprivate final class State {
    var armed = false
    var callbacks: [() -> Void] = []
    let signal = ByteBuffer(integer: UInt8(1))
  }

  private init(channel: any Channel, state: NIOLoopBound<State>) {
    self.channel = channel
    self.state = state
  }

  /// The loop this yield belongs to.
  var eventLoop: any EventLoop { channel.eventLoop }

  /// Creates a yield on `loop`, over a new pipe.
  static func make(on loop: any EventLoop) async throws -> PollYield {
    var fds: [Int32] = [-1, -1]
    guard pipe(&fds) == 0 else {
      throw IOError(errnoCode: errno, reason: "pipe")
    }
    let state = try await loop.submit { NIOLoopBound(State(), eventLoop: loop) }.get()
    do {
      let channel = try await NIOPipeBootstrap(group: loop)
        .channelInitializer { channel in
          channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(Reader(state: state))
          }
        }
        .takingOwnershipOfDescriptors(input: fds[0], output: fds[1])
        .get()
      return PollYield(channel: channel, state: state)
    } catch {
      for fd in fds { closeDescriptor(fd) }
      throw error
    }
  }

  /// Runs `callback` on this loop after its next poll for I/O. Call it on the loop.
  func afterNextPoll(_ callback: @escaping () -> Void) {
    let state = self.state.value
    state.callbacks.append(callback)
    guard !state.armed else { return }
    state.armed = true
    channel.writeAndFlush(state.signal, promise: nil)
  }

  /// Closes the pipe; callbacks still waiting are dropped.
  func close() async {
    try? await channel.close()
  }

  /// Reads the signal and runs the callbacks that were waiting for it.
  fileprivate final class Reader: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let state: NIOLoopBound<State>

    init(state: NIOLoopBound<State>) {
      self.state = state
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    func channelReadComplete(context: ChannelHandlerContext) {
      let state = self.state.value
      state.armed = false
      let callbacks = state.callbacks
      state.callbacks.removeAll(keepingCapacity: true)
      for callback in callbacks { callback() }
    }
  }
}

/// The poll yields of a server's event loops, one per loop, made when the server binds.
struct PollYields: Sendable {
  private let byLoop: [ObjectIdentifier: PollYield]

  init(_ yields: [PollYield]) {
    byLoop = Dictionary(yields.map { (ObjectIdentifier($0.eventLoop), $0) }, uniquingKeysWith: { a, _ in a })
  }

  /// The yield of `loop`, if the server made one for it.
  func yield(for loop: any EventLoop) -> PollYield? {
    byLoop[ObjectIdentifier(loop)]
  }

  /// Makes one yield for each loop of `group`.
  static func make(for group: any EventLoopGroup) async throws -> PollYields {
    var yields: [PollYield] = []
    do {
      for loop in group.makeIterator() { yields.append(try await PollYield.make(on: loop)) }
    } catch {
      for yield in yields { await yield.close() }
      throw error
    }
    return PollYields(yields)
  }

  func close() async {
    for yield in byLoop.values { await yield.close() }
  }
}

@available(*, unavailable)
extension PollYield.Reader: Sendable {}

private func closeDescriptor(_ fd: Int32) {
  #if canImport(Glibc)
    _ = Glibc.close(fd)
  #elseif canImport(Darwin)
    _ = Darwin.close(fd)
  #endif
}
