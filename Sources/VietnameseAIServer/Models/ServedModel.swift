public import NIOCore
@_spi(Batching) public import VietnameseAI
import VietnameseAIWire

/// A model the server offers under a name: a ``MayChuBatch`` plus how to turn the bytes of a
/// request into its input and its output back into bytes.
///
/// ```swift
/// let batcher = MayChuBatch(moHinh: MyModel(), kichThuocBatch: 32, timeoutBatch: .milliseconds(5))
/// let model = ServedModel.text(name: "my-model", batcher: batcher)
/// ```
///
/// The server starts every model's batcher when it starts and stops it (answering everything
/// queued) when it stops. A class, so that a request in flight refers to its model with one
/// reference.
public final class ServedModel: Sendable {
  /// The name clients ask for in `PREDICT` and `BATCH_PREDICT`.
  public let name: String
  /// What the model takes and gives, for the front doors that describe it (the HTTP door's
  /// model metadata) or pick a representation (text or vector tensors).
  public var signature: Signature { describe() }
  /// A model served by workers takes the signature its first worker declares.
  private let describe: @Sendable () -> Signature

  /// An input that the model cannot take; answered with `INVALID_ARGUMENT`.
  public struct InputError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
  }

  typealias Completion<Value> = @Sendable (Result<Value, any Error>) -> Void

  /// A connection's way into this model for predicts, made by ``makeSink``: it holds the
  /// connection's ``BatchSink`` (of the model's own output type), through which every answer
  /// comes back by tag.
  struct Sink: Sendable {
    /// Submits the predicts of one read, in order, under one lock, each tagged with its
    /// request id: no closure per request, and a batch's answers for the connection arrive
    /// together. Takes the connection's own list, so a predict is copied once, into the
    /// queue.
    let submitAll: @Sendable (ArraySlice<PredictRequest>) -> Submitted
  }

  /// An answer for a sink, by tag, already encoded.
  package typealias Answer = BatchSink<ByteBuffer>.Outcome

  /// What became of the predicts given to a ``Sink``.
  struct Submitted {
    /// The tickets of the predicts whose input the model took, in order.
    var tickets: Range<UInt64>
    /// The predicts whose input the model refused, by their position among those submitted
    /// (counted from 0), with why. Usually empty, which costs no allocation.
    var refused: [(position: Int, error: any Error)]
  }
  /// Answers for a sink, by tag, already encoded.
  typealias SinkReceiver = @Sendable ([Answer]) -> Void

  /// The most inputs that may wait in the model's queue: a batch predict of more can never be
  /// taken.
  let queueCapacity: Int
  let submitBatch:
    @Sendable ([ByteBuffer], Duration?, BatchLanes.Lane?, @escaping Completion<[ByteBuffer]>) throws -> UInt64
  let makeSink: @Sendable (_ lane: Int, _ executor: (any TaskExecutor)?, @escaping SinkReceiver) -> Sink
  let cancel: @Sendable (UInt64) -> Void
  let statistics: @Sendable () -> ThongKeBatch
  let observe: @Sendable (@escaping @Sendable (BatchReport) -> Void) -> Void
  let start: @Sendable () throws(VietnameseAIError) -> Void
  let stop: @Sendable () async -> Void
  /// Whether the model can serve now: a model in this process always can; one served by
  /// workers only while a worker is connected.
  let isReady: @Sendable () -> Bool

  /// Serves `batcher` with custom conversions.
  ///
  /// - Parameters:
  ///   - decode: Turns a request's bytes into an input; throws ``InputError`` (or any error)
  ///     for bytes the model cannot take.
  ///   - encode: Turns an output into the bytes of the answer.
  ///   - signature: What the bytes in and out are.
  public convenience init<DauVao, KetQua>(
    name: String,
    batcher: MayChuBatch<DauVao, KetQua>,
    signature: Signature = Signature(input: .bytes, output: .bytes),
    decode: @escaping @Sendable (ByteBuffer) throws -> DauVao,
    encode: @escaping @Sendable (KetQua) -> ByteBuffer
  ) {
    self.init(
      name: name,
      batcher: batcher,
      signature: signature,
      decode: decode,
      encodeAll: { $0.map(encode) }
    )
  }

  /// Serves `batcher`, encoding the outputs that are answered together (a batch's answers for
  /// one connection, the outputs of a `BATCH_PREDICT`) in one call, which may write them into
  /// one buffer.
  convenience init<DauVao, KetQua>(
    name: String,
    batcher: MayChuBatch<DauVao, KetQua>,
    signature: Signature,
    decode: @escaping @Sendable (ByteBuffer) throws -> DauVao,
    encodeAll: @escaping @Sendable ([KetQua]) -> [ByteBuffer],
    isReady: @escaping @Sendable () -> Bool = { true }
  ) {
    self.init(
      name: name,
      batcher: batcher,
      signature: { signature },
      decode: decode,
      encodeAll: encodeAll,
      answers: { Self.answers($0, encodeAll) },
      isReady: isReady
    )
  }

  /// Serves `batcher`; `answers` turns a batch's outcomes for one connection into the bytes
  /// of its answers, and `encodeAll` the outputs of a `BATCH_PREDICT`.
  private init<DauVao, KetQua>(
    name: String,
    batcher: MayChuBatch<DauVao, KetQua>,
    signature: @escaping @Sendable () -> Signature,
    decode: @escaping @Sendable (ByteBuffer) throws -> DauVao,
    encodeAll: @escaping @Sendable ([KetQua]) -> [ByteBuffer],
    answers: @escaping @Sendable ([BatchSink<KetQua>.Outcome]) -> [Answer],
    isReady: @escaping @Sendable () -> Bool
  ) {
    self.name = name
    self.isReady = isReady
    self.describe = signature
    self.queueCapacity = batcher.toiDaCho
    self.submitBatch = { items, deadline, lane, completion in
      let inputs = try items.map(decode)
      return batcher.submitBatch(inputs, deadline: deadline, lane: lane?.index ?? 0, executor: lane?.executor)
      {
        completion($0.map(encodeAll))
      }
    }
    self.makeSink = { lane, executor, receive in
      let sink = BatchSink<KetQua>(lane: lane, executor: executor) { outcomes in
        receive(answers(outcomes))
      }
      return Sink { predicts in
        var refused: [(position: Int, error: any Error)] = []
        var accepted: [MayChuBatch<DauVao, KetQua>.Submission] = []
        accepted.reserveCapacity(predicts.count)
        // Fields are read in place: a copy of a whole predict costs a call to its value
        // witness.
        for index in predicts.indices {
          do {
            accepted.append(
              MayChuBatch.Submission(
                input: try decode(predicts[index].input),
                deadlineMilliseconds: predicts[index].deadlineMilliseconds,
                tag: predicts[index].id
              )
            )
          } catch {
            refused.append((index - predicts.startIndex, error))
          }
        }
        return Submitted(tickets: batcher.submitAll(accepted, sink: sink), refused: refused)
      }
    }
    self.cancel = { batcher.cancel(ticket: $0) }
    self.statistics = { batcher.layThongKe() }
    self.observe = { batcher.observe($0) }
    self.start = { () throws(VietnameseAIError) in try batcher.batDau() }
    self.stop = { await batcher.dung() }
  }

  /// Serves a model of UTF-8 text in and out. Input that is not UTF-8 is refused with
  /// `INVALID_ARGUMENT` before it reaches the queue.
  public static func text(name: String, batcher: MayChuBatch<String, String>) -> ServedModel {
    ServedModel(
      name: name,
      batcher: batcher,
      signature: Signature(input: .text, output: .text),
      decode: { bytes in
        guard let text = bytes.validatedUTF8Text
        else { throw InputError("model \(name) takes UTF-8 text; the input is not valid UTF-8") }
        return text
      },
      encodeAll: { outputs in
        inOneBuffer(outputs, size: { $0.utf8.count }, write: { $1.writeString($0) })
      }
    )
  }

  /// Serves a model of raw bytes in and out, without copying them: each input is a slice of
  /// the bytes the connection read, and each output is copied once, into its answer's frame.
  ///
  /// The cheapest way to serve bytes. An input kept after its batch keeps the connection's
  /// receive buffer alive with it; copy the bytes out (`getBytes`) to keep them longer.
  public static func buffers(name: String, batcher: MayChuBatch<ByteBuffer, ByteBuffer>) -> ServedModel {
    buffers(name: name, batcher: batcher, signature: { Signature(input: .bytes, output: .bytes) })
  }

  /// ``buffers(name:batcher:)`` with another signature and a readiness test, for models that
  /// take and give bytes served by workers.
  static func buffers(
    name: String,
    batcher: MayChuBatch<ByteBuffer, ByteBuffer>,
    signature: @escaping @Sendable () -> Signature,
    decode: @escaping @Sendable (ByteBuffer) throws -> ByteBuffer = { $0 },
    isReady: @escaping @Sendable () -> Bool = { true }
  ) -> ServedModel {
    ServedModel(
      name: name,
      batcher: batcher,
      signature: signature,
      decode: decode,
      encodeAll: { $0 },
      // The outcomes are already answers: no array is built for them.
      answers: { $0 },
      isReady: isReady
    )
  }

  /// Serves a model of raw bytes in and out, as arrays: each input is copied out of the
  /// connection's buffer. ``buffers(name:batcher:)`` serves bytes without that copy.
  public static func bytes(name: String, batcher: MayChuBatch<[UInt8], [UInt8]>) -> ServedModel {
    ServedModel(
      name: name,
      batcher: batcher,
      signature: Signature(input: .bytes, output: .bytes),
      // One copy of the bytes; the sequence initializer over `readableBytesView` copies
      // element by element.
      decode: { $0.getBytes(at: $0.readerIndex, length: $0.readableBytes) ?? [] },
      encodeAll: { outputs in
        inOneBuffer(outputs, size: { $0.count }, write: { $1.writeBytes($0) })
      }
    )
  }

  /// Serves an embedding model: UTF-8 text in, a vector of `dimensions` floats out, answered
  /// as little-endian IEEE 754 binary32 values (`FP32` over HTTP). The HTTP door answers an
  /// output of another length as an internal error.
  public static func vectors(
    name: String,
    dimensions: Int,
    batcher: MayChuBatch<String, [Float]>
  ) -> ServedModel {
    ServedModel(
      name: name,
      batcher: batcher,
      signature: Signature(input: .text, output: .vector(dimensions: dimensions)),
      decode: { bytes in
        guard let text = bytes.validatedUTF8Text
        else { throw InputError("model \(name) takes UTF-8 text; the input is not valid UTF-8") }
        return text
      },
      encodeAll: { outputs in
        inOneBuffer(
          outputs,
          size: { $0.count * 4 },
          write: { vector, bytes in
            for value in vector { bytes.writeInteger(value.bitPattern, endianness: .little) }
          }
        )
      }
    )
  }

  /// The answers to a batch's outcomes for one connection: the outputs encoded together,
  /// the errors as they are.
  package static func answers<KetQua>(
    _ outcomes: [BatchSink<KetQua>.Outcome],
    _ encodeAll: ([KetQua]) -> [ByteBuffer]
  ) -> [Answer] {
    var outputs: [KetQua] = []
    outputs.reserveCapacity(outcomes.count)
    for outcome in outcomes {
      if case .success(let output) = outcome.result { outputs.append(output) }
    }
    var encoded = encodeAll(outputs).makeIterator()
    return outcomes.map { outcome in
      Answer(tag: outcome.tag, result: outcome.result.map { _ in encoded.next()! })
    }
  }

  /// Writes `outputs` one after another into one buffer and returns a slice of it for each.
  ///
  /// One allocation for all of them, where a buffer per output costs two (NIO's storage
  /// object and its bytes) per answer. The slices are copied into the connection's outgoing
  /// frames straight away, so the shared buffer lives no longer than separate ones would.
  /// `size` is what `write` will write, used to allocate the buffer once.
  package static func inOneBuffer<KetQua>(
    _ outputs: [KetQua],
    size: (KetQua) -> Int,
    write: (KetQua, inout ByteBuffer) -> Void
  ) -> [ByteBuffer] {
    // A delivery of errors only has nothing to write, and needs no buffer.
    if outputs.isEmpty { return [] }
    var total = 0
    for output in outputs { total += size(output) }
    var bytes = ByteBufferAllocator().buffer(capacity: total)
    var ends: [Int] = []
    ends.reserveCapacity(outputs.count)
    for output in outputs {
      write(output, &bytes)
      ends.append(bytes.writerIndex)
    }
    // Sliced only once everything is written: a write after a slice would copy the storage.
    var start = bytes.readerIndex
    return ends.map { end in
      defer { start = end }
      return bytes.getSlice(at: start, length: end - start)!
    }
  }
}
