extension String {
  /// This text cut at a character boundary to at most `limit` bytes of UTF-8, an ellipsis
  /// included when it is cut.
  func truncated(toUTF8Bytes limit: Int) -> String {
    guard utf8.count > limit else { return self }
    let ellipsis = "…"
    var kept = ""
    var bytes = ellipsis.utf8.count
    for scalar in unicodeScalars {
      bytes += UTF8.width(scalar)
      if bytes > limit { break }
      kept.unicodeScalars.append(scalar)
    }
    return kept + ellipsis
  }
}
