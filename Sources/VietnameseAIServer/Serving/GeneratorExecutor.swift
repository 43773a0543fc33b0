import Dispatch

/// Where stream generators run: Dispatch's global queue, as a task executor preference.
///
/// Not on the event loops. A NIO loop runs every queued job before it polls for I/O again, so
/// a generator that yields to the loop every 64 tokens would be re-queued and run again before
/// the loop ever reads another frame: an unpaced stream would starve its connection (a CANCEL
/// would not be read until it ended) and every other connection on that loop.
///
/// And a preference rather than plain tasks. When the loops serve as Swift's global executor
/// (rpc-server's default), a plain task resumed by a loop runs on that loop's serial executor,
/// and each call into a nonisolated async function (the generator, the token callback) then
/// asks to move to the global executor: a trip through the loop's queue per token. With this
/// preference those calls stay where they are; only real suspensions (a full gate, the
/// generator's periodic yield, pacing) re-queue.
final class GeneratorExecutor: TaskExecutor {
  static let shared = GeneratorExecutor()

  func enqueue(_ job: consuming ExecutorJob) {
    let job = UnownedJob(job)
    DispatchQueue.global().async {
      job.runSynchronously(on: self.asUnownedTaskExecutor())
    }
  }
}
