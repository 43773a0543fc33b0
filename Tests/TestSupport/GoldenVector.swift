public import Foundation
import NIOCore
public import Testing
public import VietnameseAIWire

/// One file of `Protocol/vectors`, with its expectations turned into Swift values.
public struct GoldenVector: CustomTestStringConvertible, Sendable {
  public enum Expected: Equatable, Sendable {
    case frame(WireFrame)
    case requestError(StatusCode, requestID: UInt32)
  }

  public var name: String
  public var role: FrameDecoder.Role
  public var compression: Bool
  public var maxFrameSize: Int
  public var bytes: [UInt8]
  public var eof: Bool
  public var results: [Expected]
  public var connectionError: StatusCode?
  public var reencode: String

  public var testDescription: String { name }

  /// The folder of vectors, found from this file's place in the repository.
  public static let folder = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Protocol/vectors")

  public static func all() throws -> [GoldenVector] {
    let names = try FileManager.default.contentsOfDirectory(atPath: folder.path)
      .filter { $0.hasSuffix(".json") }.sorted()
    return try names.map { try GoldenVector(contentsOf: folder.appendingPathComponent($0)) }
  }

  public init(contentsOf url: URL) throws {
    let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    let decoder = try #require(object["decoder"] as? [String: Any])
    name = try #require(object["name"] as? String)
    role = (decoder["role"] as? String) == "client" ? .client : .server
    compression = try #require(decoder["compression"] as? Bool)
    maxFrameSize = try #require(decoder["max_frame_size"] as? Int)
    let hex = try #require(object["hex"] as? String).filter { !$0.isWhitespace }
    bytes = try Self.bytes(hex: hex)
    eof = try #require(object["eof"] as? Bool)
    results = try #require(object["results"] as? [[String: Any]]).map { item in
      if let status = item["request_error"] as? String {
        return .requestError(try Self.status(status), requestID: try #require(item["request_id"] as? UInt32))
      }
      return .frame(try Self.frame(item))
    }
    connectionError = try (object["connection_error"] as? String).map(Self.status)
    reencode = try #require(object["reencode"] as? String)
  }

  public static func bytes(hex: String) throws -> [UInt8] {
    let digits = Array(hex.utf8)
    guard digits.count % 2 == 0 else { throw VectorError("odd hex length") }
    return try stride(from: 0, to: digits.count, by: 2).map { i in
      guard let byte = UInt8(String(decoding: digits[i..<i + 2], as: UTF8.self), radix: 16) else {
        throw VectorError("bad hex")
      }
      return byte
    }
  }

  public static func status(_ name: String) throws -> StatusCode {
    if name.hasPrefix("UNKNOWN("), let raw = UInt16(name.dropFirst(8).dropLast()) {
      return StatusCode(rawValue: raw)
    }
    return try #require(StatusCode(name: name), "unknown status \(name)")
  }

  private static func buffer(hex: Any?) throws -> ByteBuffer {
    ByteBuffer(bytes: try bytes(hex: try #require(hex as? String)))
  }

  /// The frame a vector's JSON describes.
  public static func frame(_ m: [String: Any]) throws -> WireFrame {
    func string(_ key: String) throws -> String { try #require(m[key] as? String, "\(key)") }
    func int<T: FixedWidthInteger>(_ key: String) throws -> T {
      T(try #require(m[key] as? NSNumber, "\(key)").uint64Value)
    }
    func list(_ key: String) throws -> [UInt8] { try #require(m[key] as? [Int]).map(UInt8.init) }
    let message: WireMessage
    switch try string("type") {
    case "HELLO":
      message = .hello(
        .init(
          versions: try list("versions"),
          clientID: try string("client_id"),
          authToken: try string("auth_token"),
          compressions: try list("compressions"),
          maxFrameSize: (m["max_frame_size"] as? NSNumber).map { UInt32($0.uint64Value) }
        )
      )
    case "WELCOME":
      message = .welcome(
        .init(
          version: try int("version"),
          compression: try int("compression"),
          maxFrameSize: try int("max_frame_size"),
          maxConcurrentRequests: try int("max_concurrent_requests"),
          clientID: try string("client_id")
        )
      )
    case "PREDICT":
      message = .predict(
        .init(
          deadlineMilliseconds: try int("deadline_ms"),
          model: try string("model"),
          input: try buffer(hex: m["input_hex"])
        )
      )
    case "BATCH_PREDICT":
      message = .batchPredict(
        .init(
          deadlineMilliseconds: try int("deadline_ms"),
          model: try string("model"),
          inputs: try #require(m["inputs_hex"] as? [String]).map { try buffer(hex: $0) }
        )
      )
    case "STREAM_OPEN":
      message = .streamOpen(
        .init(
          deadlineMilliseconds: try int("deadline_ms"),
          model: try string("model"),
          prompt: try string("prompt")
        )
      )
    case "CANCEL": message = .cancel
    case "STATS_REQUEST": message = .statsRequest
    case "PING": message = .ping(try int("value"))
    case "PONG": message = .pong(try int("value"))
    case "RESULT": message = .result(try buffer(hex: m["output_hex"]))
    case "BATCH_RESULT":
      message = .batchResult(try #require(m["outputs_hex"] as? [String]).map { try buffer(hex: $0) })
    case "TOKEN": message = .token(try string("token"))
    case "STREAM_END": message = .streamEnd(tokenCount: try int("token_count"))
    case "STATS": message = .stats(json: try string("json"))
    case "ERROR":
      message = .error(
        .init(
          code: try status(try string("status")),
          retryAfterMilliseconds: try int("retry_after_ms"),
          message: try string("message")
        )
      )
    case "GOAWAY":
      message = .goAway(.init(code: try status(try string("status")), message: try string("message")))
    case let other:
      throw VectorError("unknown type \(other)")
    }
    return WireFrame(requestID: try int("request_id"), message: message)
  }
}

public struct VectorError: Error, CustomStringConvertible {
  public var description: String
  public init(_ description: String) { self.description = description }
}
