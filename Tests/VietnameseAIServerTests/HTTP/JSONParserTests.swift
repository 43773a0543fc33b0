import Foundation
import NIOCore
import Testing

@testable import VietnameseAIServer

@Suite("JSONParser")
struct JSONParserTests {
  func parse(_ text: String) -> Result<JSONValue, JSONParser.Failure> {
    JSONParser.parse(ByteBuffer(string: text))
  }

  func parse(bytes: [UInt8]) -> Result<JSONValue, JSONParser.Failure> {
    JSONParser.parse(ByteBuffer(bytes: bytes))
  }

  @Test("reads every kind of value, with whitespace anywhere it may be")
  func values() throws {
    let value = try parse(
      #" { "a" : [ 1 , -2.5e1 , 0 , true , false , null ] , "b" : { } , "c" : [ ] , "d" : "x" } "#
    ).get()
    #expect(
      value
        == .object([
          "a": .array([.number(1), .number(-25), .number(0), .bool(true), .bool(false), .null]),
          "b": .object([:]), "c": .array([]), "d": .string("x"),
        ])
    )
  }

  @Test("decodes escapes, surrogate pairs and UTF-8 text")
  func strings() throws {
    #expect(try parse(#""a\"\\\/\b\f\n\r\t""#).get() == .string("a\"\\/\u{8}\u{c}\n\r\t"))
    #expect(try parse(#""\u00e9\u1EA1 \ud83d\ude00""#).get() == .string("éạ 😀"))
    #expect(try parse(#""Tiếng Việt""#).get() == .string("Tiếng Việt"))
  }

  @Test("numbers: integers exactly, the rest as Swift's Double parses them")
  func numbers() throws {
    #expect(try parse("123456789012345").get() == .number(123_456_789_012_345))
    #expect(try parse("-0").get() == .number(-0.0))
    #expect(try parse("9007199254740993").get() == .number(Double("9007199254740993")!))
    #expect(try parse("0.1").get() == .number(0.1))
    #expect(try parse("1E-3").get() == .number(0.001))
  }

  @Test(
    "refuses what RFC 8259 does not allow, saying where",
    arguments: [
      "", " ", "01", "-", "1.", ".5", "1e", "+1", "[1,]", "{\"a\":1,}", "{a:1}", "{\"a\" 1}", "[1 2]",
      "\"open", "\"\\x\"", "\"\\u12\"", "\"\\ud83d\"", "\"\\ude00\"", "tru", "nul", "[1] 2", "NaN", "1e999",
      "\"tab\there\"",
    ]
  )
  func refusals(text: String) {
    guard case .failure(let failure) = parse(text) else {
      Issue.record("accepted \(text.debugDescription)")
      return
    }
    #expect(failure.offset >= 0 && failure.offset <= text.utf8.count)
    #expect(!failure.reason.isEmpty)
  }

  @Test("refuses strings that are not UTF-8")
  func invalidUTF8() {
    #expect(throws: JSONParser.Failure.self) { try parse(bytes: [0x22, 0xFF, 0x22]).get() }
    #expect(throws: JSONParser.Failure.self) { try parse(bytes: [0x22, 0x5C, 0x6E, 0xC3, 0x22]).get() }
  }

  @Test("nesting is bounded, so a hostile body cannot exhaust the stack")
  func depth() {
    let allowed =
      String(repeating: "[", count: JSONParser.maxDepth) + String(repeating: "]", count: JSONParser.maxDepth)
    #expect((try? parse(allowed).get()) != nil)
    let deep = String(repeating: "[", count: 100_000)
    guard case .failure(let failure) = parse(deep) else {
      Issue.record("accepted")
      return
    }
    #expect(failure.reason.contains("nested"))
  }

  @Test("agrees with Foundation on generated documents")
  func agreesWithFoundation() throws {
    var generator = SystemRandomNumberGenerator()
    /// A value for JSONSerialization, and the value the parser must read back.
    func make(_ depth: Int) -> (Any, JSONValue) {
      switch Int.random(in: 0..<(depth > 3 ? 4 : 6), using: &generator) {
      case 0:
        let number = Int.random(in: -1_000_000...1_000_000, using: &generator)
        return (number, .number(Double(number)))
      case 1:
        let number = Double.random(in: -1e6...1e6, using: &generator)
        return (number, .number(number))
      case 2:
        let alphabet = Array("aăâ\"\\/\n\t😀 xyz\u{1}")
        let text = String(
          (0..<Int.random(in: 0..<12, using: &generator)).map { _ in alphabet.randomElement()! }
        )
        return (text, .string(text))
      case 3:
        let flag = Bool.random(using: &generator)
        return (flag, .bool(flag))
      case 4:
        let elements = (0..<Int.random(in: 0..<5, using: &generator)).map { _ in make(depth + 1) }
        return (elements.map(\.0), .array(elements.map(\.1)))
      default:
        let fields = (0..<Int.random(in: 0..<5, using: &generator)).map { ("k\($0)", make(depth + 1)) }
        return (
          Dictionary(uniqueKeysWithValues: fields.map { ($0.0, $0.1.0) }),
          .object(Dictionary(uniqueKeysWithValues: fields.map { ($0.0, $0.1.1) }))
        )
      }
    }
    for _ in 0..<300 {
      let (document, expected) = make(0)
      let data = try JSONSerialization.data(withJSONObject: ["root": document])
      #expect(try JSONParser.parse(ByteBuffer(bytes: data)).get() == .object(["root": expected]))
    }
  }
}
