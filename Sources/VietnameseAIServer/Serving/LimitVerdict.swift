import NIOCore
import VietnameseAI

/// A rate-limit decision on `count` requests of one cost from one client: how many may go, in
/// order, and why the others may not.
struct LimitVerdict: Sendable, Equatable {
  var allowed: Int
  /// `nil` when every request was allowed.
  var refusal: Refusal?

  enum Refusal: Sendable, Equatable {
    /// Over the limit: try again after `retryAfter`, or never (`nil`: the cost is above the
    /// limit's burst).
    case limited(retryAfter: Duration?)
    /// Over the token limit: no stream until `retryAfter`.
    case overTokens(retryAfter: Duration)
    /// A limit shared through a store that cannot be reached, with the policy to refuse then.
    case storeUnreachable(String)
  }

  init(allowed: Int, refusal: Refusal?) {
    self.allowed = allowed
    self.refusal = refusal
  }

  static func all(_ count: Int) -> LimitVerdict {
    LimitVerdict(allowed: count, refusal: nil)
  }

  /// The verdict `later` brings.
  static func waited(_ later: EventLoopFuture<LimitVerdict>) async -> LimitVerdict {
    do {
      return try await later.get()
    } catch {
      return LimitVerdict(.failure(error))
    }
  }

  /// The verdict of a decision that completed with `result`; one that failed refuses.
  init(_ result: Result<LimitVerdict, any Error>) {
    switch result {
    case .success(let verdict): self = verdict
    case .failure(let error):
      self.init(allowed: 0, refusal: .storeUnreachable("the rate limit decision failed: \(error)"))
    }
  }
}

extension BoGioiHanTocDo {
  /// This limiter's verdict on `count` requests of `cost` each from `client`, in order. Several
  /// requests at once cost one each (the predicts of a read).
  func verdict(_ client: String, cost: Int, count: Int) -> LimitVerdict {
    if count == 1 {
      let decision = kiemTra(client, cost: cost)
      return decision.choPhep
        ? .all(1) : LimitVerdict(allowed: 0, refusal: .limited(retryAfter: decision.retryAfter))
    }
    assert(cost == 1, "several requests at once cost one each")
    let decision = choPhep(client, soYeuCau: count)
    if decision.allowed == count { return .all(count) }
    return LimitVerdict(
      allowed: decision.allowed,
      refusal: .limited(retryAfter: decision.retryAfter ?? .zero)
    )
  }
}

/// A rate-limit decision now, or one that waits for a lease from the shared store.
enum LimitReservation: Sendable {
  case decided(LimitVerdict)
  case pending(EventLoopFuture<LimitVerdict>)
}
