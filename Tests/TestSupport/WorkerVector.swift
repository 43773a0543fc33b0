public import Foundation
import NIOCore
public import Testing
public import VietnameseAIWire

/// One file of `Protocol/vectors/worker` (the worker protocol, PROTOCOL.md §11), with its
/// expectations turned into Swift values.
public struct WorkerVector: CustomTestStringConvertible, Sendable {
  public var name: String
  public var role: WorkerFrameCodec.Role
  public var maxFrameSize: Int
  public var bytes: [UInt8]
  public var results: [WorkerFrame]
  public var connectionError: StatusCode?
  public var reencode: String

  public var testDescription: String { name }

  public static let folder = GoldenVector.folder.appendingPathComponent("worker")

  public static func all() throws -> [WorkerVector] {
    let names = try FileManager.default.contentsOfDirectory(atPath: folder.path)
      .filter { $0.hasSuffix(".json") }.sorted()
    return try names.map { try WorkerVector(contentsOf: folder.appendingPathComponent($0)) }
  }

  public init(contentsOf url: URL) throws {
    let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    let decoder = try #require(object["decoder"] as? [String: Any])
    name = try #require(object["name"] as? String)
    role = (decoder["role"] as? String) == "worker" ? .worker : .server
    maxFrameSize = try #require(decoder["max_frame_size"] as? Int)
    bytes = try GoldenVector.bytes(hex: try #require(object["hex"] as? String).filter { !$0.isWhitespace })
    results = try #require(object["results"] as? [[String: Any]]).map(Self.frame)
    connectionError = try (object["connection_error"] as? String).map(GoldenVector.status)
    reencode = try #require(object["reencode"] as? String)
  }

  /// The frame a vector's JSON describes.
  public static func frame(_ m: [String: Any]) throws -> WorkerFrame {
    func string(_ key: String, in object: [String: Any] = m) throws -> String {
      try #require(object[key] as? String, "\(key)")
    }
    func int<T: FixedWidthInteger>(_ key: String, in object: [String: Any] = m) throws -> T {
      T(try #require(object[key] as? NSNumber, "\(key)").uint64Value)
    }
    func buffers(_ key: String) throws -> [ByteBuffer] {
      try #require(m[key] as? [String]).map { ByteBuffer(bytes: try GoldenVector.bytes(hex: $0)) }
    }
    let message: WorkerMessage
    switch try string("type") {
    case "WORKER_HELLO":
      let declarations = try #require(m["declarations"] as? [[String: Any]]).map { d in
        WorkerMessage.Declaration(
          name: try string("name", in: d),
          kind: try string("kind", in: d) == "model" ? .model : .generator,
          input: try string("input", in: d) == "text" ? .text : .bytes,
          output: try #require(
            ["bytes": .bytes, "text": .text, "vector": .vector][try string("output", in: d)]
          ),
          dimensions: try int("dimensions", in: d),
          preferredBatchSize: try int("preferred_batch_size", in: d),
          concurrency: try int("concurrency", in: d)
        )
      }
      message = .hello(
        .init(
          versions: try #require(m["versions"] as? [Int]).map(UInt8.init),
          workerName: try string("worker_name"),
          authToken: try string("auth_token"),
          declarations: declarations
        )
      )
    case "BATCH_DONE": message = .batchDone(try buffers("outputs_hex"))
    case "TOKENS": message = .tokens(try #require(m["tokens"] as? [String]))
    case "GENERATE_DONE": message = .generateDone(tokenCount: try int("token_count"))
    case "WORKER_WELCOME":
      message = .welcome(
        .init(
          version: try int("version"),
          maxFrameSize: try int("max_frame_size"),
          heartbeatIntervalMilliseconds: try int("heartbeat_interval_ms"),
          heartbeatTimeoutMilliseconds: try int("heartbeat_timeout_ms")
        )
      )
    case "RUN_BATCH":
      message = .runBatch(
        .init(
          deadlineMilliseconds: try int("deadline_ms"),
          model: try string("model"),
          inputs: try buffers("inputs_hex")
        )
      )
    case "GENERATE":
      message = .generate(
        .init(
          deadlineMilliseconds: try int("deadline_ms"),
          generator: try string("generator"),
          prompt: try string("prompt"),
          maxTokens: try int("max_tokens"),
          window: try int("window"),
          stops: try #require(m["stop"] as? [String])
        )
      )
    case "CANCEL_WORK": message = .cancelWork
    case "CREDIT": message = .credit(try int("tokens"))
    case "SHUTDOWN": message = .shutdown(graceMilliseconds: try int("grace_ms"))
    case "PING": message = .ping(try int("value"))
    case "PONG": message = .pong(try int("value"))
    case "ERROR":
      message = .error(
        .init(
          code: try GoldenVector.status(try string("status")),
          retryAfterMilliseconds: try int("retry_after_ms"),
          message: try string("message")
        )
      )
    case let other:
      throw VectorError("unknown worker frame type \(other)")
    }
    return WorkerFrame(requestID: try int("request_id"), message: message)
  }
}
