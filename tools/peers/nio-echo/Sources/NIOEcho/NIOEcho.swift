import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import PeerBenchSupport

/// `nio-echo serve` and `nio-echo bench`: the bare-NIO ceiling of the comparison.
@main
struct NIOEcho: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "nio-echo",
    abstract: "A bare SwiftNIO echo server for length-prefixed frames, and its load client.",
    subcommands: [Serve.self, Bench.self]
  )
}

struct Serve: AsyncParsableCommand {
  @Option(help: "Host to bind.") var host = "127.0.0.1"
  @Option(help: "Port to bind (0 picks a free one).") var port = 0

  func run() async throws {
    let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .serverChannelOption(.backlog, value: 1024)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
      .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(EchoServerHandler())
        }
      }
      .bind(host: host, port: port)
      .get()
    print("listening on \(host):\(channel.localAddress?.port ?? port)")
    fflush(nil)
    try await channel.closeFuture.get()
  }
}

struct Bench: AsyncParsableCommand {
  @OptionGroup var options: LoadOptions

  func run() async throws {
    let options = self.options
    let group = MultiThreadedEventLoopGroup.singleton
    let start = NIODeadline.now()
    let budget = EchoLoadHandler.Budget(
      count: options.count,
      end: options.count == nil ? start + .nanoseconds(Int64(options.duration * 1e9)) : .distantFuture
    )
    var results: [EventLoopFuture<LoadTally>] = []
    for _ in 0..<options.connections {
      let loop = group.next()
      let done = loop.makePromise(of: LoadTally.self)
      _ = try await ClientBootstrap(group: loop)
        .channelOption(.socketOption(.tcp_nodelay), value: 1)
        .channelInitializer { channel in
          channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(
              EchoLoadHandler(options: options, budget: budget, done: done)
            )
          }
        }
        .connect(host: options.host, port: options.port)
        .get()
      results.append(done.futureResult)
    }
    var tally = LoadTally()
    for result in results { tally.merge(try await result.get()) }
    let seconds = Double((NIODeadline.now() - start).nanoseconds) / 1e9
    tally.report(system: "bare-nio", options: options, seconds: seconds)
  }
}
