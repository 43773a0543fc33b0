import NIOCore

/// An Open Inference Protocol `infer` request, in JSON or in Triton's binary tensor extension,
/// reduced to what a served model takes: one `BYTES` tensor of N elements, N inputs.
struct InferenceRequest {
  var id: String?
  var inputs: [ByteBuffer]
  /// The name the answer's tensor takes.
  var outputName: String
  /// Whether the answer's tensor goes in binary, after the JSON.
  var binaryOutput: Bool
  /// Triton's `timeout` parameter, in microseconds.
  var timeoutMicroseconds: Double?

  /// The JSON of a request, as far as it is read.
  private struct Header {
    var id: String?
    var parameters: [String: JSONValue]
    var inputs: [Tensor]
    var outputs: [Output]

    struct Tensor {
      var name: String
      var shape: [Int]
      var datatype: String
      var parameters: [String: JSONValue]
      var data: JSONValue?
    }

    struct Output {
      var name: String
      var parameters: [String: JSONValue]
    }

    init(_ json: JSONValue) throws(ServingError) {
      let fields = try Self.object(json, "the body")
      id = try fields["id"].map { value throws(ServingError) in try Self.string(value, "id") }
      parameters =
        try fields["parameters"].map { value throws(ServingError) in try Self.object(value, "parameters") }
        ?? [:]
      guard let inputs = fields["inputs"] else { throw ServingError(.invalidArgument, "inputs is required") }
      self.inputs = try Self.array(inputs, "inputs").enumerated().map { index, value throws(ServingError) in
        let path = "inputs[\(index)]"
        let tensor = try Self.object(value, path)
        return Tensor(
          name: try Self.string(tensor["name"], "\(path).name"),
          shape: try Self.array(tensor["shape"], "\(path).shape").map { dimension throws(ServingError) in
            guard case .number(let size) = dimension, let exact = Int(exactly: size) else {
              throw ServingError(.invalidArgument, "\(path).shape must be an array of integers")
            }
            return exact
          },
          datatype: try Self.string(tensor["datatype"], "\(path).datatype"),
          parameters: try tensor["parameters"].map { value throws(ServingError) in
            try Self.object(value, "\(path).parameters")
          } ?? [:],
          data: tensor["data"]
        )
      }
      outputs =
        try fields["outputs"].map { value throws(ServingError) in
          try Self.array(value, "outputs").enumerated().map { index, value throws(ServingError) in
            let output = try Self.object(value, "outputs[\(index)]")
            return Output(
              name: try Self.string(output["name"], "outputs[\(index)].name"),
              parameters: try output["parameters"].map { value throws(ServingError) in
                try Self.object(value, "outputs[\(index)].parameters")
              } ?? [:]
            )
          }
        } ?? []
    }

    private static func object(_ value: JSONValue?, _ path: String) throws(ServingError) -> [String:
      JSONValue]
    {
      guard let value else { throw ServingError(.invalidArgument, "\(path) is required") }
      guard case .object(let fields) = value else {
        throw ServingError(.invalidArgument, "\(path) must be an object")
      }
      return fields
    }

    private static func array(_ value: JSONValue?, _ path: String) throws(ServingError) -> [JSONValue] {
      guard let value else { throw ServingError(.invalidArgument, "\(path) is required") }
      guard case .array(let elements) = value else {
        throw ServingError(.invalidArgument, "\(path) must be an array")
      }
      return elements
    }

    private static func string(_ value: JSONValue?, _ path: String) throws(ServingError) -> String {
      guard let value else { throw ServingError(.invalidArgument, "\(path) is required") }
      guard case .string(let text) = value else {
        throw ServingError(.invalidArgument, "\(path) must be a string")
      }
      return text
    }
  }

  /// Reads a request whose JSON takes the first `headerLength` bytes of `body` (the
  /// `Inference-Header-Content-Length` header; `nil` when the whole body is JSON).
  static func parse(_ body: ByteBuffer, headerLength: Int?) -> Result<
    InferenceRequest, ServingError
  > {
    var json = body
    var binary = ByteBuffer()
    if let headerLength {
      guard headerLength > 0, headerLength <= body.readableBytes else {
        return .failure(
          ServingError(
            .invalidArgument,
            "Inference-Header-Content-Length must be within the body (1...\(body.readableBytes))"
          )
        )
      }
      json = body.getSlice(at: body.readerIndex, length: headerLength)!
      binary = body.getSlice(at: body.readerIndex + headerLength, length: body.readableBytes - headerLength)!
    }
    let header: Header
    switch JSONParser.parse(json) {
    case .success(let value):
      do throws(ServingError) {
        header = try Header(value)
      } catch {
        return .failure(error)
      }
    case .failure(let failure):
      return .failure(
        ServingError(
          .invalidArgument,
          "the body is not valid JSON: \(failure.reason) at byte \(failure.offset)"
        )
      )
    }
    guard header.inputs.count == 1, let tensor = header.inputs.first else {
      return .failure(
        ServingError(.invalidArgument, "one input tensor is expected, got \(header.inputs.count)")
      )
    }
    guard tensor.datatype == "BYTES" else {
      return .failure(
        ServingError(.invalidArgument, "input \(tensor.name) must be BYTES, not \(tensor.datatype)")
      )
    }
    guard !tensor.shape.isEmpty, tensor.shape.allSatisfy({ $0 >= 0 }), tensor.shape.count <= 2,
      tensor.shape.count == 1 || tensor.shape[1] == 1
    else {
      return .failure(ServingError(.invalidArgument, "input \(tensor.name) must have shape [N] or [N, 1]"))
    }
    let count = tensor.shape[0]
    guard count >= 1 else { return .failure(ServingError(.invalidArgument, "input \(tensor.name) is empty")) }
    let inputs: [ByteBuffer]
    if let size = tensor.parameters["binary_data_size"] {
      guard case .number(let bytes) = size, bytes >= 0, bytes <= Double(binary.readableBytes) else {
        return .failure(
          ServingError(.invalidArgument, "binary_data_size of \(tensor.name) exceeds the binary data sent")
        )
      }
      switch Self.elements(binary.getSlice(at: binary.readerIndex, length: Int(bytes))!, count: count) {
      case .success(let elements): inputs = elements
      case .failure(let error): return .failure(error)
      }
    } else {
      guard let data = tensor.data else {
        return .failure(
          ServingError(.invalidArgument, "input \(tensor.name) has neither data nor binary_data_size")
        )
      }
      let leaves = data.flattened()
      guard leaves.count == count else {
        return .failure(
          ServingError(
            .invalidArgument,
            "input \(tensor.name) has \(leaves.count) elements, its shape says \(count)"
          )
        )
      }
      var elements: [ByteBuffer] = []
      elements.reserveCapacity(count)
      for leaf in leaves {
        guard case .string(let text) = leaf else {
          return .failure(
            ServingError(.invalidArgument, "the elements of BYTES input \(tensor.name) must be strings")
          )
        }
        elements.append(ByteBuffer(string: text))
      }
      inputs = elements
    }
    var binaryOutput = false
    if case .bool(true)? = header.parameters["binary_data_output"] { binaryOutput = true }
    if case .bool(let wanted)? = header.outputs.first?.parameters["binary_data"] { binaryOutput = wanted }
    var timeout: Double?
    if let value = header.parameters["timeout"] {
      guard case .number(let micros) = value, micros > 0 else {
        return .failure(
          ServingError(.invalidArgument, "parameters.timeout must be a positive number of microseconds")
        )
      }
      timeout = micros
    }
    return .success(
      InferenceRequest(
        id: header.id,
        inputs: inputs,
        outputName: header.outputs.first?.name ?? "OUTPUT",
        binaryOutput: binaryOutput,
        timeoutMicroseconds: timeout
      )
    )
  }

  /// The `count` elements of a binary BYTES tensor: each a 4-byte little-endian length, then
  /// that many bytes.
  private static func elements(_ bytes: ByteBuffer, count: Int) -> Result<[ByteBuffer], ServingError> {
    var bytes = bytes
    var elements: [ByteBuffer] = []
    elements.reserveCapacity(count)
    for _ in 0..<count {
      guard let length = bytes.readInteger(endianness: .little, as: UInt32.self),
        let element = bytes.readSlice(length: Int(length))
      else {
        return .failure(
          ServingError(.invalidArgument, "the binary BYTES tensor is shorter than its elements say")
        )
      }
      elements.append(element)
    }
    guard bytes.readableBytes == 0 else {
      return .failure(
        ServingError(.invalidArgument, "the binary BYTES tensor is longer than its \(count) elements")
      )
    }
    return .success(elements)
  }
}
