/// A stream's tokens as Server-Sent Events, as returned by ``MayChuStream/sinhSSE(_:clientID:)``.
///
/// Yields `data: {"token": "..."}\n\n` per token, then `data: [DONE]\n\n`. An error after the
/// stream was admitted becomes `data: {"error": "..."}\n\n` followed by `data: [DONE]\n\n`. It
/// throws only for a refused stream (first `next()`) and for cancellation of the reading task.
public struct SSEStream: AsyncSequence, Sendable {
  public typealias Element = String
  public typealias Failure = any Error

  let tokens: TokenStream

  public func makeAsyncIterator() -> Iterator {
    Iterator(tokens: tokens.makeAsyncIterator())
  }

  public struct Iterator: AsyncIteratorProtocol {
    private enum Phase {
      case streaming
      case doneNext
      case finished
    }

    private var tokens: TokenStream.Iterator
    private var phase = Phase.streaming

    init(tokens: TokenStream.Iterator) {
      self.tokens = tokens
    }

    public mutating func next() async throws -> String? {
      switch phase {
      case .finished:
        return nil
      case .doneNext:
        phase = .finished
        return SSEEvent.done
      case .streaming:
        do {
          if let token = try await tokens.next() { return SSEEvent.token(token) }
          phase = .finished
          return SSEEvent.done
        } catch let error as VietnameseAIError where error.code != .tooManyClients {
          phase = .doneNext
          return SSEEvent.error(error.description)
        } catch {
          // Refusal or cancellation of the reader: nobody is waiting for events any more.
          phase = .finished
          throw error
        }
      }
    }
  }
}
