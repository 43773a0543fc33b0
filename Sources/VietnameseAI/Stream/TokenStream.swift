/// The tokens of one prompt, as returned by ``MayChuStream/sinhStream(_:clientID:)``.
///
/// Each iteration is a new stream: `makeAsyncIterator()` takes a client slot and starts the
/// generator; the iterator's end, its task's cancellation or its release gives the slot back.
public struct TokenStream: AsyncSequence, Sendable {
  public typealias Element = String
  public typealias Failure = any Error

  let server: MayChuStream
  let prompt: String
  let clientID: String?

  public func makeAsyncIterator() -> Iterator {
    let channel = TokenChannel(capacity: MayChuStream.bufferedTokens)
    let started = server.begin(
      prompt: prompt,
      clientID: clientID,
      deliver: { try await channel.send($0) },
      onEnd: { channel.finish($0) }
    )
    switch started {
    case .success(let session):
      return Iterator(consumer: Consumer(channel: channel, session: session), rejection: nil)
    case .failure(let error):
      return Iterator(consumer: nil, rejection: error)
    }
  }

  public struct Iterator: AsyncIteratorProtocol {
    private let consumer: Consumer?
    private var rejection: VietnameseAIError?

    init(consumer: Consumer?, rejection: VietnameseAIError?) {
      self.consumer = consumer
      self.rejection = rejection
    }

    public mutating func next() async throws -> String? {
      if let rejection {
        self.rejection = nil
        throw rejection
      }
      return try await consumer?.next()
    }
  }

  /// The consuming end of one stream. Its release means nobody reads any more.
  final class Consumer: Sendable {
    private let channel: TokenChannel
    private let session: PhienStream

    init(channel: TokenChannel, session: PhienStream) {
      self.channel = channel
      self.session = session
    }

    func next() async throws -> String? {
      do {
        return try await channel.next()
      } catch let error as CancellationError {
        session.huy()
        throw error
      }
    }

    deinit {
      channel.consumerGone()
      session.huy()
    }
  }
}
