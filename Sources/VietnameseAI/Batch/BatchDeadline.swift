/// How long the batch a batch function is computing stays of use: until the latest deadline
/// of its requests, `nil` when one of them waits as long as it takes. Set by ``MayChuBatch``
/// around each call of its batch function, for a model that can stop early or tell another
/// process (a worker) its deadline.
package enum BatchDeadline {
  @TaskLocal package static var remaining: Duration?
}
