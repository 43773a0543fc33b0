import Synchronization

/// Drives a load from Swift tasks: `options.concurrency` workers per connection, each making
/// one call after another until the duration or the count runs out. `call` returns how many
/// streamed messages it received (0 for a unary call).
public func runAsyncLoad<Connection: Sendable>(
  options: LoadOptions,
  connections: [Connection],
  call: @escaping @Sendable (Connection) async throws -> Int
) async -> (LoadTally, seconds: Double) {
  let clock = ContinuousClock()
  let start = clock.now
  let end = start.advanced(by: .nanoseconds(Int64(options.duration * 1e9)))
  let issued = IssuedCount()
  let limit = options.count
  let tally = await withTaskGroup(of: LoadTally.self) { group in
    for connection in connections {
      for _ in 0..<options.concurrency {
        group.addTask {
          var tally = LoadTally()
          while true {
            if let limit {
              if issued.value.add(1, ordering: .relaxed).newValue > limit { break }
            } else if clock.now >= end {
              break
            }
            let began = clock.now
            do {
              tally.tokens += try await call(connection)
              let elapsed = (clock.now - began).components
              tally.recordSuccess(
                nanoseconds: elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000
              )
            } catch {
              tally.errors[String(describing: type(of: error)), default: 0] += 1
            }
          }
          return tally
        }
      }
    }
    var total = LoadTally()
    for await part in group { total.merge(part) }
    return total
  }
  let elapsed = (clock.now - start).components
  return (tally, Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18)
}

/// The number of calls started so far, shared by the workers of a counted run.
private final class IssuedCount: Sendable {
  let value = Atomic<Int>(0)
}
