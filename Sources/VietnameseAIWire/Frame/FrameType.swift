/// The type byte of a frame header.
///
/// Types a client sends are below `0x40`; types only a server sends have bit `0x40` set, so a
/// receiver can tell a frame that travels the wrong way from the type alone. `PING` and `PONG`
/// travel both ways.
public enum FrameType: UInt8, Sendable, CaseIterable {
  case hello = 0x01
  case predict = 0x02
  case batchPredict = 0x03
  case streamOpen = 0x04
  case cancel = 0x05
  case statsRequest = 0x06
  case ping = 0x07
  case pong = 0x08
  case welcome = 0x41
  case result = 0x42
  case batchResult = 0x43
  case token = 0x44
  case streamEnd = 0x45
  case stats = 0x46
  case error = 0x47
  case goAway = 0x48

  /// Whether a client may send this type.
  public var sentByClient: Bool { rawValue & 0x40 == 0 }
  /// Whether a server may send this type.
  public var sentByServer: Bool { rawValue & 0x40 != 0 || self == .ping || self == .pong }

  /// The specification's name, e.g. `BATCH_PREDICT`.
  public var name: String {
    switch self {
    case .hello: return "HELLO"
    case .predict: return "PREDICT"
    case .batchPredict: return "BATCH_PREDICT"
    case .streamOpen: return "STREAM_OPEN"
    case .cancel: return "CANCEL"
    case .statsRequest: return "STATS_REQUEST"
    case .ping: return "PING"
    case .pong: return "PONG"
    case .welcome: return "WELCOME"
    case .result: return "RESULT"
    case .batchResult: return "BATCH_RESULT"
    case .token: return "TOKEN"
    case .streamEnd: return "STREAM_END"
    case .stats: return "STATS"
    case .error: return "ERROR"
    case .goAway: return "GOAWAY"
    }
  }
}

/// The flags byte of a frame header.
public struct FrameFlags: OptionSet, Hashable, Sendable {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }

  /// The payload is a zlib stream preceded by the uncompressed length.
  public static let compressed = FrameFlags(rawValue: 0x01)

  /// Flags this version defines; any other bit set is a protocol error.
  public static let known: FrameFlags = [.compressed]
}
