/// 64 bytes that keep a hot field's neighbours off its cache line: a stored property of this
/// type next to a field that one core writes stops another core's data from sharing the line.
package struct CacheLinePadding: Sendable {
  private let words: (Int64, Int64, Int64, Int64, Int64, Int64, Int64, Int64) = (0, 0, 0, 0, 0, 0, 0, 0)

  package init() {}
}
