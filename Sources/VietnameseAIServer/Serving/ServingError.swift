import VietnameseAI

/// Why the serving core refused or failed a request, in terms every front door maps onto its
/// own protocol: a status on the binary protocol, an HTTP status on the HTTP door.
///
/// The core turns every failure into one of these (``init(_:)``), so a door never inspects the
/// components' own errors.
struct ServingError: Error, Sendable, Equatable, CustomStringConvertible {
  /// What went wrong. An enum, not a struct of constants: it is not public API, and each door's
  /// exhaustive `switch` over it is what makes a new code impossible to forget.
  enum Code: Sendable, Hashable {
    /// A field of the request is unacceptable, or the request can never succeed as sent.
    case invalidArgument
    /// No model or generator of that name.
    case unknownModel
    /// The client's rate limit is exhausted; ``ServingError/retryAfter`` says for how long.
    case rateLimited
    /// The model's batching queue is full.
    case queueFull
    /// Too many streams at once, on the server or for this client.
    case tooManyStreams
    /// The request's deadline passed.
    case deadlineExceeded
    /// The client gave the request up.
    case cancelled
    /// The server is shutting down or not serving.
    case unavailable
    /// The server had begun draining when the request arrived: it never started it, so the
    /// request may be sent to another server.
    case refused
    /// A missing or unknown auth token.
    case unauthenticated
    /// A limit of the connection was reached (requests in flight, the size of an answer).
    case resourceExhausted
    /// The model or generator failed, or the server did.
    case `internal`
  }

  var code: Code
  var message: String
  /// For ``Code/rateLimited``: how long until a request of the same cost would be allowed.
  var retryAfter: Duration?

  init(_ code: Code, _ message: String, retryAfter: Duration? = nil) {
    self.code = code
    self.message = message
    self.retryAfter = retryAfter
  }

  /// The serving error for any failure of a component: a ``VietnameseAIError``, a model's
  /// ``ServedModel/InputError``, a cancellation, or anything a model threw.
  init(_ error: any Error) {
    switch error {
    case let error as ServingError:
      self = error
    case let error as VietnameseAIError:
      if error.code == .modelFailed, let cause = error.cause as? ServingError {
        // A model served by a worker fails with the worker's own status.
        self = cause
        return
      }
      var message = error.message
      if let cause = error.cause { message += ": \(cause)" }
      self.init(Self.code(for: error.code), message)
    case is CancellationError:
      self.init(.cancelled, "cancelled by the client")
    case let error as ServedModel.InputError:
      self.init(.invalidArgument, error.description)
    default:
      self.init(.internal, "internal error: \(error)")
    }
  }

  private static func code(for code: VietnameseAIError.Code) -> Code {
    switch code {
    case .queueFull: .queueFull
    case .deadlineExceeded, .streamTimeout: .deadlineExceeded
    case .notRunning: .unavailable
    case .invalidArgument: .invalidArgument
    case .tooManyClients: .tooManyStreams
    default: .internal
    }
  }

  var description: String { "\(code): \(message)" }
}
