import NIOCore
import Testing

@testable import VietnameseAIServer

/// Open Inference Protocol requests, in JSON and in Triton's binary extension.
@Suite("Inference requests")
struct InferenceRequestTests {
  static func strings(_ request: InferenceRequest) -> [String] {
    request.inputs.map { String(buffer: $0) }
  }

  @Test("a JSON BYTES tensor of shape [N] or [N, 1] is N inputs, nested or flat")
  func json() throws {
    let flat = try InferenceRequest.parse(
      ByteBuffer(
        string: #"{"id":"7","inputs":[{"name":"T","shape":[2],"datatype":"BYTES","data":["a","b"]}]}"#
      ),
      headerLength: nil
    ).get()
    #expect(
      Self.strings(flat) == ["a", "b"] && flat.id == "7" && !flat.binaryOutput && flat.outputName == "OUTPUT"
    )
    let nested = try InferenceRequest.parse(
      ByteBuffer(
        string:
          #"{"inputs":[{"name":"T","shape":[2,1],"datatype":"BYTES","data":[["a"],["b"]]}],"outputs":[{"name":"E"}]}"#
      ),
      headerLength: nil
    ).get()
    #expect(Self.strings(nested) == ["a", "b"] && nested.outputName == "E")
  }

  @Test("a binary BYTES tensor follows the JSON: 4-byte little-endian lengths, then the bytes")
  func binary() throws {
    let json =
      #"{"inputs":[{"name":"T","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":11}}],"parameters":{"binary_data_output":true,"timeout":250000}}"#
    var body = ByteBuffer(string: json)
    body.writeInteger(UInt32(2), endianness: .little)
    body.writeString("xy")
    body.writeInteger(UInt32(1), endianness: .little)
    body.writeBytes([0xFF])
    let request = try InferenceRequest.parse(body, headerLength: json.utf8.count).get()
    #expect(request.inputs.map { Array($0.readableBytesView) } == [Array("xy".utf8), [0xFF]])
    #expect(request.binaryOutput && request.timeoutMicroseconds == 250_000)
  }

  @Test(
    "malformed tensors are refused with a message that says what is wrong",
    arguments: [
      (#"{"inputs":[]}"#, "one input tensor"),
      (#"{"inputs":[{"name":"T","shape":[1],"datatype":"FP32","data":[1]}]}"#, "must be BYTES"),
      (#"{"inputs":[{"name":"T","shape":[2,3],"datatype":"BYTES","data":["a"]}]}"#, "shape [N] or [N, 1]"),
      (#"{"inputs":[{"name":"T","shape":[3],"datatype":"BYTES","data":["a"]}]}"#, "has 1 elements"),
      (#"{"inputs":[{"name":"T","shape":[1],"datatype":"BYTES","data":[1]}]}"#, "must be strings"),
      (#"{"inputs":[{"name":"T","shape":[1],"datatype":"BYTES"}]}"#, "neither data"),
      (
        #"{"inputs":[{"name":"T","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":9}}]}"#,
        "exceeds"
      ),
      (#"{"inputs":"x"}"#, "inputs must be an array"),
      ("not json", "not valid JSON"),
    ]
  )
  func refused(body: String, message: String) {
    guard case .failure(let error) = InferenceRequest.parse(ByteBuffer(string: body), headerLength: nil)
    else {
      Issue.record("accepted: \(body)")
      return
    }
    #expect(error.code == .invalidArgument)
    #expect(error.message.contains(message), "\(error.message)")
  }

  @Test("binary elements must fill their declared size exactly")
  func binaryLengths() {
    let json =
      #"{"inputs":[{"name":"T","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":6}}]}"#
    var body = ByteBuffer(string: json)
    body.writeInteger(UInt32(9), endianness: .little)
    body.writeString("ab")
    let result = InferenceRequest.parse(body, headerLength: json.utf8.count)
    guard case .failure(let error) = result else {
      Issue.record("accepted")
      return
    }
    #expect(error.message.contains("shorter"))
  }
}
