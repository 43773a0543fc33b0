#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Where the subcommands write, the way Unix tools write: when the reader of standard output
/// goes away (`rpc-cli stream ... | head -5`), the program ends at once, killed by `SIGPIPE`
/// as `cat` would be (the shell sees status 141), with nothing on standard error.
///
/// SwiftNIO ignores `SIGPIPE` for its sockets, so a write to a closed pipe fails with `EPIPE`
/// instead; this turns that failure back into the signal.
enum Output {
  /// Writes `text` to standard output, unbuffered.
  static func write(_ text: String) {
    guard !text.isEmpty else { return }
    if !writeAll(text, to: STDOUT_FILENO) { endForClosedOutput() }
  }

  /// Writes `text` and a newline to standard output.
  static func line(_ text: String = "") {
    write(text + "\n")
  }

  /// Writes `text` to standard error. A closed standard error is not a reason to stop.
  static func error(_ text: String) {
    _ = writeAll(text, to: STDERR_FILENO)
  }

  /// Whether all of `text` was written (retrying short writes and interruptions).
  private static func writeAll(_ text: String, to descriptor: Int32) -> Bool {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
      let written = bytes.withUnsafeBytes { buffer in
        #if canImport(Glibc)
          Glibc.write(descriptor, buffer.baseAddress, buffer.count)
        #else
          Darwin.write(descriptor, buffer.baseAddress, buffer.count)
        #endif
      }
      if written < 0 {
        if errno == EINTR { continue }
        return false
      }
      bytes = bytes.dropFirst(written)
    }
    return true
  }

  /// Ends the process as a closed pipe ends a Unix tool: by `SIGPIPE`.
  private static func endForClosedOutput() -> Never {
    signal(SIGPIPE, SIG_DFL)
    var pipeOnly = sigset_t()
    sigemptyset(&pipeOnly)
    sigaddset(&pipeOnly, SIGPIPE)
    pthread_sigmask(SIG_UNBLOCK, &pipeOnly, nil)
    raise(SIGPIPE)
    // Not reached, unless the signal could not be delivered: the same status, as an exit.
    _exit(128 + SIGPIPE)
  }
}
