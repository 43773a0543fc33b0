// The seed's "Production Deployment Example", in Swift, in one process: a rate limiter in
// front of a dynamic batcher and a token streamer, then the combined statistics as JSON.
//
// It stands in for the RPC server until that exists: `swift run vietnamese-ai-demo`.

import Foundation
import VietnameseAI

/// A stand-in for an accelerator: a batch costs a fixed 5 ms plus 50 µs per item, so serving
/// 32 requests in one batch is far cheaper than 32 batches of one.
struct SimulatedModel: MoHinh {
  func duDoan(_ dauVao: String) async throws -> String {
    try await duDoanBatch([dauVao])[0]
  }

  func duDoanBatch(_ dauVao: [String]) async throws -> [String] {
    try await Task.sleep(for: .milliseconds(5) + .microseconds(50) * dauVao.count)
    return dauVao.map { "nhãn(\($0))" }
  }
}

/// Streams the prompt back syllable by syllable (Vietnamese words are single syllables
/// separated by spaces), followed by a fixed answer.
@Sendable func generate(_ prompt: String) -> [String] {
  let answer = "Trí tuệ nhân tạo đang thay đổi cách chúng ta làm việc và học tập."
  return (prompt + ": " + answer).split(separator: " ").map { $0 + " " }
}

let limiter = BoGioiHanTocDo(goiY: 1000, cuaSo: .seconds(60))
let batchServer = MayChuBatch(
  moHinh: SimulatedModel(),
  kichThuocBatch: 32,
  timeoutBatch: .milliseconds(50),
  soWorker: 4
)
try batchServer.batDau()
let streamServer = MayChuStream(hamSinh: generate, tocDoToken: .milliseconds(10), toiDaClient: 50)

enum Answer {
  case rateLimited(retryAfter: Duration?)
  case result(String)
  case stream(SSEStream)
}

func handleRequest(clientID: String, prompt: String, stream: Bool = false) async throws -> Answer {
  let decision = limiter.kiemTra(clientID)
  guard decision.choPhep else { return .rateLimited(retryAfter: decision.retryAfter) }
  if stream {
    return .stream(streamServer.sinhSSE(prompt, clientID: clientID))
  }
  return .result(try await batchServer.duDoan(prompt))
}

// 200 concurrent predictions from 10 clients: they are gathered into batches.
let started = ContinuousClock.now
try await withThrowingTaskGroup(of: Void.self) { group in
  for i in 0..<200 {
    group.addTask { _ = try await handleRequest(clientID: "client_\(i % 10)", prompt: "câu \(i)") }
  }
  try await group.waitForAll()
}
print("200 predictions in \(ContinuousClock.now - started)")

if case .stream(let events) = try await handleRequest(
  clientID: "client_1",
  prompt: "Viết bài luận về AI",
  stream: true
) {
  for try await event in events { print(event, terminator: "") }
}

let stats: [String: any Encodable] = [
  "batch": batchServer.layThongKe(),
  "stream": streamServer.layThongKe(),
  "rate_limit": limiter.layThongKe(),
]
let encoder = JSONEncoder()
encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
for key in stats.keys.sorted() {
  let json = try encoder.encode(stats[key]!)
  print("\(key): \(String(decoding: json, as: UTF8.self))")
}
await batchServer.dung()
