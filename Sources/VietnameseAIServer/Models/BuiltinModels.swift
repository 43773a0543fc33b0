import NIOCore
import VietnameseAI

/// The models and generators `rpc-server` serves out of the box, so that it is useful before
/// any model of your own is plugged in. None of them is a real neural network; each says
/// plainly what it computes.
public enum BuiltinModels {
  /// How a built-in model batches: the parameters of ``MayChuBatch``, with the seed's defaults.
  public struct Batching: Sendable {
    public var kichThuocBatch = 32
    public var timeoutBatch: Duration = .milliseconds(100)
    public var soWorker = 1
    public var toiDaCho = 1000

    public init() {}
  }

  /// `echo`: answers every input with the same bytes. It costs nothing, so it measures the
  /// serving path itself.
  public static func echo(name: String = "echo", batching: Batching = Batching()) -> ServedModel {
    .buffers(
      name: name,
      batcher: MayChuBatch(
        hamDuDoan: { $0 },
        kichThuocBatch: batching.kichThuocBatch,
        timeoutBatch: batching.timeoutBatch,
        soWorker: batching.soWorker,
        toiDaCho: batching.toiDaCho
      )
    )
  }

  /// `sim`: a simulated accelerator. A batch of n inputs takes `perBatch + n × perItem` (by
  /// default 5 ms + 50 µs each), as on a GPU where launching a batch costs far more than one
  /// more row, so batching visibly pays. It answers each UTF-8 input upper-cased, so a caller
  /// can tell its answer from its neighbours'.
  public static func simulatedAccelerator(
    name: String = "sim",
    perBatch: Duration = .milliseconds(5),
    perItem: Duration = .microseconds(50),
    batching: Batching = Batching()
  ) -> ServedModel {
    .text(
      name: name,
      batcher: MayChuBatch(
        hamDuDoan: { inputs in
          try await Task.sleep(for: perBatch + perItem * inputs.count)
          return inputs.map { $0.uppercased() }
        },
        kichThuocBatch: batching.kichThuocBatch,
        timeoutBatch: batching.timeoutBatch,
        soWorker: batching.soWorker,
        toiDaCho: batching.toiDaCho
      )
    )
  }

  /// `embed`: a hashed character-trigram embedding. Each trigram of the lower-cased text (with
  /// a space before and after it) adds ±1 to one of `dimensions` components, both chosen by
  /// the trigram's FNV-1a hash; the vector is then scaled to length 1. Texts that share
  /// spelling score a higher cosine similarity than unrelated ones, which is enough to serve
  /// and check the embedding endpoints without a neural network.
  public static func embedding(
    name: String = "embed",
    dimensions: Int = 64,
    batching: Batching = Batching()
  ) -> ServedModel {
    .vectors(
      name: name,
      dimensions: dimensions,
      batcher: MayChuBatch(
        hamDuDoan: { texts in texts.map { trigramVector($0, dimensions: dimensions) } },
        kichThuocBatch: batching.kichThuocBatch,
        timeoutBatch: batching.timeoutBatch,
        soWorker: batching.soWorker,
        toiDaCho: batching.toiDaCho
      )
    )
  }

  /// The `embed` model's vector of `text`.
  package static func trigramVector(_ text: String, dimensions: Int) -> [Float] {
    var vector = [Float](repeating: 0, count: dimensions)
    let bytes = Array((" " + text.lowercased() + " ").utf8)
    if bytes.count >= 3 {
      for start in 0...(bytes.count - 3) {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes[start..<start + 3] {
          hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        vector[Int(hash % UInt64(dimensions))] += (hash >> 63) == 0 ? 1 : -1
      }
    }
    let norm = vector.reduce(0) { $0 + $1 * $1 }.squareRoot()
    return norm > 0 ? vector.map { $0 / norm } : vector
  }

  /// `essay`: writes a short Vietnamese essay on the prompt, syllable by syllable: a title line
  /// with the prompt, then a fixed text on artificial intelligence.
  public static let essay = ServedGenerator(
    name: "essay",
    generator: TokenGenerator { prompt in
      Syllables("Bài luận: \(prompt)\n\n\(essayText)")
    }
  )

  /// `syllables`: streams the prompt back, one syllable (one space-separated word of
  /// Vietnamese) per token. A prompt of n words gives n tokens, which makes it the generator
  /// for measuring streams.
  public static let syllables = ServedGenerator(
    name: "syllables",
    generator: TokenGenerator { prompt in Syllables(prompt) }
  )

  /// Splits Vietnamese text into syllables. Each token keeps the space that follows it, so the
  /// tokens concatenate back into the text with single spaces.
  public static func syllables(of text: String) -> [String] {
    Array(Syllables(text))
  }

  static let essayText = """
    Trí tuệ nhân tạo đang thay đổi cách chúng ta làm việc, học tập và giao tiếp. Các mô hình \
    ngôn ngữ lớn có thể viết văn, dịch thuật và trả lời câu hỏi bằng tiếng Việt. Tuy nhiên, \
    chúng ta cần sử dụng công nghệ này một cách có trách nhiệm: bảo vệ dữ liệu cá nhân, kiểm \
    tra thông tin và giữ con người ở vị trí trung tâm. Tương lai của trí tuệ nhân tạo phụ \
    thuộc vào những lựa chọn mà chúng ta đưa ra hôm nay.
    """
}
