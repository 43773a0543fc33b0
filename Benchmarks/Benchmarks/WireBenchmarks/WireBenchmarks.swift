import Benchmark
import NIOCore
import VietnameseAIWire

/// A typical small request: model "echo", 64 bytes of input, a deadline.
private let smallPredict = WireFrame(
  requestID: 12_345,
  message: .predict(
    .init(deadlineMilliseconds: 250, model: "echo", input: ByteBuffer(repeating: 0x61, count: 64))
  )
)

/// 64 KiB of text that compresses like real payloads (Vietnamese prose with numbers).
private let text64K: ByteBuffer = {
  var buffer = ByteBuffer()
  var i = 0
  while buffer.readableBytes < 65_536 {
    buffer.writeString("Trí tuệ nhân tạo đang thay đổi cách chúng ta làm việc, câu số \(i). ")
    i += 1
  }
  return buffer.getSlice(at: 0, length: 65_536)!
}()

let benchmarks: @Sendable () -> Void = {
  let fast = Benchmark.Configuration(
    metrics: [.wallClock, .throughput, .mallocCountTotal],
    scalingFactor: .kilo,
    maxDuration: .seconds(3),
    maxIterations: 1_000
  )
  let zlib = Benchmark.Configuration(
    metrics: [.wallClock, .throughput, .mallocCountTotal],
    scalingFactor: .one,
    maxDuration: .seconds(3),
    maxIterations: 10_000
  )

  Benchmark("wire encode small predict", configuration: fast) { benchmark in
    let encoder = FrameEncoder()
    var out = ByteBuffer()
    out.reserveCapacity(256)
    benchmark.startMeasurement()
    for _ in benchmark.scaledIterations {
      out.clear()
      try encoder.encode(smallPredict, into: &out)
      blackHole(out.writerIndex)
    }
  }

  Benchmark("wire decode small predict", configuration: fast) { benchmark in
    var encoded = ByteBuffer()
    try FrameEncoder().encode(smallPredict, into: &encoded)
    var decoder = FrameDecoder(role: .server)
    benchmark.startMeasurement()
    for _ in benchmark.scaledIterations {
      var input = encoded
      // What a connection calls (through FrameReader).
      blackHole(try decoder.decodeNext(&input))
    }
  }

  Benchmark("zlib compress 64 KiB (Zlib.Compressor)", configuration: zlib) { benchmark in
    let compressor = Zlib.Compressor()
    var out = ByteBuffer()
    // Warm: the output's pages are touched once before measuring, for both zlib benchmarks,
    // so that first-touch page faults of a new buffer are not counted as compression.
    compressor.compress(text64K, into: &out)
    benchmark.startMeasurement()
    for _ in benchmark.scaledIterations {
      out.clear()
      blackHole(compressor.compress(text64K, into: &out))
    }
  }

  Benchmark("frame encode 64 KiB compressed (FrameEncoder)", configuration: zlib) { benchmark in
    let encoder = FrameEncoder(compressor: Zlib.Compressor())
    let frame = WireFrame(requestID: 1, message: .result(text64K))
    var out = ByteBuffer()
    try encoder.encode(frame, into: &out)
    benchmark.startMeasurement()
    for _ in benchmark.scaledIterations {
      out.clear()
      try encoder.encode(frame, into: &out)
      blackHole(out.writerIndex)
    }
  }

  Benchmark("zlib decompress 64 KiB (Zlib.Decompressor)", configuration: zlib) { benchmark in
    var packed = ByteBuffer()
    Zlib.Compressor().compress(text64K, into: &packed)
    let decompressor = Zlib.Decompressor()
    benchmark.startMeasurement()
    for _ in benchmark.scaledIterations {
      var out = ByteBuffer()
      try decompressor.decompress(packed, expectedLength: 65_536, into: &out)
      blackHole(out.readableBytes)
    }
  }

  Benchmark("frame decode 64 KiB compressed (FrameDecoder)", configuration: zlib) { benchmark in
    var encoded = ByteBuffer()
    try FrameEncoder(compressor: Zlib.Compressor()).encode(
      WireFrame(requestID: 1, message: .result(text64K)),
      into: &encoded
    )
    var decoder = FrameDecoder(role: .client, decompressor: Zlib.Decompressor())
    benchmark.startMeasurement()
    for _ in benchmark.scaledIterations {
      var input = encoded
      blackHole(try decoder.decodeFrame(&input))
    }
  }
}
