import Testing

/// Records an issue; returns nothing, so that a test can `return record(...)`.
func record(_ comment: Comment, sourceLocation: SourceLocation = #_sourceLocation) {
  Issue.record(comment, sourceLocation: sourceLocation)
}
