/// The error every component of `VietnameseAI` throws, apart from `CancellationError`.
///
/// It carries a ``Code`` that a server maps one to one onto a wire status, a human message, and
/// the underlying error where there is one (a model's own error, for example). `Code` is a
/// struct rather than an enum so that adding a code later never breaks a caller's `switch`.
///
/// ```swift
/// do {
///   _ = try await server.duDoan(x)
/// } catch let error as VietnameseAIError where error.code == .queueFull {
///   // shed load
/// }
/// ```
public struct VietnameseAIError: Error, Sendable, CustomStringConvertible {
  /// What went wrong, as a stable machine-readable code.
  public var code: Code
  /// What went wrong, for a person.
  public var message: String
  /// The error that caused this one, if any (for ``Code/modelFailed``, the model's error).
  public var cause: (any Error)?

  public init(code: Code, message: String, cause: (any Error)? = nil) {
    self.code = code
    self.message = message
    self.cause = cause
  }

  public var description: String {
    if let cause {
      return "\(code): \(message) (cause: \(cause))"
    }
    return "\(code): \(message)"
  }
}

extension VietnameseAIError {
  /// A stable error code.
  public struct Code: Hashable, Sendable, CustomStringConvertible {
    private enum Wrapped: String, Hashable, Sendable {
      case invalidArgument = "invalid_argument"
      case queueFull = "queue_full"
      case deadlineExceeded = "deadline_exceeded"
      case notRunning = "not_running"
      case alreadyRunning = "already_running"
      case invalidBatchOutput = "invalid_batch_output"
      case modelFailed = "model_failed"
      case tooManyClients = "too_many_clients"
      case streamTimeout = "stream_timeout"
      case generatorFailed = "generator_failed"
    }

    private let wrapped: Wrapped
    private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

    /// A parameter is out of range or malformed (a negative batch size, an unknown mode name).
    public static let invalidArgument = Code(.invalidArgument)
    /// ``MayChuBatch`` already holds `toiDaCho` waiting requests.
    public static let queueFull = Code(.queueFull)
    /// The request's deadline passed before it had a result.
    public static let deadlineExceeded = Code(.deadlineExceeded)
    /// The component is not started, or has been stopped.
    public static let notRunning = Code(.notRunning)
    /// `batDau()` was called on a component that is already running.
    public static let alreadyRunning = Code(.alreadyRunning)
    /// The batch function returned a different number of outputs than it was given inputs.
    public static let invalidBatchOutput = Code(.invalidBatchOutput)
    /// The model threw; `cause` holds its error.
    public static let modelFailed = Code(.modelFailed)
    /// ``MayChuStream`` already serves `toiDaClient` streams (or this client its own maximum).
    public static let tooManyClients = Code(.tooManyClients)
    /// A stream outlived its `timeout`.
    public static let streamTimeout = Code(.streamTimeout)
    /// The token generator threw; `cause` holds its error.
    public static let generatorFailed = Code(.generatorFailed)

    /// The code's stable snake_case name, e.g. `queue_full`.
    public var name: String { wrapped.rawValue }
    public var description: String { wrapped.rawValue }
  }
}
