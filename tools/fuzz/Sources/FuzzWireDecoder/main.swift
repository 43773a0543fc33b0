// libFuzzer entry point for the frame decoder.
//
// The first input byte picks the decoder's settings (role, compression negotiated or not, a
// small or the default frame limit); the rest is the byte stream. Decoding must never crash,
// hang or allocate beyond the limit, whatever the bytes. And every frame it accepts must
// survive a round trip: encoded again (with and without compression) it decodes to the same
// frame. A violation traps, which libFuzzer reports as a finding.

import NIOCore
import VietnameseAIWire

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzWireDecoder(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
  guard count > 0 else { return 0 }
  let settings = start.load(as: UInt8.self)
  let role: FrameDecoder.Role = settings & 1 == 0 ? .server : .client
  let compression = settings & 2 != 0
  let limit = settings & 4 == 0 ? 64 * 1024 : WireProtocol.defaultMaxFrameSize
  var decoder = FrameDecoder(
    role: role,
    maxPayloadSize: limit,
    decompressor: compression ? Zlib.Decompressor() : nil
  )
  var buffer = ByteBuffer(bytes: UnsafeRawBufferPointer(start: start + 1, count: count - 1))
  var frames: [WireFrame] = []
  do {
    while let next = try decoder.decodeFrame(&buffer) {
      if case .success(let frame) = next { frames.append(frame) }
    }
  } catch {
    // Malformed input is expected; only crashes and broken round trips are findings.
  }
  for frame in frames {
    for encoder in [FrameEncoder(), FrameEncoder(compressor: Zlib.Compressor(), compressionThreshold: 16)] {
      var encoded = ByteBuffer()
      guard (try? encoder.encode(frame, into: &encoded)) != nil else {
        fatalError("a decoded frame failed to encode: \(frame)")
      }
      var again = FrameDecoder(role: role, maxPayloadSize: .max, decompressor: Zlib.Decompressor())
      guard case .success(let decoded)? = try? again.decodeFrame(&encoded), decoded == frame else {
        fatalError("round trip changed \(frame)")
      }
    }
  }
  return 0
}
