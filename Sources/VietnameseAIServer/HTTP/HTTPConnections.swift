import Synchronization

/// The HTTP door's open connections, against `--max-connections`.
final class HTTPConnections: Sendable {
  let limit: Int
  private let open = Atomic<Int>(0)

  init(limit: Int) {
    self.limit = limit
  }

  var count: Int { open.load(ordering: .relaxed) }

  /// Counts a new connection; `false` if it is one too many (it still counts until it
  /// closes).
  func opened() -> Bool {
    open.wrappingAdd(1, ordering: .relaxed).newValue <= limit
  }

  func closed() {
    open.subtract(1, ordering: .relaxed)
  }
}
