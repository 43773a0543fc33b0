/// What a client asked of a generation beyond its prompt: the OpenAI door's `max_tokens` and
/// `stop`, and the stream's deadline. A generator that can honour them itself (a worker, which
/// then stops generating instead of having its tokens cut) reads them while it starts; the
/// doors enforce them either way.
///
/// A task-local, so that it reaches a generator through ``MayChuStream``'s producer task
/// without widening the generator API every model implements.
struct GenerationLimits: Sendable {
  var maxTokens: Int?
  var stops: [String] = []
  var deadline: ContinuousClock.Instant?

  @TaskLocal static var current: GenerationLimits?
}
