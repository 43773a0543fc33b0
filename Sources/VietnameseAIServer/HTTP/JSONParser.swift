import NIOCore

/// Reads a JSON document into a ``JSONValue``, for the bodies on the predict path.
///
/// Foundation's `JSONDecoder` learns a value's type only by trying each in turn, and every
/// wrong guess throws an error that carries its coding path: on an infer of one short input
/// that cost more than the rest of the request. This reader looks at the next byte instead.
/// It takes RFC 8259 JSON only, valid UTF-8 and at most ``maxDepth`` levels of nesting, so a
/// hostile body cannot exhaust the stack.
struct JSONParser {
  struct Failure: Error, Equatable {
    /// The offset of the byte where reading stopped.
    var offset: Int
    var reason: String
  }

  static let maxDepth = 64

  private let bytes: UnsafeRawBufferPointer
  private var position = 0
  private var depth = 0

  private init(bytes: UnsafeRawBufferPointer) {
    self.bytes = bytes
  }

  static func parse(_ buffer: ByteBuffer) -> Result<JSONValue, Failure> {
    buffer.withUnsafeReadableBytes { bytes in
      var parser = JSONParser(bytes: bytes)
      do throws(Failure) {
        let value = try parser.value()
        parser.skipWhitespace()
        guard parser.position == bytes.count else { throw parser.failure("text after the value") }
        return .success(value)
      } catch {
        return .failure(error)
      }
    }
  }

  // MARK: Values

  private mutating func value() throws(Failure) -> JSONValue {
    skipWhitespace()
    guard position < bytes.count else { throw failure("the text ends where a value should be") }
    switch bytes[position] {
    case UInt8(ascii: "{"): return try object()
    case UInt8(ascii: "["): return try array()
    case UInt8(ascii: "\""): return .string(try string())
    case UInt8(ascii: "t"): return try literal("true", .bool(true))
    case UInt8(ascii: "f"): return try literal("false", .bool(false))
    case UInt8(ascii: "n"): return try literal("null", .null)
    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
    default: throw failure("no value starts with this byte")
    }
  }

  private mutating func object() throws(Failure) -> JSONValue {
    try enter()
    position += 1
    var fields: [String: JSONValue] = [:]
    skipWhitespace()
    if take(UInt8(ascii: "}")) {
      depth -= 1
      return .object(fields)
    }
    while true {
      skipWhitespace()
      guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
        throw failure("an object's key must be a string")
      }
      let key = try string()
      skipWhitespace()
      guard take(UInt8(ascii: ":")) else { throw failure("a key must be followed by ':'") }
      fields[key] = try value()
      skipWhitespace()
      if take(UInt8(ascii: ",")) { continue }
      guard take(UInt8(ascii: "}")) else { throw failure("expected ',' or '}' in an object") }
      depth -= 1
      return .object(fields)
    }
  }

  private mutating func array() throws(Failure) -> JSONValue {
    try enter()
    position += 1
    var elements: [JSONValue] = []
    skipWhitespace()
    if take(UInt8(ascii: "]")) {
      depth -= 1
      return .array(elements)
    }
    while true {
      elements.append(try value())
      skipWhitespace()
      if take(UInt8(ascii: ",")) { continue }
      guard take(UInt8(ascii: "]")) else { throw failure("expected ',' or ']' in an array") }
      depth -= 1
      return .array(elements)
    }
  }

  private mutating func enter() throws(Failure) {
    depth += 1
    guard depth <= Self.maxDepth else { throw failure("nested deeper than \(Self.maxDepth) levels") }
  }

  private mutating func literal(_ word: StaticString, _ value: JSONValue) throws(Failure) -> JSONValue {
    let expected = UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
    guard bytes.count - position >= expected.count,
      bytes[position..<position + expected.count].elementsEqual(expected)
    else { throw failure("not a JSON literal") }
    position += expected.count
    return value
  }

  // MARK: Strings

  private mutating func string() throws(Failure) -> String {
    position += 1
    let start = position
    // The common case: no escapes, so the bytes between the quotes are the string.
    while position < bytes.count {
      let byte = bytes[position]
      if byte == UInt8(ascii: "\"") {
        let text = try utf8(UnsafeRawBufferPointer(rebasing: bytes[start..<position]), at: start)
        position += 1
        return text
      }
      if byte == UInt8(ascii: "\\") { break }
      guard byte >= 0x20 else { throw failure("a control character inside a string") }
      position += 1
    }
    var decoded = Array(bytes[start..<position])
    while position < bytes.count {
      let byte = bytes[position]
      position += 1
      switch byte {
      case UInt8(ascii: "\""):
        guard let text = String(validating: decoded, as: UTF8.self) else {
          throw Failure(offset: start, reason: "a string that is not valid UTF-8")
        }
        return text
      case UInt8(ascii: "\\"):
        try escape(into: &decoded)
      case ..<0x20:
        position -= 1
        throw failure("a control character inside a string")
      default:
        decoded.append(byte)
      }
    }
    throw failure("a string without its closing quote")
  }

  private mutating func escape(into decoded: inout [UInt8]) throws(Failure) {
    guard position < bytes.count else { throw failure("a string without its closing quote") }
    let byte = bytes[position]
    position += 1
    switch byte {
    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): decoded.append(byte)
    case UInt8(ascii: "b"): decoded.append(0x08)
    case UInt8(ascii: "f"): decoded.append(0x0C)
    case UInt8(ascii: "n"): decoded.append(0x0A)
    case UInt8(ascii: "r"): decoded.append(0x0D)
    case UInt8(ascii: "t"): decoded.append(0x09)
    case UInt8(ascii: "u"):
      var scalar = UInt32(try hex4())
      if (0xD800..<0xDC00).contains(scalar) {
        guard take(UInt8(ascii: "\\")), take(UInt8(ascii: "u")) else {
          throw failure("a high surrogate without its low surrogate")
        }
        let low = UInt32(try hex4())
        guard (0xDC00..<0xE000).contains(low) else {
          throw failure("a high surrogate without its low surrogate")
        }
        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
      }
      guard let unicode = Unicode.Scalar(scalar) else { throw failure("a lone low surrogate") }
      decoded.append(contentsOf: UTF8.encode(unicode)!)
    default:
      throw failure("an unknown escape")
    }
  }

  private mutating func hex4() throws(Failure) -> UInt16 {
    guard bytes.count - position >= 4 else { throw failure("\\u needs four hex digits") }
    var value: UInt16 = 0
    for _ in 0..<4 {
      let byte = bytes[position]
      let digit: UInt8
      switch byte {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
      case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
      case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
      default: throw failure("\\u needs four hex digits")
      }
      value = value << 4 | UInt16(digit)
      position += 1
    }
    return value
  }

  private func utf8(_ raw: UnsafeRawBufferPointer, at offset: Int) throws(Failure) -> String {
    guard let text = String(validating: raw, as: UTF8.self) else {
      throw Failure(offset: offset, reason: "a string that is not valid UTF-8")
    }
    return text
  }

  // MARK: Numbers

  private mutating func number() throws(Failure) -> Double {
    let start = position
    _ = take(UInt8(ascii: "-"))
    if take(UInt8(ascii: "0")) {
      // A leading zero stands alone.
    } else {
      guard digits() > 0 else { throw failure("a number without digits") }
    }
    var integral = true
    if take(UInt8(ascii: ".")) {
      integral = false
      guard digits() > 0 else { throw failure("a fraction without digits") }
    }
    if take(UInt8(ascii: "e")) || take(UInt8(ascii: "E")) {
      integral = false
      if !take(UInt8(ascii: "+")) { _ = take(UInt8(ascii: "-")) }
      guard digits() > 0 else { throw failure("an exponent without digits") }
    }
    let text = UnsafeRawBufferPointer(rebasing: bytes[start..<position])
    // Integers of up to 15 digits are exact in a Double: no need for the slower parse.
    if integral, text.count <= 15 {
      var value: Int64 = 0
      var negative = false
      for byte in text {
        if byte == UInt8(ascii: "-") {
          negative = true
        } else {
          value = value * 10 + Int64(byte - UInt8(ascii: "0"))
        }
      }
      return Double(negative ? -value : value)
    }
    guard let value = Double(String(decoding: text, as: UTF8.self)), value.isFinite else {
      throw Failure(offset: start, reason: "a number out of range")
    }
    return value
  }

  private mutating func digits() -> Int {
    let start = position
    while position < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[position]) {
      position += 1
    }
    return position - start
  }

  // MARK: Bytes

  private mutating func skipWhitespace() {
    while position < bytes.count {
      switch bytes[position] {
      case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"): position += 1
      default: return
      }
    }
  }

  private mutating func take(_ byte: UInt8) -> Bool {
    guard position < bytes.count, bytes[position] == byte else { return false }
    position += 1
    return true
  }

  private func failure(_ reason: String) -> Failure {
    Failure(offset: position, reason: reason)
  }
}
