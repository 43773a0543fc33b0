import NIOCore

/// What the serving core did with a request: started it, refused it, or holds it until the
/// client's rate limit is decided (a lease from the shared store is on its way). In that case
/// nothing was started or charged: the door calls again with the verdict once it comes.
enum Admitted<Started> {
  case started(Started)
  case refused(ServingError)
  case awaitingLimit(EventLoopFuture<LimitVerdict>)
}
