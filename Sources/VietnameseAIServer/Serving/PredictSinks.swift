/// A front door connection's sinks, one per model it sent predicts to, made on first use.
///
/// A batch hands a sink all of its answers for the connection at once, so answers from a
/// batch that ran on another thread cost the connection one hop rather than one each.
struct PredictSinks {
  private struct Entry {
    var model: ServedModel
    var sink: ServedModel.Sink
  }

  private var entries: [Entry] = []
  private var make: ((ServedModel) -> ServedModel.Sink)?

  /// - Parameter make: Makes the connection's sink for a model: its lane, and the receiver
  ///   of its answers.
  init(make: @escaping (ServedModel) -> ServedModel.Sink) {
    self.make = make
  }

  /// No sinks: a connection that is not set up, or is gone.
  init() {}

  /// The sink for `model`; `nil` once the sinks were let go.
  mutating func sink(for model: ServedModel) -> ServedModel.Sink? {
    for entry in entries where entry.model === model { return entry.sink }
    guard let make else { return nil }
    let sink = make(model)
    entries.append(Entry(model: model, sink: sink))
    return sink
  }

  /// Lets go of every sink and of the maker, and of what their receivers hold.
  mutating func removeAll() {
    entries.removeAll()
    make = nil
  }
}
