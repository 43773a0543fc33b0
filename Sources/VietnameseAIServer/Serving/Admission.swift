/// The rules that let a request in before any component sees it: pure values, shared by every
/// front door.
///
/// A request passes these stages in order, and the first that refuses it answers:
/// 1. the connection: the server is draining (``Code/refused``), the connection holds its
///    most requests in flight (``Code/resourceExhausted``);
/// 2. the request as sent: a field the server cannot take, a request that can never succeed
///    (``Code/invalidArgument``), a model or generator it does not serve (``Code/unknownModel``);
/// 3. the client: its rate limit (``Code/rateLimited``);
/// 4. the model: an input its decoder refuses (``Code/invalidArgument``), a full queue, too
///    many streams.
///
/// Stages 1 and 2 cost the client nothing; its allowance is taken at stage 3, so a request the
/// model refuses has been counted. The doors call stage 1 here; ``ServingCore`` runs the rest.
struct Admission: Sendable, Equatable {
  typealias Code = ServingError.Code

  /// Requests one connection may have in flight.
  var maxConcurrentRequests: Int

  /// The longest client id, in bytes of UTF-8: it keys the rate limiter's table and comes back
  /// in `WELCOME`, which must fit the smallest frame limit a peer may have.
  static let maxClientIDBytes = 256

  /// Why a new request may not start on a connection with `inFlight` requests, or `nil`.
  func refusal(draining: Bool, inFlight: Int) -> ServingError? {
    if draining { return ServingError(.refused, "server is shutting down; the request was not started") }
    if inFlight >= maxConcurrentRequests {
      return ServingError(
        .resourceExhausted,
        "\(inFlight) requests in flight, the most this connection may have"
      )
    }
    return nil
  }

  /// What a request takes from its client's rate limit: one per prediction, so a batch of 32
  /// inputs costs what 32 predicts cost; a request that computes nothing (an empty batch,
  /// statistics) still costs one. Stream opens cost one each.
  static func cost(inputs: Int) -> Int {
    max(inputs, 1)
  }
}
