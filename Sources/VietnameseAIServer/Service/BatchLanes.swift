import NIOCore
import VietnameseAIConcurrency
import VietnameseAIWire

/// Each event loop's lane in the models' batchers (see `BatchSink`).
///
/// Connections of one loop queue their requests in that loop's lane, and a batch formed for
/// the lane runs on the loop: with the batch's answers mostly for connections of the loop it
/// ran on, they are written without a hop to another thread.
struct BatchLanes: Sendable {
  struct Lane: Sendable {
    let index: Int
    /// Where the lane's batches run; `nil` leaves it to Swift's global executor.
    let executor: (any TaskExecutor)?
  }

  private let byLoop: [ObjectIdentifier: Lane]

  /// Numbers the loops of `group`; with `runOnLoops`, each lane's batches run on its loop.
  init(group: any EventLoopGroup, runOnLoops: Bool) {
    var byLoop: [ObjectIdentifier: Lane] = [:]
    for loop in group.makeIterator() {
      byLoop[ObjectIdentifier(loop)] = Lane(
        index: byLoop.count,
        executor: runOnLoops ? LoopTaskExecutor(loop: loop) : nil
      )
    }
    self.byLoop = byLoop
  }

  /// The lane of `loop`; a loop from outside the group shares lane 0.
  func lane(for loop: any EventLoop) -> Lane {
    byLoop[ObjectIdentifier(loop)] ?? Lane(index: 0, executor: nil)
  }
}
