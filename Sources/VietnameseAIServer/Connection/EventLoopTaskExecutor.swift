import NIOCore

/// Runs Swift tasks on one event loop, as a task executor preference.
///
/// Stream generators run with their connection's loop as preferred executor: a token is then
/// produced, queued and written on one thread. Without a preference, a task running on an
/// event loop that serves as Swift's global executor is resumed "on the loop", and every
/// call into a nonisolated async function (the generator, the token callback) asks to move
/// to the global executor, which costs a round through the loop's queue per token. With the
/// preference, those calls stay where they are; only real suspensions (a full gate, the
/// generator's periodic yield, pacing) go through the queue.
final class EventLoopTaskExecutor: TaskExecutor {
  let loop: any EventLoop

  init(loop: any EventLoop) {
    self.loop = loop
  }

  func enqueue(_ job: consuming ExecutorJob) {
    let job = UnownedJob(job)
    loop.execute {
      job.runSynchronously(on: self.asUnownedTaskExecutor())
    }
  }
}
