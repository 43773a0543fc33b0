import Foundation
import NIOCore
import TestSupport
import Testing
import VietnameseAI
import VietnameseAIClient
import VietnameseAIServer

/// The Open Inference Protocol endpoints, over loopback.
@Suite("HTTP: Open Inference Protocol")
struct InferenceEndpointTests {
  static func with(_ body: (TestServer) async throws -> Void) async throws {
    try await OpenAIEndpointTests.with({ _ in }, body)
  }

  @Test("health, server metadata, model metadata and readiness")
  func metadata() async throws {
    try await Self.with { server in
      #expect(try await server.http("GET", "/v2/health/live").status == 200)
      #expect(try await server.http("GET", "/v2/health/ready").status == 200)
      #expect(try await server.http("GET", "/health").status == 200)
      let extensions = try await server.http("GET", "/v2").json()["extensions"] as? [String]
      #expect(extensions == ["binary_tensor_data"])
      let embed = try await server.http("GET", "/v2/models/embed").json()
      let output = (embed["outputs"] as? [[String: Any]])?.first
      #expect(output?["datatype"] as? String == "FP32" && output?["shape"] as? [Int] == [-1, 64])
      #expect(try await server.http("GET", "/v2/models/echo/ready").status == 200)
      #expect(try await server.http("GET", "/v2/models/echo/versions/1/ready").status == 200)
      #expect(try await server.http("GET", "/v2/models/nope/ready").status == 404)
      #expect(try await server.http("GET", "/v2/models/echo/versions/2").status == 404)
    }
  }

  @Test("a JSON infer of N texts is N inputs, answered in order")
  func jsonInfer() async throws {
    try await Self.with { server in
      let response = try await server.http(
        "POST",
        "/v2/models/sim/infer",
        json:
          #"{"id":"r1","inputs":[{"name":"TEXT","shape":[3],"datatype":"BYTES","data":["một","hai","ba"]}]}"#
      )
      #expect(response.status == 200)
      let object = try response.json()
      #expect(object["id"] as? String == "r1" && object["model_name"] as? String == "sim")
      let output = (object["outputs"] as? [[String: Any]])?.first
      #expect(output?["data"] as? [String] == ["MỘT", "HAI", "BA"])
      #expect(output?["shape"] as? [Int] == [3])
    }
  }

  @Test("a binary infer (Triton's extension) answers in binary, FP32 rows for a vector model")
  func binaryInfer() async throws {
    try await Self.with { server in
      var tensor: [UInt8] = []
      for text in ["xin chào", "ba"] {
        let bytes = Array(text.utf8)
        withUnsafeBytes(of: UInt32(bytes.count).littleEndian) { tensor.append(contentsOf: $0) }
        tensor.append(contentsOf: bytes)
      }
      let json =
        #"{"inputs":[{"name":"TEXT","shape":[2,1],"datatype":"BYTES","parameters":{"binary_data_size":"#
        + "\(tensor.count)" + #"}}],"outputs":[{"name":"EMB","parameters":{"binary_data":true}}]}"#
      let body = Array(json.utf8) + tensor
      let response = try await server.http(
        "POST",
        "/v2/models/embed/infer",
        headers: [("Inference-Header-Content-Length", "\(json.utf8.count)")],
        body: body
      )
      #expect(response.status == 200)
      let headerLength = Int(response.headers["inference-header-content-length"] ?? "") ?? 0
      let header =
        try JSONSerialization.jsonObject(with: Data(response.body[..<headerLength])) as? [String: Any]
      let output = (header?["outputs"] as? [[String: Any]])?.first
      #expect(output?["name"] as? String == "EMB" && output?["shape"] as? [Int] == [2, 64])
      let size = (output?["parameters"] as? [String: Int])?["binary_data_size"]
      #expect(size == 2 * 64 * 4 && response.body.count == headerLength + 2 * 64 * 4)
      let first = ByteBuffer(bytes: response.body[headerLength..<headerLength + 256])
      let expected = BuiltinModels.trigramVector("xin chào", dimensions: 64)
      #expect(VectorTextProbe.floats(first) == expected)
    }
  }

  @Test("bad tensors are 400 with an error string; an unknown model 404")
  func errors() async throws {
    try await Self.with { server in
      let wrongType = try await server.http(
        "POST",
        "/v2/models/echo/infer",
        json: #"{"inputs":[{"name":"X","shape":[1],"datatype":"INT32","data":[1]}]}"#
      )
      #expect(wrongType.status == 400)
      #expect(try wrongType.errorMessage().contains("BYTES"))
      let unknown = try await server.http("POST", "/v2/models/nope/infer", json: "{}")
      #expect(unknown.status == 404)
      #expect(try unknown.errorMessage().contains("nope"))
    }
  }
}

/// Floats of little-endian binary32 bytes.
enum VectorTextProbe {
  static func floats(_ bytes: ByteBuffer) -> [Float] {
    var bytes = bytes
    var values: [Float] = []
    while let bits = bytes.readInteger(endianness: .little, as: UInt32.self) {
      values.append(Float(bitPattern: bits))
    }
    return values
  }
}

extension InferenceEndpointTests {
  @Test("a client that leaves while its infer is queued withdraws it: it never reaches the model")
  func disconnectWithdraws() async throws {
    let gate = Gate()
    try await OpenAIEndpointTests.with(models: [gatedModel(gate: gate)]) { server in
      let body = Array(#"{"inputs":[{"name":"TEXT","shape":[1],"datatype":"BYTES","data":["x"]}]}"#.utf8)
      let running = try await HTTPConnection.connect(port: server.httpPort!)
      try await running.send("POST", "/v2/models/gated/infer", body: body)
      try await eventually("the first infer reached the model") { gate.entered == 1 }
      let leaving = try await HTTPConnection.connect(port: server.httpPort!)
      try await leaving.send("POST", "/v2/models/gated/infer", body: body)
      try await eventually("the second infer is queued") {
        (try? server.statistics().batch["queue_size"]) == 1
      }
      await leaving.close()
      try await eventually("the server withdrew it") {
        let batch = try? server.statistics().batch
        return batch?["cancelled"] == 1 && batch?["queue_size"] == 0
      }
      gate.open()
      #expect(try await running.response().status == 200)
      #expect(gate.entered == 1, "the withdrawn infer must never reach the model")
      await running.close()
    }
  }
}

extension InferenceEndpointTests {
  @Test("a request that expects 100-continue gets it before it sends its body, as curl's large uploads do")
  func expectContinue() async throws {
    try await Self.with { server in
      let body = #"{"inputs":[{"name":"TEXT","shape":[1],"datatype":"BYTES","data":["chờ"]}]}"#
      let connection = try await HTTPConnection.connect(port: server.httpPort!)
      try await connection.send(
        "POST /v2/models/echo/infer HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
          + "Content-Length: \(body.utf8.count)\r\n\r\n"
      )
      try await connection.waitFor("HTTP/1.1 100 Continue\r\n\r\n")
      #expect(!connection.receivedText.contains("200"))
      try await connection.send(body)
      try await connection.waitFor("\"data\":[\"chờ\"]")
      #expect(connection.receivedText.contains("HTTP/1.1 200 OK"))
      await connection.close()
    }
  }
}
