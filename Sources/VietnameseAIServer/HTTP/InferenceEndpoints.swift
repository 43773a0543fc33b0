import HTTPTypes
import Hummingbird
import NIOCore
import VietnameseAI

/// The Open Inference Protocol (KServe v2, as Triton serves it): health, server and model
/// metadata, and `infer`, in JSON and in Triton's binary tensor extension, which tritonclient
/// uses by default.
///
/// A model takes one `BYTES` tensor of shape `[N]` (or `[N, 1]`): N inputs, which go to its
/// batcher as one batch predict and come back in order, as a `BYTES` tensor of shape `[N]`, or
/// `FP32` of shape `[N, D]` for a model that gives vectors. Errors are `{"error": "..."}`.
struct InferenceEndpoints {
  let door: HTTPDoor

  static let headerLength = HTTPField.Name("Inference-Header-Content-Length")!

  func register(on router: Router<DoorContext>) {
    router.get("/v2") { _, _ in
      HTTPDoor.json(
        .ok,
        "{\"name\":\"vietnamese-ai-serving\",\"version\":\"1\",\"extensions\":[\"binary_tensor_data\"]}"
      )
    }
    router.get("/v2/health/live") { _, _ in Response(status: .ok) }
    router.get("/v2/health/ready") { _, _ in
      Response(status: door.core.isDraining || !door.core.allModelsReady ? .serviceUnavailable : .ok)
    }
    router.get("/v2/models/:name") { _, context in metadata(context) }
    router.get("/v2/models/:name/versions/:version") { _, context in metadata(context) }
    router.get("/v2/models/:name/ready") { _, context in ready(context) }
    router.get("/v2/models/:name/versions/:version/ready") { _, context in ready(context) }
    router.post("/v2/models/:name/infer") { request, context in
      await infer(request, context: context)
    }
    router.post("/v2/models/:name/versions/:version/infer") { request, context in
      await infer(request, context: context)
    }
  }

  private var core: ServingCore { door.core }

  /// The model a path names, in the one version each model has: `1`.
  private func model(_ context: DoorContext) -> Result<ServedModel, HTTPFailure> {
    let name = context.parameters.get("name") ?? ""
    if let version = context.parameters.get("version"), version != "1" {
      return .failure(HTTPFailure(.unknownModel, "model \(name) has one version, 1; not \(version)"))
    }
    return core.model(named: name).mapError { HTTPFailure($0) }
  }

  private func metadata(_ context: DoorContext) -> Response {
    let model: ServedModel
    switch self.model(context) {
    case .success(let found): model = found
    case .failure(let failure): return failure.inferenceResponse()
    }
    let output =
      switch model.signature.output {
      case .vector(let dimensions): "{\"name\":\"OUTPUT\",\"datatype\":\"FP32\",\"shape\":[-1,\(dimensions)]}"
      case .bytes, .text: "{\"name\":\"OUTPUT\",\"datatype\":\"BYTES\",\"shape\":[-1]}"
      }
    return HTTPDoor.json(
      .ok,
      "{\"name\":\(SSEEvent.jsonString(model.name)),\"versions\":[\"1\"],\"platform\":\"vietnamese-ai\",\"inputs\":[{\"name\":\"INPUT\",\"datatype\":\"BYTES\",\"shape\":[-1]}],\"outputs\":[\(output)]}"
    )
  }

  private func ready(_ context: DoorContext) -> Response {
    switch model(context) {
    case .failure(let failure): return failure.inferenceResponse()
    case .success(let model):
      return Response(status: core.isDraining || !model.isReady() ? .serviceUnavailable : .ok)
    }
  }

  private func infer(_ request: Request, context: DoorContext) async -> Response {
    var request = request
    let model: ServedModel
    switch self.model(context) {
    case .success(let found): model = found
    case .failure(let failure): return failure.inferenceResponse()
    }
    let client: String
    switch door.client(of: request, context: context) {
    case .success(let found): client = found
    case .failure(let error): return HTTPFailure(error).inferenceResponse()
    }
    var headerLength: Int?
    if let value = request.headers[Self.headerLength] {
      guard let length = Int(value) else {
        return HTTPFailure(.invalidArgument, "Inference-Header-Content-Length must be a number")
          .inferenceResponse()
      }
      headerLength = length
    }
    let parsed: InferenceRequest
    switch await door.body(of: &request).flatMap({
      InferenceRequest.parse($0, headerLength: headerLength)
    }) {
    case .success(let found): parsed = found
    case .failure(let error): return HTTPFailure(error).inferenceResponse()
    }
    let deadline: Duration?
    switch door.deadline(of: request, bodySeconds: parsed.timeoutMicroseconds.map { $0 / 1e6 }) {
    case .success(let found): deadline = found
    case .failure(let error): return HTTPFailure(error).inferenceResponse()
    }
    if core.isDraining { return HTTPFailure(.unavailable, "the server is shutting down").inferenceResponse() }
    let outputs: [ByteBuffer]
    do {
      outputs = try await door.predict(
        model: model.name,
        inputs: parsed.inputs,
        deadline: deadline,
        client: client,
        context: context
      )
    } catch {
      return HTTPFailure(error, policy: door.ratePolicy).inferenceResponse()
    }
    return answer(outputs, of: model, to: parsed)
  }

  private func answer(_ outputs: [ByteBuffer], of model: ServedModel, to request: InferenceRequest)
    -> Response
  {
    let count = outputs.count
    var tensor = "{\"name\":\(SSEEvent.jsonString(request.outputName)),"
    var binary: ByteBuffer?
    switch model.signature.output {
    case .vector(let dimensions):
      guard outputs.allSatisfy({ $0.readableBytes == dimensions * 4 }) else {
        return HTTPFailure(.internal, "model \(model.name) gave a vector of the wrong length")
          .inferenceResponse()
      }
      tensor += "\"datatype\":\"FP32\",\"shape\":[\(count),\(dimensions)],"
      if request.binaryOutput {
        var bytes = ByteBuffer()
        bytes.reserveCapacity(count * dimensions * 4)
        for var output in outputs { bytes.writeBuffer(&output) }
        binary = bytes
      } else {
        let rows = outputs.map { VectorText.jsonArray($0).dropFirst().dropLast() }
        tensor += "\"data\":[\(rows.joined(separator: ","))]"
      }
    case .bytes, .text:
      tensor += "\"datatype\":\"BYTES\",\"shape\":[\(count)],"
      if request.binaryOutput {
        var bytes = ByteBuffer()
        bytes.reserveCapacity(outputs.reduce(0) { $0 + 4 + $1.readableBytes })
        for var output in outputs {
          bytes.writeInteger(UInt32(output.readableBytes), endianness: .little)
          bytes.writeBuffer(&output)
        }
        binary = bytes
      } else {
        var texts: [String] = []
        texts.reserveCapacity(count)
        for output in outputs {
          guard let text = output.getString(at: output.readerIndex, length: output.readableBytes),
            text.utf8.elementsEqual(output.readableBytesView)
          else {
            return HTTPFailure(
              .invalidArgument,
              "an output is not UTF-8 text: ask for it in binary (binary_data)"
            )
            .inferenceResponse()
          }
          texts.append(SSEEvent.jsonString(text))
        }
        tensor += "\"data\":[\(texts.joined(separator: ","))]"
      }
    }
    if let binary { tensor += "\"parameters\":{\"binary_data_size\":\(binary.readableBytes)}" }
    tensor += "}"
    var json = "{\"model_name\":\(SSEEvent.jsonString(model.name)),\"model_version\":\"1\","
    if let id = request.id { json += "\"id\":\(SSEEvent.jsonString(id))," }
    json += "\"outputs\":[\(tensor)]}"
    guard var binary else { return HTTPDoor.json(.ok, json) }
    var body = ByteBuffer(string: json)
    let jsonLength = body.readableBytes
    body.writeBuffer(&binary)
    return Response(
      status: .ok,
      headers: [.contentType: "application/octet-stream", Self.headerLength: "\(jsonLength)"],
      body: ResponseBody(byteBuffer: body)
    )
  }
}
