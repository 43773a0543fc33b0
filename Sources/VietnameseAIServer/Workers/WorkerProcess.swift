import Foundation
import Logging
@_spi(Locking) import VietnameseAIConcurrency

/// One spawned worker process (`Protocol/PROTOCOL.md` §11.5): `/bin/sh -c COMMAND`, in a
/// process group of its own (Foundation's `Process` makes one), which every signal goes to,
/// so that the command and anything it started stop together; restarted when it exits while
/// the server runs, after a delay that doubles from 0.1 s to 10 s and starts again once a
/// process has lived a minute; its standard output and error go to the log, line by line.
final class WorkerProcess: Sendable {
  let model: String
  let command: String
  let token: String
  private let environment: [String: String]
  private let logger: Logger
  private let state = Locked(State())

  private struct State {
    var process: Process?
    var stopping = false
    var exits: [CheckedContinuation<Void, Never>] = []
  }

  static let firstDelay = Duration.milliseconds(100)
  static let longestDelay = Duration.seconds(10)
  static let healthyAfter = Duration.seconds(60)

  init(model: String, command: String, token: String, environment: [String: String], logger: Logger) {
    self.model = model
    self.command = command
    self.token = token
    self.environment = environment
    self.logger = logger
  }

  private var isStopping: Bool { state.withLock { $0.stopping } }

  /// Whether a process of this command is running now.
  var isRunning: Bool { state.withLock { $0.process != nil } }

  /// Keeps the process running until ``stop(grace:)``.
  func supervise() async {
    var delay = Self.firstDelay
    while !isStopping {
      let started = ContinuousClock.now
      let status = await runOnce()
      if isStopping { return }
      if ContinuousClock.now - started >= Self.healthyAfter { delay = Self.firstDelay }
      logger.warning(
        "worker exited; restarting it",
        metadata: ["model": "\(model)", "status": "\(status)", "after": "\(delay)"]
      )
      try? await Task.sleep(for: delay)
      delay = min(delay * 2, Self.longestDelay)
    }
  }

  /// Runs the command once; returns how it ended.
  private func runOnce() async -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command]
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    process.standardInput = FileHandle.nullDevice
    let lines = LineLogger(model: model, logger: logger)
    output.fileHandleForReading.readabilityHandler = { handle in
      let data = handle.availableData
      if data.isEmpty {
        handle.readabilityHandler = nil
        lines.flush()
      } else {
        lines.append(data)
      }
    }
    return await withCheckedContinuation { (continuation: CheckedContinuation<String, Never>) in
      process.terminationHandler = { [self] ended in
        let status =
          ended.terminationReason == .uncaughtSignal
          ? "killed by signal \(ended.terminationStatus)" : "exit code \(ended.terminationStatus)"
        let waiters = state.withLock { state in
          state.process = nil
          defer { state.exits = [] }
          return state.exits
        }
        for waiter in waiters { waiter.resume() }
        continuation.resume(returning: status)
      }
      do {
        let stopping = state.withLock { state in
          if !state.stopping { state.process = process }
          return state.stopping
        }
        if stopping {
          continuation.resume(returning: "not started: the server is stopping")
          return
        }
        try process.run()
        logger.info("worker started", metadata: ["model": "\(model)", "pid": "\(process.processIdentifier)"])
      } catch {
        state.withLock { $0.process = nil }
        continuation.resume(returning: "could not start: \(error)")
      }
    }
  }

  /// Lets the process end without starting another: the first step of a shutdown.
  func stopRestarting() {
    state.withLock { $0.stopping = true }
  }

  /// Kills the running process at once (a hung worker); ``supervise()`` starts another.
  func kill() {
    guard let process = state.withLock({ $0.process }), process.isRunning else { return }
    Foundation.kill(-process.processIdentifier, SIGKILL)
  }

  /// Stops supervising: `SIGTERM` to the process group, then `SIGKILL` to whatever is left of
  /// it once the process has exited or `grace` has passed. Returns once it has exited.
  func stop(grace: Duration) async {
    let process = state.withLock { state in
      state.stopping = true
      return state.process
    }
    guard let process, process.isRunning else { return }
    let group = -process.processIdentifier
    Foundation.kill(group, SIGTERM)
    let exited = Task {
      await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let running = state.withLock { state in
          if state.process == nil { return false }
          state.exits.append(continuation)
          return true
        }
        if !running { continuation.resume() }
      }
    }
    let timer = Task {
      try await Task.sleep(for: grace)
      logger.warning("worker ignored SIGTERM; killing it", metadata: ["model": "\(model)"])
      Foundation.kill(group, SIGKILL)
    }
    await exited.value
    timer.cancel()
    // What the command started and left behind goes too.
    Foundation.kill(group, SIGKILL)
  }
}

/// Cuts a process's output into lines for the log.
private final class LineLogger: Sendable {
  let model: String
  let logger: Logger
  private let pending = Locked(Data())

  init(model: String, logger: Logger) {
    self.model = model
    self.logger = logger
  }

  func append(_ data: Data) {
    let lines = pending.withLock { pending -> [Data] in
      pending.append(data)
      var lines: [Data] = []
      while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
        lines.append(pending[pending.startIndex..<newline])
        pending.removeSubrange(pending.startIndex...newline)
      }
      // A line that never ends is logged in pieces rather than held without bound.
      if pending.count > 16_384 {
        lines.append(pending)
        pending = Data()
      }
      return lines
    }
    for line in lines { log(line) }
  }

  func flush() {
    let rest = pending.withLock { pending in
      defer { pending = Data() }
      return pending
    }
    if !rest.isEmpty { log(rest) }
  }

  private func log(_ line: Data) {
    logger.info("\(String(decoding: line, as: UTF8.self))", metadata: ["model": "\(model)"])
  }
}
