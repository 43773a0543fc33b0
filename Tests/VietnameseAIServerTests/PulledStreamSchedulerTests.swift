import NIOCore
import NIOPosix
import TestSupport
import Testing
import VietnameseAI
@_spi(Locking) import VietnameseAIConcurrency
import VietnameseAIWire

@testable import VietnameseAIServer

/// The turns of streams pulled on an event loop, on a loop of their own: no socket, only the
/// pipe a turn waits on.
@Suite("Pulled stream scheduler")
struct PulledStreamSchedulerTests {
  /// A scheduler on one loop, and what its turns wrote.
  final class Harness: Sendable {
    /// One stream's burst, as reported.
    struct Burst: Equatable {
      var id: UInt32
      var sent: Int
      var ended: Bool
    }

    /// What the scheduler reported: each turn's bursts, and the streams that reached their
    /// limit, with whether each then held no timer that could bring it back.
    final class Log: Sendable {
      let bursts = Locked<[[Burst]]>([])
      let limited = Locked<[(id: UInt32, inert: Bool)]>([])
    }

    let loop: any EventLoop
    let streams = MayChuStream(hamSinh: { (_: String) in [String]() }, tocDoToken: .zero, toiDaClient: 100)
    let log = Log()
    private let scheduler: NIOLoopBoundBox<PulledStreamScheduler?>

    init(loop: any EventLoop) async throws {
      self.loop = loop
      let yield = try await PollYield.make(on: loop)
      let log = self.log
      scheduler = try await loop.submit {
        let box = NIOLoopBoundBox<PulledStreamScheduler?>(nil, eventLoop: loop)
        var writer = FrameWriter()
        box.value = PulledStreamScheduler(
          loop: loop,
          yield: yield,
          onTurn: {
            var turn: [Burst] = []
            box.value?.runTurn(
              write: { stream, limit in
                let (sent, run) = writer.appendTokens(requestID: stream.id, limit: limit) { stream.next() }
                return (sent, run, writer.pendingBytes)
              },
              report: { stream, sent, end in turn.append(Burst(id: stream.id, sent: sent, ended: end != nil))
              }
            )
            _ = writer.takeForFlush()
            log.bursts.withLock { $0.append(turn) }
            box.value?.resume(writable: true)
          },
          onLimit: { stream in
            _ = stream.end(.failure(CancellationError()))
            let inert = stream.isStopped && stream.paceTimer == nil && stream.limitTimer == nil
            log.limited.withLock { $0.append((stream.id, inert)) }
          }
        )
        return box
      }.get()
    }

    /// Starts stream `id` with `count` tokens.
    func start(_ id: UInt32, tokens count: Int, pace: Duration = .zero, limit: Duration? = nil) async throws {
      try await start([(id, count)], pace: pace, limit: limit)
    }

    /// Starts streams of `count` tokens each, together, in this order.
    func start(_ streams: [(id: UInt32, count: Int)], pace: Duration = .zero, limit: Duration? = nil)
      async throws
    {
      let slots = try streams.map { _ in try self.streams.admit(clientID: nil).get() }
      let scheduler = self.scheduler
      try await loop.submit {
        for (index, stream) in streams.enumerated() {
          let source = PulledTokens(
            slot: slots[index],
            tokens: AnyIterator((0..<stream.count).map { "t\($0) " }.makeIterator()),
            pace: pace,
            limit: limit.map { ($0, VietnameseAIError(code: .streamTimeout, message: "limit")) }
          )
          scheduler.value?.start(PulledStream(id: stream.id, source: source))
        }
      }.get()
    }

    var turns: [[Burst]] { log.bursts.withLock { $0 } }
    var limited: [(id: UInt32, inert: Bool)] { log.limited.withLock { $0 } }
  }

  static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

  @Test("unpaced streams take turns of 64 tokens each, in order, until each runs out")
  func unpaced() async throws {
    let harness = try await Harness(loop: Self.group.next())
    try await harness.start([(1, 150), (2, 70)])
    try await eventually("both ended") {
      harness.turns.flatMap { $0 }.filter(\.ended).count == 2
    }
    let bursts = harness.turns.flatMap { $0 }
    #expect(bursts.filter { $0.id == 1 }.map(\.sent) == [64, 64, 22])
    #expect(bursts.filter { $0.id == 2 }.map(\.sent) == [64, 6])
    #expect(bursts.filter(\.ended).map(\.id) == [2, 1])
    // Stream 1 went first in every turn both were in.
    for turn in harness.turns where turn.count == 2 { #expect(turn.map(\.id) == [1, 2]) }
    #expect(harness.streams.layThongKe().tokensSent == 220)
  }

  @Test("a paced stream gives one token per turn and ends right after its last")
  func paced() async throws {
    let harness = try await Harness(loop: Self.group.next())
    try await harness.start(7, tokens: 3, pace: .milliseconds(5))
    try await eventually("ended") { harness.turns.flatMap { $0 }.contains { $0.ended } }
    let bursts = harness.turns.flatMap { $0 }
    #expect(bursts.map(\.sent) == [1, 1, 1])
    #expect(bursts.map(\.ended) == [false, false, true])
  }

  @Test("a stream that reaches its limit is reported, and gives nothing more")
  func limit() async throws {
    let harness = try await Harness(loop: Self.group.next())
    try await harness.start(3, tokens: 1_000_000, pace: .milliseconds(50), limit: .milliseconds(120))
    try await eventually("limited") { harness.limited.map(\.id) == [3] }
    // Stopped, with no pace timer left to queue it again.
    #expect(harness.limited.first?.inert == true)
    let sent = harness.turns.flatMap { $0 }.filter { $0.id == 3 }.map(\.sent).reduce(0, +)
    #expect(sent <= 4)  // one token per 50 ms, for 120 ms at most
    // Turns go on for another stream; the limited one takes no part in them.
    try await harness.start(4, tokens: 200)
    try await eventually("the other stream ended") {
      harness.turns.flatMap { $0 }.contains { $0.id == 4 && $0.ended }
    }
    #expect(harness.turns.flatMap { $0 }.filter { $0.id == 3 }.map(\.sent).reduce(0, +) == sent)
  }
}
