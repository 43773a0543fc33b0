package import NIOCore

/// Runs Swift tasks on one event loop, for tasks that prefer it (`Task(executorPreference:)`).
///
/// A client task that calls a connection from its own loop needs no hand-off between threads:
/// its request is written and its answer resumes it on the thread that reads the socket; a
/// server's batch that runs on the loop of the connections it answers hands them their
/// answers directly. Plain
/// tasks cannot get this even when the loops serve as Swift's global executor, because a job
/// run by a loop runs on the loop's *serial* executor, and every call into a nonisolated
/// async function (an iterator's `next()`, a client call) must then leave it: one trip
/// through the loop's queue per call, per token of a stream. A task executor preference
/// removes those trips.
package final class LoopTaskExecutor: TaskExecutor {
  package let loop: any EventLoop

  package init(loop: any EventLoop) {
    self.loop = loop
  }

  package func enqueue(_ job: consuming ExecutorJob) {
    let job = UnownedJob(job)
    loop.execute {
      job.runSynchronously(on: self.asUnownedTaskExecutor())
    }
  }
}
