import NIOCore
import Testing
import VietnameseAIRedis

@Suite("RESP decoder")
struct RESPDecoderTests {
  static func decodeAll(_ text: String, decoder: RESPDecoder = RESPDecoder()) throws(RedisError)
    -> [RESPValue]
  {
    var buffer = ByteBuffer(string: text)
    var values: [RESPValue] = []
    while let value = try decoder.decode(&buffer) { values.append(value) }
    return values
  }

  static let replies: [(String, RESPValue)] = [
    ("+OK\r\n", .simpleString("OK")),
    ("-NOSCRIPT No matching script\r\n", .error("NOSCRIPT No matching script")),
    (":-42\r\n", .integer(-42)),
    ("$5\r\nxin\r\n\r\n", .bulkString(ByteBuffer(string: "xin\r\n"))),
    ("$0\r\n\r\n", .bulkString(ByteBuffer())),
    ("$-1\r\n", .bulkString(nil)),
    ("*-1\r\n", .array(nil)),
    ("*0\r\n", .array([])),
    (
      "*3\r\n:1\r\n*2\r\n+a\r\n$-1\r\n$5\r\nchào\r\n",
      .array([
        .integer(1), .array([.simpleString("a"), .bulkString(nil)]), .bulkString(ByteBuffer(string: "chào")),
      ])
    ),
  ]

  @Test("every reply type decodes, and a pipeline of them decodes in order")
  func types() throws {
    for (text, value) in Self.replies {
      #expect(try Self.decodeAll(text) == [value], "\(text.debugDescription)")
    }
    #expect(try Self.decodeAll(Self.replies.map(\.0).joined()) == Self.replies.map(\.1))
  }

  @Test("an incomplete reply consumes nothing, however the bytes are split")
  func split() throws {
    let text = Self.replies.map(\.0).joined()
    let bytes = Array(text.utf8)
    for cut in 0...bytes.count {
      var buffer = ByteBuffer(bytes: bytes[..<cut])
      var values: [RESPValue] = []
      while let value = try RESPDecoder().decode(&buffer) { values.append(value) }
      buffer.writeBytes(bytes[cut...])
      while let value = try RESPDecoder().decode(&buffer) { values.append(value) }
      #expect(values == Self.replies.map(\.1), "cut at \(cut)")
      #expect(buffer.readableBytes == 0)
    }
  }

  @Test(
    "bytes that are not RESP, or beyond the limits, are a protocol error",
    arguments: [
      "?what\r\n", ":12x\r\n", "$3\r\nabcd\r\n", "$-2\r\n", "*-5\r\n", "+a\rb\r\n", "$99999999999\r\n",
      "*1\r\n*1\r\n*1\r\n:1\r\n", "+" + String(repeating: "a", count: 100) + "\r\n", ":\r\n",
    ]
  )
  func refused(text: String) {
    var decoder = RESPDecoder()
    decoder.maxDepth = 2
    decoder.maxLineLength = 64
    #expect(throws: RedisError.self) { _ = try Self.decodeAll(text, decoder: decoder) }
  }

  @Test("a simple string that is not UTF-8 is a protocol error")
  func invalidUTF8() {
    var buffer = ByteBuffer(bytes: [UInt8(ascii: "+"), 0xFF, 0x0D, 0x0A])
    #expect(throws: RedisError.self) { _ = try RESPDecoder().decode(&buffer) }
  }

  @Test("a line with no end yet is waited for until it passes the line limit")
  func longLine() throws {
    var decoder = RESPDecoder()
    decoder.maxLineLength = 8
    var buffer = ByteBuffer(string: "+abcdefgh")
    #expect(try decoder.decode(&buffer) == nil)
    buffer.writeString("ij")
    #expect(throws: RedisError.self) { _ = try decoder.decode(&buffer) }
  }

  @Test("commands are written as arrays of bulk strings")
  func encoder() {
    var buffer = ByteBuffer()
    RESPEncoder.write(command: ["SET", "khóa", ""], into: &buffer)
    #expect(String(buffer: buffer) == "*3\r\n$3\r\nSET\r\n$5\r\nkhóa\r\n$0\r\n\r\n")
  }
}
