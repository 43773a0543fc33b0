/// Any JSON value, for the fields whose type is only known once read (a tensor's `data`, a
/// prompt that may be a string or a list).
enum JSONValue: Decodable, Sendable, Equatable {
  case null
  case bool(Bool)
  case number(Double)
  case string(String)
  case array([JSONValue])
  case object([String: JSONValue])

  init(from decoder: any Decoder) throws {
    let container = try decoder.singleValueContainer()
    if container.decodeNil() {
      self = .null
    } else if let value = try? container.decode(Bool.self) {
      self = .bool(value)
    } else if let value = try? container.decode(Double.self) {
      self = .number(value)
    } else if let value = try? container.decode(String.self) {
      self = .string(value)
    } else if let value = try? container.decode([JSONValue].self) {
      self = .array(value)
    } else {
      self = .object(try container.decode([String: JSONValue].self))
    }
  }

  /// The leaves of nested arrays, row-major: how a tensor's `data` may be written.
  func flattened() -> [JSONValue] {
    guard case .array(let values) = self else { return [self] }
    var leaves: [JSONValue] = []
    leaves.reserveCapacity(values.count)
    for value in values {
      if case .array = value {
        leaves.append(contentsOf: value.flattened())
      } else {
        leaves.append(value)
      }
    }
    return leaves
  }
}
