internal import CZlib
public import NIOCore

/// zlib (RFC 1950) compression of whole frame payloads, over the system zlib.
///
/// Each frame is compressed on its own: the stream is reset after every payload, so frames can
/// be decoded independently and in any order, at the price of no shared dictionary.
///
/// Decompression is where untrusted input meets memory, so it is strict: the sender declares
/// the uncompressed length, the receiver checks it against its limit *before* allocating, gives
/// zlib exactly that much room plus one byte, and fails if the stream does not end exactly
/// there. A small frame that would inflate to gigabytes is an error after at most
/// `declared + 1` bytes of output, never an allocation.
public enum Zlib {
  /// A reusable deflate stream. Not thread-safe: one per connection (or per encoder).
  public final class Compressor {
    private let stream: UnsafeMutablePointer<z_stream>
    /// Where compressed output lands before it is known to be worth keeping; kept between
    /// frames up to ``scratchLimit`` bytes, so that compressing needs no allocation of its own.
    private var scratch = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    /// The largest scratch area kept between frames; a larger frame borrows one for itself.
    static let scratchLimit = 256 * 1024

    /// - Parameter level: zlib's level, 1 (fastest) to 9 (smallest); 6 is zlib's default.
    public init(level: Int32 = 6) {
      stream = .allocate(capacity: 1)
      stream.initialize(to: z_stream())
      let status = CZlib_deflateInit2(stream, level, 15, 8)
      // Only a bad argument or no memory can fail here; both are bugs or fatal conditions.
      precondition(status == Z_OK, "deflateInit2 failed: \(status)")
    }

    deinit {
      deflateEnd(stream)
      stream.deallocate()
      scratch.deallocate()
    }

    /// Calls `body` with room for at least `count` bytes of output, reused between calls.
    func withScratch<T>(count: Int, _ body: (UnsafeMutableRawBufferPointer) -> T) -> T {
      if count > Self.scratchLimit {
        let borrowed = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
        defer { borrowed.deallocate() }
        return body(borrowed)
      }
      if scratch.count < count {
        scratch.deallocate()
        scratch = .allocate(byteCount: max(count, 4096), alignment: 16)
      }
      return body(scratch)
    }

    /// The most bytes `compress` can produce for `count` input bytes.
    public func bound(for count: Int) -> Int {
      Int(deflateBound(stream, UInt(count)))
    }

    /// Appends the zlib stream of `input`'s readable bytes to `output`.
    ///
    /// - Returns: The number of compressed bytes written.
    @discardableResult
    public func compress(_ input: ByteBuffer, into output: inout ByteBuffer) -> Int {
      let capacity = bound(for: input.readableBytes)
      return input.withUnsafeReadableBytes { source in
        output.writeWithUnsafeMutableBytes(minimumWritableBytes: capacity) { target in
          compress(source, into: target)
        }
      }
    }

    /// Compresses `source` into `target`, which must hold at least `bound(for: source.count)`
    /// bytes, and returns the number of bytes written.
    public func compress(_ source: UnsafeRawBufferPointer, into target: UnsafeMutableRawBufferPointer) -> Int
    {
      defer { deflateReset(stream) }
      let capacity = bound(for: source.count)
      precondition(target.count >= capacity, "compress needs bound(for:) bytes of room")
      stream.pointee.next_in = UnsafeMutablePointer(mutating: source.bindMemory(to: Bytef.self).baseAddress)
      stream.pointee.avail_in = UInt32(source.count)
      stream.pointee.next_out = target.bindMemory(to: Bytef.self).baseAddress
      stream.pointee.avail_out = UInt32(capacity)
      let status = deflate(stream, Z_FINISH)
      // With deflateBound's room, a single Z_FINISH call always completes the stream.
      precondition(status == Z_STREAM_END, "deflate did not finish: \(status)")
      return capacity - Int(stream.pointee.avail_out)
    }
  }

  /// A reusable inflate stream. Not thread-safe: one per connection (or per decoder).
  public final class Decompressor {
    private let stream: UnsafeMutablePointer<z_stream>

    public init() {
      stream = .allocate(capacity: 1)
      stream.initialize(to: z_stream())
      let status = CZlib_inflateInit2(stream, 15)
      precondition(status == Z_OK, "inflateInit2 failed: \(status)")
    }

    deinit {
      inflateEnd(stream)
      stream.deallocate()
    }

    /// Inflates `input`'s readable bytes, which must be one complete zlib stream of exactly
    /// `expectedLength` bytes, and appends the result to `output`.
    ///
    /// The caller checks `expectedLength` against its limit first; this function never writes
    /// more than `expectedLength + 1` bytes.
    ///
    /// - Throws: ``WireError`` with ``StatusCode/protocolError`` if the stream is corrupt, ends
    ///   early, goes on past `expectedLength`, or is followed by extra bytes.
    public func decompress(_ input: ByteBuffer, expectedLength: Int, into output: inout ByteBuffer)
      throws(WireError)
    {
      defer { inflateReset(stream) }
      let room = expectedLength + 1
      let outcome: (status: Int32, produced: Int, leftover: Int) = input.withUnsafeReadableBytes { source in
        var outcome: (Int32, Int, Int) = (Z_OK, 0, 0)
        output.writeWithUnsafeMutableBytes(minimumWritableBytes: room) { target in
          stream.pointee.next_in = UnsafeMutablePointer(
            mutating: source.bindMemory(to: Bytef.self).baseAddress
          )
          stream.pointee.avail_in = UInt32(source.count)
          stream.pointee.next_out = target.bindMemory(to: Bytef.self).baseAddress
          stream.pointee.avail_out = UInt32(room)
          let status = inflate(stream, Z_FINISH)
          let produced = room - Int(stream.pointee.avail_out)
          outcome = (status, produced, Int(stream.pointee.avail_in))
          // Keep what was produced only if it is exactly right; otherwise write nothing.
          return status == Z_STREAM_END && produced == expectedLength ? produced : 0
        }
        return outcome
      }
      switch outcome.status {
      case Z_STREAM_END where outcome.produced == expectedLength && outcome.leftover == 0:
        return
      case Z_STREAM_END where outcome.produced != expectedLength:
        throw .protocolViolation(
          "compressed payload inflates to \(outcome.produced) bytes, not the declared \(expectedLength)"
        )
      case Z_STREAM_END:
        throw .protocolViolation("\(outcome.leftover) bytes follow the end of the compressed payload")
      case Z_OK, Z_BUF_ERROR:
        if outcome.produced > expectedLength {
          throw .protocolViolation("compressed payload inflates past the declared \(expectedLength) bytes")
        }
        throw .protocolViolation("compressed payload is truncated")
      default:
        let reason = stream.pointee.msg.map { String(cString: $0) } ?? "error \(outcome.status)"
        throw .protocolViolation("compressed payload is corrupt: \(reason)")
      }
    }
  }
}
