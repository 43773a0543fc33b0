import ArgumentParser

/// `rpc-cli`: talks to an `rpc-server` from the command line.
///
/// Exit codes: 0 success; 64 bad usage; 69 server unreachable or shutting down; 75 rate
/// limited, queue full or too many streams (try again later); 124 deadline exceeded; 1 any
/// other error.
@main
struct RPCCLI: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "rpc-cli",
    abstract: "Call an rpc-server: predict, batch, stream, stats, ping, and a load generator.",
    discussion: """
      Exit codes: 0 success, 64 bad usage, 69 server unreachable or shutting down, \
      75 rate limited or overloaded (retry later), 124 deadline exceeded, 1 other errors.
      """,
    subcommands: [
      PredictCommand.self, BatchCommand.self, StreamCommand.self, StatsCommand.self, PingCommand.self,
      BenchCommand.self,
    ]
  )
}
