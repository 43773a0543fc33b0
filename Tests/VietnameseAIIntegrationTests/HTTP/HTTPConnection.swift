import Foundation
import NIOCore
import NIOPosix
import TestSupport
import Testing
import VietnameseAIClient
@_spi(Locking) import VietnameseAIConcurrency
import VietnameseAIServer

/// A TCP connection to the HTTP door that sends exactly the bytes a test gives it and parses
/// the responses itself: the tests see every header and every byte of a stream as it arrives,
/// and can send what no HTTP library would.
final class HTTPConnection: Sendable {
  private final class Inbox: Sendable {
    struct State {
      var bytes: [UInt8] = []
      var closed = false
    }
    let state = Locked(State())
  }

  private final class Collector: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    let inbox: Inbox

    init(inbox: Inbox) { self.inbox = inbox }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      let bytes = unwrapInboundIn(data)
      inbox.state.withLock { $0.bytes.append(contentsOf: bytes.readableBytesView) }
    }

    func channelInactive(context: ChannelHandlerContext) {
      inbox.state.withLock { $0.closed = true }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
      if case .inputClosed = event as? ChannelEvent { inbox.state.withLock { $0.closed = true } }
      context.fireUserInboundEventTriggered(event)
    }
  }

  private let channel: any Channel
  private let inbox: Inbox

  private init(channel: any Channel, inbox: Inbox) {
    self.channel = channel
    self.inbox = inbox
  }

  /// - Parameter reading: Whether the connection reads what arrives; one that does not leaves
  ///   the server's bytes in the kernel's buffers, as a stalled client does.
  static func connect(port: Int, reading: Bool = true) async throws -> HTTPConnection {
    let inbox = Inbox()
    let collector = Collector(inbox: inbox)
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .channelOption(.autoRead, value: reading)
      .channelOption(.allowRemoteHalfClosure, value: true)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(collector) }
      }
      .connect(host: "127.0.0.1", port: port)
      .get()
    return HTTPConnection(channel: channel, inbox: inbox)
  }

  func send(_ text: String) async throws {
    try await channel.writeAndFlush(ByteBuffer(string: text))
  }

  func send(_ bytes: [UInt8]) async throws {
    try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
  }

  /// Sends one request with a `Content-Length`.
  func send(
    _ method: String,
    _ path: String,
    headers: [(String, String)] = [],
    body: [UInt8] = []
  ) async throws {
    var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \(body.count)\r\n"
    for (name, value) in headers { head += "\(name): \(value)\r\n" }
    try await send(Array((head + "\r\n").utf8) + body)
  }

  func startReading() async throws {
    try await channel.setOption(.autoRead, value: true).get()
  }

  func close() async {
    try? await channel.close()
  }

  var isClosed: Bool { inbox.state.withLock { $0.closed } }

  /// Everything received and not yet taken by ``response(timeout:)``.
  var received: [UInt8] { inbox.state.withLock { $0.bytes } }

  var receivedText: String { String(decoding: received, as: UTF8.self) }

  /// Waits for the next complete response and takes it off what was received.
  func response(timeout: Duration = .seconds(60)) async throws -> HTTPTestResponse {
    var parsed: HTTPTestResponse?
    try await eventually("a complete HTTP response", timeout: timeout) {
      inbox.state.withLock { state in
        guard let (response, used) = HTTPTestResponse.parse(state.bytes, complete: state.closed) else {
          return false
        }
        parsed = response
        state.bytes.removeFirst(used)
        return true
      }
    }
    return parsed!
  }

  /// Waits until what was received contains `text`.
  func waitFor(_ text: String, timeout: Duration = .seconds(60)) async throws {
    try await eventually("\(text.debugDescription) from the server", timeout: timeout) {
      receivedText.contains(text)
    }
  }

  func waitUntilClosed(timeout: Duration = .seconds(60)) async throws {
    try await eventually("the server closes the connection", timeout: timeout) { isClosed }
  }
}

/// One HTTP response as the server sent it, chunked bodies joined.
struct HTTPTestResponse {
  var status: Int
  /// Header names lower-cased.
  var headers: [String: String]
  var body: [UInt8]

  var text: String { String(decoding: body, as: UTF8.self) }

  /// The body as JSON.
  func json() throws -> [String: Any] {
    guard let object = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else {
      throw HTTPTestError("not a JSON object: \(text)")
    }
    return object
  }

  /// The `data:` payloads of an SSE body, in order.
  var events: [String] {
    text.components(separatedBy: "\n\n").compactMap { event in
      event.hasPrefix("data: ") ? String(event.dropFirst(6)) : nil
    }
  }

  /// The error message of an OpenAI-shaped or an inference-shaped error body.
  func errorMessage() throws -> String {
    let object = try json()
    if let nested = object["error"] as? [String: Any], let message = nested["message"] as? String {
      return message
    }
    return object["error"] as? String ?? ""
  }

  /// A response parsed from the start of `bytes`, and how many bytes it took; `nil` if it is
  /// not all there yet. A body without a length ends where the connection closed (`complete`).
  static func parse(_ bytes: [UInt8], complete: Bool) -> (HTTPTestResponse, Int)? {
    let separator: [UInt8] = Array("\r\n\r\n".utf8)
    guard let headEnd = bytes.firstRange(of: separator) else { return nil }
    let head = String(decoding: bytes[..<headEnd.lowerBound], as: UTF8.self)
    var lines = head.components(separatedBy: "\r\n")
    let statusLine = lines.removeFirst().split(separator: " ")
    guard statusLine.count >= 2, let status = Int(statusLine[1]) else { return nil }
    var headers: [String: String] = [:]
    for line in lines {
      guard let colon = line.firstIndex(of: ":") else { continue }
      headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
        in: .whitespaces
      )
    }
    var position = headEnd.upperBound
    if let length = headers["content-length"].flatMap(Int.init) {
      guard bytes.count - position >= length else { return nil }
      let body = Array(bytes[position..<position + length])
      return (HTTPTestResponse(status: status, headers: headers, body: body), position + length)
    }
    if headers["transfer-encoding"]?.lowercased() == "chunked" {
      var body: [UInt8] = []
      while true {
        guard let lineEnd = bytes[position...].firstRange(of: Array("\r\n".utf8)) else { return nil }
        let sizeText = String(decoding: bytes[position..<lineEnd.lowerBound], as: UTF8.self)
        guard let size = Int(sizeText.split(separator: ";")[0], radix: 16) else { return nil }
        let start = lineEnd.upperBound
        guard bytes.count >= start + size + 2 else { return nil }
        if size == 0 {
          return (HTTPTestResponse(status: status, headers: headers, body: body), start + 2)
        }
        body.append(contentsOf: bytes[start..<start + size])
        position = start + size + 2
      }
    }
    guard complete else { return nil }
    return (HTTPTestResponse(status: status, headers: headers, body: Array(bytes[position...])), bytes.count)
  }
}

struct HTTPTestError: Error, CustomStringConvertible {
  var description: String
  init(_ description: String) { self.description = description }
}

extension TestServer {
  /// One request on a connection of its own, and its response.
  func http(
    _ method: String,
    _ path: String,
    headers: [(String, String)] = [],
    json: String? = nil,
    body: [UInt8]? = nil
  ) async throws -> HTTPTestResponse {
    let connection = try await HTTPConnection.connect(port: httpPort!)
    defer { Task { await connection.close() } }
    var fields = headers
    if json != nil { fields.append(("Content-Type", "application/json")) }
    try await connection.send(method, path, headers: fields, body: body ?? Array((json ?? "").utf8))
    return try await connection.response()
  }

  /// The HTTP test configuration: the usual one with the HTTP door on a free port.
  static func httpConfiguration(_ adjust: (inout RPCServer.Configuration) -> Void = { _ in })
    -> RPCServer.Configuration
  {
    configuration { configuration in
      var http = RPCServer.Configuration.HTTP()
      http.port = 0
      configuration.http = http
      adjust(&configuration)
    }
  }
}
