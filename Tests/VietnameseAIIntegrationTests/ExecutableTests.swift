import Foundation
import Testing

/// Runs the built `rpc-server` and `rpc-cli` as separate processes, as a user would.
@Suite("The rpc-server and rpc-cli executables")
struct ExecutableTests {
  /// The directory holding the built products: the test binary's own.
  static let productsDirectory: URL = {
    let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    var directory = executable.deletingLastPathComponent()
    // On macOS the tests live inside an .xctest bundle.
    while directory.pathExtension == "xctest" || directory.lastPathComponent == "MacOS"
      || directory.lastPathComponent == "Contents"
    {
      directory.deleteLastPathComponent()
    }
    return directory
  }()

  static func product(_ name: String) throws -> URL {
    let url = productsDirectory.appendingPathComponent(name)
    guard FileManager.default.isExecutableFile(atPath: url.path) else {
      throw ProductMissing(path: url.path)
    }
    return url
  }

  struct ProductMissing: Error, CustomStringConvertible {
    var path: String
    var description: String { "\(path) is not built; run the tests with `swift test`, which builds it" }
  }

  /// Runs blocking work (reading pipes, waiting for processes) on a thread of its own, so that
  /// it never holds one of the few threads Swift's concurrency pool has, which the servers
  /// of the tests running alongside need.
  static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
      Thread { continuation.resume(with: Result { try body() }) }.start()
    }
  }

  /// Runs `rpc-cli` to completion and returns its exit code and output.
  static func cli(_ arguments: [String]) async throws -> (status: Int32, output: String, error: String) {
    try await offPool { try runCLI(arguments) }
  }

  /// Starts `rpc-cli` with its standard output and error on pipes; with `closingOutput`, the
  /// output's reading end is closed before the program starts, so nobody ever reads it.
  private static func launchCLI(_ arguments: [String], closingOutput: Bool = false) throws -> (
    Process, output: Pipe, error: Pipe
  ) {
    let process = Process()
    process.executableURL = try product("rpc-cli")
    process.arguments = arguments
    let output = Pipe()
    let error = Pipe()
    process.standardOutput = output
    process.standardError = error
    if closingOutput { try output.fileHandleForReading.close() }
    try process.run()
    return (process, output, error)
  }

  private static func runCLI(_ arguments: [String]) throws -> (status: Int32, output: String, error: String) {
    let (process, output, error) = try launchCLI(arguments)
    let out = output.fileHandleForReading.readDataToEndOfFile()
    let err = error.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (
      process.terminationStatus, String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self)
    )
  }

  /// Starts `rpc-server` with `arguments` and reads the port from its first line,
  /// `listening on HOST:PORT`.
  static func startServer(_ arguments: [String]) async throws -> (Process, port: Int) {
    let server = Process()
    server.executableURL = try product("rpc-server")
    // The HTTP door on a free port too: tests run side by side.
    server.arguments = arguments + ["--http-port", "0"]
    let output = Pipe()
    server.standardOutput = output
    server.standardError = FileHandle.nullDevice
    try server.run()
    let reader = output.fileHandleForReading
    let text = try await offPool {
      var line = Data()
      while !line.contains(UInt8(ascii: "\n")) {
        let chunk = reader.availableData
        if chunk.isEmpty { break }
        line.append(chunk)
      }
      // The first line only: the HTTP door's line may arrive in the same read.
      let newline = line.firstIndex(of: UInt8(ascii: "\n")) ?? line.endIndex
      let first = line[..<newline]
      return String(decoding: first, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
    #expect(text.hasPrefix("listening on 127.0.0.1:"), "\(text)")
    guard let port = text.split(separator: ":").last.flatMap({ Int($0) }) else {
      server.terminate()
      throw ProductMissing(path: "rpc-server printed no port: \(text)")
    }
    return (server, port)
  }

  /// Runs `rpc-cli` with a standard output that its reader closes after `keep` bytes, as
  /// `| head -c keep` does; with `keep` 0, before the program starts.
  static func cliIntoClosedPipe(_ arguments: [String], keep: Int) async throws -> (
    reason: Process.TerminationReason, status: Int32, error: String
  ) {
    try await offPool {
      let (process, output, error) = try launchCLI(arguments, closingOutput: keep == 0)
      var read = 0
      while read < keep {
        let chunk = output.fileHandleForReading.availableData
        if chunk.isEmpty { break }
        read += chunk.count
      }
      if keep > 0 { try output.fileHandleForReading.close() }
      let err = error.fileHandleForReading.readDataToEndOfFile()
      process.waitUntilExit()
      return (process.terminationReason, process.terminationStatus, String(decoding: err, as: UTF8.self))
    }
  }

  @Test("every subcommand whose reader goes away ends by SIGPIPE, quietly, as a Unix tool does")
  func closedOutput() async throws {
    // Tokens 50 ms apart: the essay's stream lasts seconds, long after its reader has left.
    let (server, port) = try await Self.startServer(["--port", "0", "--token-interval", "0.05"])
    defer { if server.isRunning { server.terminate() } }
    let commands: [(arguments: [String], keep: Int)] = [
      // An essay of a few hundred tokens; the reader leaves after the first few events.
      (["stream", "--port", "\(port)", "--sse", "Câu hỏi"], 100),
      (["stream", "--port", "\(port)", "Câu hỏi"], 10),
      // Readers that leave before anything is written.
      (["stats", "--port", "\(port)"], 0),
      (["batch", "--port", "\(port)", "--model", "echo", "một", "hai", "ba"], 0),
      (["ping", "--port", "\(port)", "--count", "3"], 0),
    ]
    for (arguments, keep) in commands {
      let run = try await Self.cliIntoClosedPipe(arguments, keep: keep)
      #expect(run.reason == .uncaughtSignal && run.status == SIGPIPE, "\(arguments): \(run)")
      #expect(run.error.isEmpty, "\(arguments): \(run.error)")
    }
    server.terminate()
    try await Self.offPool { server.waitUntilExit() }
  }

  @Test(
    "rpc-server prints its port, rpc-cli predicts, streams and reports errors with exit codes, SIGTERM exits 0"
  )
  func serverAndCLI() async throws {
    let (server, port) = try await Self.startServer([
      "--port", "0", "--token-interval", "0", "--batch-timeout", "0.001", "--rate-limit", "5",
    ])
    defer { if server.isRunning { server.terminate() } }

    let predict = try await Self.cli(["predict", "--port", "\(port)", "--model", "sim", "xin chào"])
    #expect(predict.status == 0, "\(predict.error)")
    #expect(predict.output == "XIN CHÀO\n")

    let stream = try await Self.cli([
      "stream", "--port", "\(port)", "--sse", "--model", "syllables", "một hai",
    ])
    #expect(stream.status == 0, "\(stream.error)")
    #expect(stream.output == "data: {\"token\": \"một \"}\n\ndata: {\"token\": \"hai\"}\n\ndata: [DONE]\n\n")

    let stats = try await Self.cli(["stats", "--port", "\(port)", "--json"])
    #expect(stats.status == 0)
    #expect(stats.output.contains("\"ty_le_tu_choi\""))

    // The rate limit of 5 is spent by now (predict, stream, stats, and these).
    var limited: (status: Int32, output: String, error: String)?
    for _ in 0..<5 {
      let attempt = try await Self.cli(["predict", "--port", "\(port)", "x"])
      if attempt.status != 0 {
        limited = attempt
        break
      }
    }
    #expect(limited?.status == 75, "\(String(describing: limited))")
    #expect(limited?.error.contains("RATE_LIMITED") == true)
    #expect(limited?.error.contains("retry after") == true)

    server.terminate()  // SIGTERM
    try await Self.offPool { server.waitUntilExit() }
    #expect(server.terminationReason == .exit)
    #expect(server.terminationStatus == 0)

    let refused = try await Self.cli(["ping", "--port", "\(port)"])
    #expect(refused.status == 69)
    #expect(refused.error.contains("could not connect"), "\(refused.error)")
  }
}
