/// Who a client is: the id its auth token stands for, the id it claims when no tokens are
/// configured, or its address when it claims none.
///
/// A value, checked the same way by every front door (a `HELLO` on the binary protocol, a
/// bearer token over HTTP).
struct ClientIdentities: Sendable, Equatable {
  private var tokens: [Token]

  private struct Token: Sendable, Equatable {
    var bytes: [UInt8]
    var clientID: String
  }

  /// - Parameter tokens: Auth tokens and the client id each stands for; empty turns
  ///   authentication off.
  init(tokens: [String: String]) {
    self.tokens = tokens.sorted { $0.key < $1.key }.map {
      Token(bytes: Array($0.key.utf8), clientID: $0.value)
    }
  }

  /// Whether a client must present a token.
  var requiresToken: Bool { !tokens.isEmpty }

  /// The client id for a request that presents `token` and claims `claimedID`, from
  /// `peerAddress`.
  ///
  /// - With tokens configured, the token decides, whatever the client claims: a missing or
  ///   unknown token is ``ServingError/Code/unauthenticated``.
  /// - Without, the claimed id, or `addr:` and the peer's address when it claims none.
  /// - A claimed id longer than ``Admission/maxClientIDBytes`` is
  ///   ``ServingError/Code/invalidArgument``, whether or not tokens decide.
  func identify(token: String, claimedID: String, peerAddress: String?) -> Result<String, ServingError> {
    if claimedID.utf8.count > Admission.maxClientIDBytes {
      return .failure(
        ServingError(
          .invalidArgument,
          "a client id of \(claimedID.utf8.count) bytes is longer than the \(Admission.maxClientIDBytes) allowed"
        )
      )
    }
    if requiresToken {
      guard let owner = clientID(forToken: token) else {
        return .failure(ServingError(.unauthenticated, "missing or unknown auth token"))
      }
      return .success(owner)
    }
    if claimedID.isEmpty { return .success("addr:\(peerAddress ?? "unknown")") }
    return .success(claimedID)
  }

  /// The client id `token` stands for, or `nil`.
  ///
  /// Every configured token is compared in full, byte by byte without an early exit, so the
  /// time taken says nothing about how much of a token was right or which one matched.
  func clientID(forToken token: String) -> String? {
    let offered = Array(token.utf8)
    var found: String?
    for entry in tokens where Self.constantTimeEquals(entry.bytes, offered) {
      found = entry.clientID
    }
    return found
  }

  static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
    difference |= UInt8(truncatingIfNeeded: (a.count ^ b.count) >> 8)
    let length = max(a.count, b.count)
    for index in 0..<length {
      let x = index < a.count ? a[index] : 0
      let y = index < b.count ? b[index] : 0
      difference |= x ^ y
    }
    return difference == 0 && a.count == b.count
  }
}
