import HTTPTypes
import Hummingbird
import NIOCore
import VietnameseAI
import VietnameseAIWire

/// A ``ServingError`` as the HTTP door answers it: one status per code (the README's table),
/// the headers that go with it, and the body in the shape each API family expects.
struct HTTPFailure: Error {
  var error: ServingError
  /// The rate limit in force, for the `RateLimit-Policy` header of a 429.
  var policy: (limit: Int, window: Duration)?

  init(_ error: ServingError, policy: (limit: Int, window: Duration)? = nil) {
    self.error = error
    self.policy = policy
  }

  init(_ code: ServingError.Code, _ message: String) {
    self.init(ServingError(code, message))
  }

  /// The status of every code. Queue full and too many streams are 503, like draining: the
  /// server is out of capacity, not the client out of its quota, and 429 stays the answer to
  /// one thing, the client's own rate limit, so a client or a dashboard can tell the two
  /// apart. Both carry `Retry-After`, which the OpenAI SDK honours for either status.
  static func status(of code: ServingError.Code) -> HTTPResponse.Status {
    switch code {
    case .invalidArgument: .badRequest
    case .unknownModel: .notFound
    case .rateLimited: .tooManyRequests
    case .queueFull, .tooManyStreams, .unavailable, .refused: .serviceUnavailable
    case .deadlineExceeded: .gatewayTimeout
    case .cancelled: HTTPResponse.Status(code: 499, reasonPhrase: "Client Closed Request")
    case .unauthenticated: .unauthorized
    case .resourceExhausted: .contentTooLarge
    case .internal: .internalServerError
    }
  }

  /// The OpenAI error `type` of every code.
  static func openAIType(of code: ServingError.Code) -> String {
    switch code {
    case .invalidArgument, .resourceExhausted: "invalid_request_error"
    case .unknownModel: "not_found_error"
    case .rateLimited: "rate_limit_error"
    case .queueFull, .tooManyStreams, .unavailable, .refused: "service_unavailable_error"
    case .deadlineExceeded: "timeout_error"
    case .cancelled: "cancelled_error"
    case .unauthenticated: "authentication_error"
    case .internal: "server_error"
    }
  }

  var status: HTTPResponse.Status { Self.status(of: error.code) }

  /// The protocol's name of the code (`RATE_LIMITED`, ...), the OpenAI error's `code`.
  var codeName: String { "\(StatusCode(error.code))" }

  var headers: HTTPFields {
    var headers = HTTPFields()
    switch error.code {
    case .rateLimited:
      let retry = Self.wholeSeconds(error.retryAfter ?? .zero)
      headers[.retryAfter] = "\(retry)"
      if let policy {
        let window = Self.wholeSeconds(policy.window)
        headers[HTTPField.Name("RateLimit-Policy")!] = "\"default\";q=\(policy.limit);w=\(window)"
        headers[HTTPField.Name("RateLimit")!] = "\"default\";r=0;t=\(retry)"
      }
    case .queueFull, .tooManyStreams, .unavailable, .refused:
      headers[.retryAfter] = "1"
    case .unauthenticated:
      headers[.wwwAuthenticate] = "Bearer"
    default:
      break
    }
    return headers
  }

  /// `duration` in whole seconds, rounded up: a client that waits that long is let through.
  static func wholeSeconds(_ duration: Duration) -> Int64 {
    let (seconds, attoseconds) = duration.components
    return max(seconds + (attoseconds > 0 ? 1 : 0), 0)
  }

  /// `{"error": {"message", "type", "param", "code"}}`, as OpenAI's API answers.
  var openAIJSON: String {
    "{\"error\":{\"message\":\(SSEEvent.jsonString(error.message)),\"type\":\"\(Self.openAIType(of: error.code))\",\"param\":null,\"code\":\"\(codeName)\"}}"
  }

  /// `{"error": "..."}`, as the Open Inference Protocol answers.
  var inferenceJSON: String {
    "{\"error\":\(SSEEvent.jsonString(error.message))}"
  }

  func openAIResponse() -> Response {
    HTTPDoor.json(status, openAIJSON, headers: headers)
  }

  func inferenceResponse() -> Response {
    HTTPDoor.json(status, inferenceJSON, headers: headers)
  }
}
