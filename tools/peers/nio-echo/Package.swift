// swift-tools-version: 6.1
import PackageDescription

// The ceiling for this stack: a bare SwiftNIO server that echoes length-prefixed frames with
// request ids, and a load client driven from the event loops. It is also home to
// `PeerBenchSupport`, the options and report format every peer's load client shares with
// `rpc-cli bench`, so that `tools/bench.sh` reads one JSON shape.
let package = Package(
  name: "nio-echo",
  platforms: [.macOS(.v15)],
  products: [
    .library(name: "PeerBenchSupport", targets: ["PeerBenchSupport"]),
    .executable(name: "nio-echo", targets: ["NIOEcho"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
  ],
  targets: [
    .target(
      name: "PeerBenchSupport",
      dependencies: [
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Histogram", package: "hdrhistogram-swift"),
      ],
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
    .executableTarget(
      name: "NIOEcho",
      dependencies: [
        "PeerBenchSupport",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
  ]
)
