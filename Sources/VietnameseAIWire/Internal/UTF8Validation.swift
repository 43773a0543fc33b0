package import NIOCore

/// Strict UTF-8 validation for the text fields of frames.
///
/// The standard library validates through a generic entry point that looks up type metadata
/// on every call, which for a stream of short tokens cost more than the rest of decoding a
/// frame. This validator is plain code over the bytes: eight ASCII bytes at a time, then one
/// scalar at a time with the rules of RFC 3629 (no overlong forms, no surrogates, nothing past
/// U+10FFFF, no truncated sequences).
enum UTF8Validation {
  /// Whether `bytes` is well-formed UTF-8.
  static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
    guard let base = bytes.baseAddress else { return true }
    let count = bytes.count
    var index = 0
    while index < count {
      // ASCII runs, a word at a time.
      while index + 8 <= count {
        let word = base.loadUnaligned(fromByteOffset: index, as: UInt64.self)
        if word & 0x8080_8080_8080_8080 != 0 { break }
        index += 8
      }
      guard index < count else { return true }
      let lead = base.load(fromByteOffset: index, as: UInt8.self)
      if lead < 0x80 {
        index += 1
        continue
      }
      let length: Int
      var lower: UInt8 = 0x80
      var upper: UInt8 = 0xBF
      switch lead {
      case 0xC2...0xDF: length = 2
      case 0xE0:
        length = 3
        lower = 0xA0
      case 0xE1...0xEC, 0xEE...0xEF: length = 3
      case 0xED:
        length = 3
        upper = 0x9F
      case 0xF0:
        length = 4
        lower = 0x90
      case 0xF1...0xF3: length = 4
      case 0xF4:
        length = 4
        upper = 0x8F
      default: return false
      }
      guard index + length <= count else { return false }
      let second = base.load(fromByteOffset: index + 1, as: UInt8.self)
      guard second >= lower && second <= upper else { return false }
      var next = index + 2
      while next < index + length {
        let byte = base.load(fromByteOffset: next, as: UInt8.self)
        guard byte & 0xC0 == 0x80 else { return false }
        next += 1
      }
      index += length
    }
    return true
  }
}

extension ByteBuffer {
  /// The readable bytes as a string, if they are well-formed UTF-8 (see ``UTF8Validation``).
  package var validatedUTF8Text: String? {
    withUnsafeReadableBytes { bytes in
      UTF8Validation.isValid(bytes) ? String(decoding: bytes, as: UTF8.self) : nil
    }
  }

  /// Reads `length` bytes as a string if they are well-formed UTF-8; consumes nothing and
  /// returns `nil` otherwise (or if fewer bytes are readable).
  mutating func readValidatedUTF8(length: Int) -> String? {
    guard length <= readableBytes else { return nil }
    let text = withUnsafeReadableBytes { bytes -> String? in
      let field = UnsafeRawBufferPointer(rebasing: bytes[..<length])
      guard UTF8Validation.isValid(field) else { return nil }
      return String(decoding: field, as: UTF8.self)
    }
    if text != nil { moveReaderIndex(forwardBy: length) }
    return text
  }
}
