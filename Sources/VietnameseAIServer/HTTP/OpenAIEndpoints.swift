import FoundationEssentials
import HTTPTypes
import Hummingbird
import NIOCore
import VietnameseAI

/// The OpenAI-compatible API, as vLLM, TGI and llama.cpp's server offer it: `/v1/models`,
/// `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`; and the seed's own SSE stream,
/// `/v1/stream`.
///
/// Chat and completions run a generator through the serving core's stream server; embeddings
/// run a model whose output is a vector through its batcher. A refusal before the stream
/// starts is an HTTP status with OpenAI's error body; a failure after it is one error event,
/// then `data: [DONE]`.
struct OpenAIEndpoints {
  let door: HTTPDoor

  func register(on router: Router<DoorContext>) {
    router.get("/v1/models") { _, _ in listModels() }
    router.post("/v1/chat/completions") { request, context in
      await chatCompletions(request, context: context)
    }
    router.post("/v1/completions") { request, context in
      await completions(request, context: context)
    }
    router.post("/v1/embeddings") { request, context in
      await embeddings(request, context: context)
    }
    router.post("/v1/stream") { request, context in
      await seedStream(request, context: context)
    }
  }

  private var core: ServingCore { door.core }

  // MARK: Models

  private func listModels() -> Response {
    let names = core.modelOrder.map(\.name) + core.generatorOrder
    let entries = names.map {
      "{\"id\":\(SSEEvent.jsonString($0)),\"object\":\"model\",\"created\":0,\"owned_by\":\"vietnamese-ai\"}"
    }
    return HTTPDoor.json(.ok, "{\"object\":\"list\",\"data\":[\(entries.joined(separator: ","))]}")
  }

  // MARK: Generation

  /// What chat and completions have in common once their bodies are read.
  private struct Generation {
    enum Kind {
      case chat
      case completion
    }

    var kind: Kind
    var model: String
    var prompt: String
    var stream: Bool
    var includeUsage: Bool
    var maxTokens: Int?
    var stops: [String]
    var n: Int?
    var timeout: Double?
  }

  private func chatCompletions(_ request: Request, context: DoorContext) async -> Response {
    var request = request
    let body: OpenAIRequests.ChatCompletion
    switch await door.body(of: &request).flatMap({
      HTTPDoor.decode(OpenAIRequests.ChatCompletion.self, from: $0)
    }
    ) {
    case .success(let decoded): body = decoded
    case .failure(let error): return HTTPFailure(error).openAIResponse()
    }
    guard !body.messages.isEmpty else {
      return HTTPFailure(.invalidArgument, "messages must not be empty").openAIResponse()
    }
    let generation = Generation(
      kind: .chat,
      model: body.model,
      prompt: ChatPrompt.prompt(of: body.messages),
      stream: body.stream ?? false,
      includeUsage: body.streamOptions?.includeUsage ?? false,
      maxTokens: body.maxCompletionTokens ?? body.maxTokens,
      stops: body.stop?.values ?? [],
      n: body.n,
      timeout: body.timeout
    )
    return await generate(generation, request: request, context: context)
  }

  private func completions(_ request: Request, context: DoorContext) async -> Response {
    var request = request
    let body: OpenAIRequests.Completion
    switch await door.body(of: &request).flatMap({ HTTPDoor.decode(OpenAIRequests.Completion.self, from: $0) }
    ) {
    case .success(let decoded): body = decoded
    case .failure(let error): return HTTPFailure(error).openAIResponse()
    }
    let generation = Generation(
      kind: .completion,
      model: body.model,
      prompt: body.prompt.text,
      stream: body.stream ?? false,
      includeUsage: body.streamOptions?.includeUsage ?? false,
      // OpenAI's default for this endpoint.
      maxTokens: body.maxTokens ?? 16,
      stops: body.stop?.values ?? [],
      n: body.n,
      timeout: body.timeout
    )
    return await generate(generation, request: request, context: context)
  }

  private func generate(_ generation: Generation, request: Request, context: DoorContext) async -> Response {
    if let n = generation.n, n != 1 {
      return HTTPFailure(.invalidArgument, "n must be 1: one choice per request").openAIResponse()
    }
    if let maxTokens = generation.maxTokens, maxTokens < 1 {
      return HTTPFailure(.invalidArgument, "max_tokens must be at least 1").openAIResponse()
    }
    if generation.stops.count > 4 {
      return HTTPFailure(.invalidArgument, "stop takes at most 4 sequences").openAIResponse()
    }
    let feed: GenerationFeed
    let opened = await open(
      generation.model,
      prompt: generation.prompt,
      limits: GenerationLimits(maxTokens: generation.maxTokens, stops: generation.stops),
      timeout: generation.timeout,
      request,
      context
    )
    switch opened {
    case .success(let opened): feed = opened
    case .failure(let failure): return failure.openAIResponse()
    }
    let reply = OpenAIReply(
      kind: generation.kind == .chat ? .chat : .completion,
      model: generation.model,
      promptTokens: BuiltinModels.syllables(of: generation.prompt).count
    )
    let cutter = CompletionCutter(maxTokens: generation.maxTokens, stops: generation.stops)
    let body = request.body
    let keepAlive = door.settings.sseKeepAlive
    if !generation.stream {
      // Waits for the whole completion here, so that a failure still gets its status; a
      // client that leaves meanwhile cancels the work.
      let outcome: OpenAIReply.Outcome
      do {
        outcome = try await body.consumeWithCancellationOnInboundClose { _ in
          await Self.collect(feed, cutter: cutter)
        }
      } catch {
        feed.cancel()
        return HTTPFailure(.cancelled, "the client left").openAIResponse()
      }
      switch outcome {
      case .finished:
        return HTTPDoor.json(.ok, reply.whole(outcome), headers: HTTPDoor.watchedHeaders)
      case .failed(let error):
        var response = HTTPFailure(error, policy: door.ratePolicy).openAIResponse()
        response.headers[.connection] = "close"
        return response
      }
    }
    let includeUsage = generation.includeUsage
    return Response(
      status: .ok,
      headers: HTTPDoor.eventStreamHeaders,
      body: ResponseBody { writer in
        try await body.consumeWithCancellationOnInboundClose { _ in
          var cutter = cutter
          if let first = reply.firstChunk() { try await writer.write(ByteBuffer(string: first)) }
          let finish = try await Self.relay(feed, keepAlive: keepAlive, writer: &writer) { token in
            let (text, finish) = cutter.accept(token)
            return (text.isEmpty ? nil : reply.chunk(text: text), finish)
          }
          var tail = ""
          switch finish {
          case .success(let reason):
            let rest = reason == nil ? cutter.flush() : ""
            if !rest.isEmpty { tail += reply.chunk(text: rest) }
            tail += reply.finishChunk(reason ?? .stop)
            if includeUsage { tail += reply.usageChunk(completionTokens: cutter.tokens) }
          case .failure(let error):
            tail += reply.errorEvent(HTTPFailure(error))
          }
          tail += SSEEvent.done
          try await writer.write(ByteBuffer(string: tail))
        }
        try await writer.finish(nil)
      }
    )
  }

  /// The request's client and deadline, unless the server no longer takes work.
  private func admit(
    _ request: Request,
    _ context: DoorContext,
    timeout: Double?
  ) -> Result<(String, Duration?), HTTPFailure> {
    let client: String
    switch door.client(of: request, context: context) {
    case .success(let found): client = found
    case .failure(let error): return .failure(HTTPFailure(error))
    }
    let deadline: Duration?
    switch door.deadline(of: request, bodySeconds: timeout) {
    case .success(let found): deadline = found
    case .failure(let error): return .failure(HTTPFailure(error))
    }
    if core.isDraining { return .failure(HTTPFailure(.unavailable, "the server is shutting down")) }
    return .success((client, deadline))
  }

  /// Opens a stream of `model` for the request's client, with its deadline.
  private func open(
    _ model: String,
    prompt: String,
    limits: GenerationLimits = GenerationLimits(),
    timeout: Double?,
    _ request: Request,
    _ context: DoorContext
  ) async -> Result<GenerationFeed, HTTPFailure> {
    let (client, deadline): (String, Duration?)
    switch admit(request, context, timeout: timeout) {
    case .success(let admitted): (client, deadline) = admitted
    case .failure(let failure): return .failure(failure)
    }
    return await GenerationLimits.$current.withValue(limits) {
      await GenerationFeed.open(
        core: core,
        generator: model,
        prompt: prompt,
        deadline: deadline,
        client: client
      )
    }
    .mapError { HTTPFailure($0, policy: door.ratePolicy) }
  }

  /// Reads a feed to its end (or to where `cutter` ends it) for a reply in one piece.
  private static func collect(_ feed: GenerationFeed, cutter: CompletionCutter) async -> OpenAIReply.Outcome {
    var cutter = cutter
    var text = ""
    while let batch = await feed.next() {
      for token in batch.tokens {
        let (piece, finish) = cutter.accept(token)
        text += piece
        if let finish {
          feed.cancel()
          return .finished(text: text, reason: finish, completionTokens: cutter.tokens)
        }
      }
    }
    if Task.isCancelled {
      feed.cancel()
      return .failed(ServingError(.cancelled, "the client left"))
    }
    switch feed.end {
    case .success:
      text += cutter.flush()
      return .finished(text: text, reason: .stop, completionTokens: cutter.tokens)
    case .failure(let error):
      return .failed(error)
    }
  }

  /// Writes a feed's tokens as they come, each batch in one write: each token through
  /// `render` (which may end the completion), keep-alive comments while no token has come.
  ///
  /// - Returns: Why the completion ended early (`nil` when the generator ran out), or the
  ///   stream's error.
  static func relay(
    _ feed: GenerationFeed,
    keepAlive: Duration,
    writer: inout any ResponseBodyWriter,
    render: (String) -> (event: String?, finish: CompletionCutter.FinishReason?)
  ) async throws -> Result<CompletionCutter.FinishReason?, ServingError> {
    let ticker = Task { await feed.tickKeepAlive(every: keepAlive) }
    defer {
      ticker.cancel()
      feed.cancel()
    }
    while var batch = await feed.next() {
      if batch.tokens.isEmpty {
        if batch.keepAlive { try await writer.write(ByteBuffer(string: ": keep-alive\n\n")) }
        continue
      }
      if batch.tokens.count < GenerationFeed.batchSize {
        // A write costs a system call; a turn of the executor lets a generator task that is
        // producing add to this batch first.
        await Task.yield()
        batch.tokens += feed.takeWaiting()
      }
      feed.tokenArrived()
      var events = ByteBuffer()
      for token in batch.tokens {
        let (rendered, finish) = render(token)
        if let rendered { events.writeString(rendered) }
        if let finish {
          try await writer.write(events)
          return .success(finish)
        }
      }
      try await writer.write(events)
    }
    try Task.checkCancellation()
    return feed.end.map { nil }
  }

  // MARK: The seed's stream

  private func seedStream(_ request: Request, context: DoorContext) async -> Response {
    var request = request
    let body: OpenAIRequests.SeedStream
    switch await door.body(of: &request).flatMap({ HTTPDoor.decode(OpenAIRequests.SeedStream.self, from: $0) }
    ) {
    case .success(let decoded): body = decoded
    case .failure(let error): return HTTPFailure(error).openAIResponse()
    }
    let feed: GenerationFeed
    switch await open(body.model ?? "", prompt: body.prompt, timeout: body.timeout, request, context) {
    case .success(let opened): feed = opened
    case .failure(let failure): return failure.openAIResponse()
    }
    let requestBody = request.body
    let keepAlive = door.settings.sseKeepAlive
    return Response(
      status: .ok,
      headers: HTTPDoor.eventStreamHeaders,
      body: ResponseBody { writer in
        try await requestBody.consumeWithCancellationOnInboundClose { _ in
          let end = try await Self.relay(feed, keepAlive: keepAlive, writer: &writer) { token in
            (SSEEvent.token(token), nil)
          }
          var tail = ""
          if case .failure(let error) = end { tail += SSEEvent.error(error.message) }
          tail += SSEEvent.done
          try await writer.write(ByteBuffer(string: tail))
        }
        try await writer.finish(nil)
      }
    )
  }

  // MARK: Embeddings

  private func embeddings(_ request: Request, context: DoorContext) async -> Response {
    var request = request
    let body: OpenAIRequests.Embedding
    switch await door.body(of: &request).flatMap({ HTTPDoor.decode(OpenAIRequests.Embedding.self, from: $0) })
    {
    case .success(let decoded): body = decoded
    case .failure(let error): return HTTPFailure(error).openAIResponse()
    }
    let base64: Bool
    switch body.encodingFormat ?? "float" {
    case "float": base64 = false
    case "base64": base64 = true
    default:
      return HTTPFailure(.invalidArgument, "encoding_format must be \"float\" or \"base64\"").openAIResponse()
    }
    guard !body.input.values.isEmpty else {
      return HTTPFailure(.invalidArgument, "input must not be empty").openAIResponse()
    }
    let dimensions: Int
    switch core.model(named: body.model) {
    case .success(let model):
      guard case .vector(let count) = model.signature.output else {
        return HTTPFailure(.invalidArgument, "model \(body.model) does not give vectors; it cannot embed")
          .openAIResponse()
      }
      dimensions = count
    case .failure(let error):
      return HTTPFailure(error).openAIResponse()
    }
    if let asked = body.dimensions, asked != dimensions {
      return HTTPFailure(.invalidArgument, "model \(body.model) gives \(dimensions) dimensions, not \(asked)")
        .openAIResponse()
    }
    let outputs: [ByteBuffer]
    switch await predict(body.model, texts: body.input.values, timeout: body.timeout, request, context) {
    case .success(let found): outputs = found
    case .failure(let failure): return failure.openAIResponse()
    }
    var json = "{\"object\":\"list\",\"data\":["
    for (index, output) in outputs.enumerated() {
      guard output.readableBytes == dimensions * 4 else {
        return HTTPFailure(.internal, "model \(body.model) gave a vector of the wrong length")
          .openAIResponse()
      }
      if index > 0 { json += "," }
      json += "{\"object\":\"embedding\",\"index\":\(index),\"embedding\":"
      if base64 {
        json += "\"" + Data(output.readableBytesView).base64EncodedString() + "\""
      } else {
        json += VectorText.jsonArray(output)
      }
      json += "}"
    }
    let tokens = body.input.values.reduce(0) { $0 + BuiltinModels.syllables(of: $1).count }
    json +=
      "],\"model\":\(SSEEvent.jsonString(body.model)),\"usage\":{\"prompt_tokens\":\(tokens),\"total_tokens\":\(tokens)}}"
    return HTTPDoor.json(.ok, json)
  }

  /// Runs `texts` through a model for the request's client, with its deadline.
  private func predict(
    _ model: String,
    texts: [String],
    timeout: Double?,
    _ request: Request,
    _ context: DoorContext
  ) async -> Result<[ByteBuffer], HTTPFailure> {
    let (client, deadline): (String, Duration?)
    switch admit(request, context, timeout: timeout) {
    case .success(let admitted): (client, deadline) = admitted
    case .failure(let failure): return .failure(failure)
    }
    do {
      let outputs = try await door.predict(
        model: model,
        inputs: texts.map { ByteBuffer(string: $0) },
        deadline: deadline,
        client: client,
        context: context
      )
      return .success(outputs)
    } catch {
      return .failure(HTTPFailure(error, policy: door.ratePolicy))
    }
  }
}
