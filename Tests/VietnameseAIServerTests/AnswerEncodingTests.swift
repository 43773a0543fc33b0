import NIOCore
import Testing
import VietnameseAI
import VietnameseAIServer

/// The answers of one delivery share one buffer; each must still be exactly its own output.
@Suite("Answers encoded together")
struct AnswerEncodingTests {
  struct Refused: Error {}

  @Test("each answer is its own output's bytes, in order, errors in their places")
  func mixedOutcomes() throws {
    let outcomes: [BatchSink<String>.Outcome] = [
      .init(tag: 7, result: .success("một")),
      .init(tag: 8, result: .failure(Refused())),
      .init(tag: 9, result: .success("")),
      .init(tag: 10, result: .success(String(repeating: "hai ", count: 300))),
      .init(tag: 11, result: .failure(Refused())),
      .init(tag: 12, result: .success("ba")),
    ]
    let answers = ServedModel.answers(outcomes) { outputs in
      ServedModel.inOneBuffer(outputs, size: { $0.utf8.count }, write: { $1.writeString($0) })
    }
    #expect(answers.map(\.tag) == outcomes.map(\.tag))
    for (answer, outcome) in zip(answers, outcomes) {
      switch (answer.result, outcome.result) {
      case (.success(let bytes), .success(let output)):
        #expect(String(buffer: bytes) == output)
      case (.failure(let error), .failure):
        #expect(error is Refused)
      default:
        Issue.record("answer \(answer.tag) does not match its outcome")
      }
    }
  }

  @Test("no outputs, or only errors, encode to nothing")
  func nothingToEncode() {
    #expect(ServedModel.inOneBuffer([[UInt8]](), size: { $0.count }, write: { $1.writeBytes($0) }).isEmpty)
    let failures: [BatchSink<[UInt8]>.Outcome] = [.init(tag: 1, result: .failure(Refused()))]
    let answers = ServedModel.answers(failures) { outputs in
      ServedModel.inOneBuffer(outputs, size: { $0.count }, write: { $1.writeBytes($0) })
    }
    #expect(answers.count == 1)
  }
}
