/// Server-Sent Events framing for token streams.
///
/// Each token becomes `data: {"token": "..."}` followed by a blank line; the end of a stream is
/// `data: [DONE]`; an error is `data: {"error": "..."}`. The JSON string escaping follows
/// RFC 8259 and additionally escapes U+2028 and U+2029, which JavaScript string literals did not
/// accept before ES2019, so the payload is safe to splice into any client.
public enum SSEEvent {
  /// The event that marks the end of a stream.
  public static let done = "data: [DONE]\n\n"

  /// The event carrying one token.
  public static func token(_ token: String) -> String {
    "data: {\"token\": \(jsonString(token))}\n\n"
  }

  /// The event carrying an error message.
  public static func error(_ message: String) -> String {
    "data: {\"error\": \(jsonString(message))}\n\n"
  }

  /// `text` as a quoted JSON string.
  public static func jsonString(_ text: String) -> String {
    // Most text needs no escape; 0xE2 leads U+2028 and U+2029 (and others, which the slow
    // path copies as they are).
    if !text.utf8.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5C || $0 == 0x7F || $0 == 0xE2 }) {
      return "\"" + text + "\""
    }
    var out = "\""
    out.reserveCapacity(text.utf8.count + 2)
    for scalar in text.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case "\u{08}": out += "\\b"
      case "\u{0C}": out += "\\f"
      case "\u{2028}": out += "\\u2028"
      case "\u{2029}": out += "\\u2029"
      default:
        if scalar.value < 0x20 || scalar.value == 0x7F {
          out += "\\u00"
          out += hexDigit(scalar.value >> 4)
          out += hexDigit(scalar.value & 0xF)
        } else {
          out.unicodeScalars.append(scalar)
        }
      }
    }
    out += "\""
    return out
  }

  private static func hexDigit(_ value: UInt32) -> String {
    String(UnicodeScalar(UInt8(value < 10 ? 48 + value : 87 + value)))
  }
}
