import HTTPTypes
import Testing

@testable import VietnameseAIServer

/// The one table from serving errors to HTTP, and the bodies each API family expects.
@Suite("HTTP failures")
struct HTTPFailureTests {
  @Test(
    "every code has its status",
    arguments: [
      (ServingError.Code.invalidArgument, 400), (.unknownModel, 404), (.rateLimited, 429), (.queueFull, 503),
      (.tooManyStreams, 503), (.deadlineExceeded, 504), (.cancelled, 499), (.unavailable, 503),
      (.unauthenticated, 401), (.resourceExhausted, 413), (.internal, 500),
    ]
  )
  func statuses(code: ServingError.Code, status: Int) {
    #expect(HTTPFailure.status(of: code).code == status)
  }

  @Test("a 429 says when to retry in whole seconds, rounded up, and the policy in force")
  func rateLimitHeaders() {
    let failure = HTTPFailure(
      ServingError(.rateLimited, "slow down", retryAfter: .milliseconds(1_200)),
      policy: (limit: 100, window: .seconds(60))
    )
    #expect(failure.headers[.retryAfter] == "2")
    #expect(failure.headers[HTTPField.Name("RateLimit-Policy")!] == "\"default\";q=100;w=60")
    #expect(failure.headers[HTTPField.Name("RateLimit")!] == "\"default\";r=0;t=2")
    #expect(HTTPFailure.wholeSeconds(.seconds(3)) == 3)
    #expect(HTTPFailure.wholeSeconds(.zero) == 0)
  }

  @Test("capacity refusals say to retry in a second; a missing token asks for a bearer")
  func otherHeaders() {
    #expect(HTTPFailure(.queueFull, "full").headers[.retryAfter] == "1")
    #expect(HTTPFailure(.unauthenticated, "who").headers[.wwwAuthenticate] == "Bearer")
    #expect(HTTPFailure(.invalidArgument, "bad").headers[.retryAfter] == nil)
  }

  @Test("the OpenAI body nests message, type, param and code; the inference body is a string")
  func bodies() {
    let failure = HTTPFailure(.unknownModel, "no model \"x\"")
    #expect(
      failure.openAIJSON
        == "{\"error\":{\"message\":\"no model \\\"x\\\"\",\"type\":\"not_found_error\",\"param\":null,\"code\":\"UNKNOWN_MODEL\"}}"
    )
    #expect(failure.inferenceJSON == "{\"error\":\"no model \\\"x\\\"\"}")
  }
}
