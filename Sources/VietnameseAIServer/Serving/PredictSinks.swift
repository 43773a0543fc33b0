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

  /// The sink for `model`, made by `make` the first time.
  mutating func sink(for model: ServedModel, make: (ServedModel) -> ServedModel.Sink) -> ServedModel.Sink {
    for entry in entries where entry.model === model { return entry.sink }
    let sink = make(model)
    entries.append(Entry(model: model, sink: sink))
    return sink
  }

  /// Lets go of every sink, and of what their receivers hold.
  mutating func removeAll() {
    entries.removeAll()
  }
}
