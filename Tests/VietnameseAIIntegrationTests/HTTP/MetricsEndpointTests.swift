import Foundation
import TestSupport
import Testing
import VietnameseAI
import VietnameseAIClient
import VietnameseAIServer

/// `/metrics`: what a Prometheus scrape sees after some work.
@Suite("HTTP: metrics")
struct MetricsEndpointTests {
  @Test("after predicts and a stream, /metrics counts them by model, route and outcome")
  func afterWork() async throws {
    try await OpenAIEndpointTests.with { server in
      for _ in 0..<3 {
        let response = try await server.http(
          "POST",
          "/v2/models/echo/infer",
          json: HTTPAdmissionTests.infer(2)
        )
        #expect(response.status == 200)
      }
      _ = try await server.http("POST", "/v1/stream", json: #"{"prompt":"một hai ba","model":"syllables"}"#)
      let client = try await server.connect()
      _ = try await client.predict(model: "echo", input: "binary")
      let response = try await server.http("GET", "/metrics")
      #expect(response.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
      let text = response.text
      #expect(text.contains("vai:requests_total{model_name=\"echo\",outcome=\"success\"} 7"), "\(text)")
      #expect(text.contains("vai:e2e_request_latency_seconds_count{model_name=\"echo\"} 7"))
      #expect(text.contains("vai:generation_tokens_total 3"))
      #expect(text.contains("vai:time_to_first_token_seconds_count 1"))
      #expect(text.contains("vai:streams_total{outcome=\"done\"} 1"))
      #expect(text.contains("vai:open_connections{door=\"binary\"} 1.0"))
      #expect(
        text.contains(
          "http_requests_total{route=\"/v2/models/{name}/infer\",method=\"POST\",status=\"200\"} 3"
        )
      )
      #expect(text.contains("vai:rate_limit_decisions_total{decision=\"allowed\"}"))
      #expect(!text.contains("{client") && !text.contains(",client"), "no metric has a client label")
      await client.close()
    }
  }
}
