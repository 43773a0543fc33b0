import Testing

@testable import VietnameseAIServer

/// Tokens per window as GCRA with debt, on plain values.
@Suite("Token budget")
struct TokenBudgetTests {
  /// 100 tokens a second: one every 10 ms.
  let parameters = TokenBudget.Parameters(limit: 100, window: .seconds(1))
  let ms: Int64 = 1_000_000

  @Test("a stream opens while one token is free; its prompt and tokens may run into debt")
  func debt() {
    var budget = TokenBudget(now: 0)
    #expect(budget.open(prompt: 60, now: 0, parameters) == nil)
    // 40 left: opens, and its prompt of 50 takes the budget 10 into debt.
    #expect(budget.open(prompt: 50, now: 0, parameters) == nil)
    // Until the debt and one token have come back: 11 tokens of 10 ms.
    #expect(budget.open(prompt: 1, now: 0, parameters) == .milliseconds(110))
    // Generated tokens are charged whatever the budget says.
    budget.spend(30, now: 0, parameters)
    #expect(budget.retryAfter(now: 0, parameters) == .milliseconds(410))
    #expect(budget.retryAfter(now: 400 * ms, parameters) == .milliseconds(10))
    #expect(budget.open(prompt: 1, now: 410 * ms, parameters) == nil)
  }

  @Test("a quiet client is back to the whole allowance, no more")
  func refill() {
    var budget = TokenBudget(now: 0)
    budget.spend(100, now: 0, parameters)
    #expect(budget.retryAfter(now: 0, parameters) == .milliseconds(10))
    // An hour later: the allowance is full, not an hour's worth.
    let later = 3_600_000 * ms
    #expect(budget.open(prompt: 100, now: later, parameters) == nil)
    #expect(budget.retryAfter(now: later, parameters) == .milliseconds(10))
  }
}
