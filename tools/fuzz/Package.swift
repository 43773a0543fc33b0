// swift-tools-version: 6.1
import PackageDescription

// libFuzzer targets (the frame decoder, the server's connection handler), in their own package so that the main build never compiles them.
// Build and run with `tools/fuzz/run.sh` (it passes --sanitize=fuzzer --sanitize=address).
let package = Package(
  name: "fuzz",
  platforms: [.macOS(.v15)],
  dependencies: [
    .package(name: "vietnamese-ai-serving", path: "../.."),
    .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
  ],
  targets: [
    .executableTarget(
      name: "FuzzWireDecoder",
      dependencies: [
        .product(name: "VietnameseAIWire", package: "vietnamese-ai-serving"),
        .product(name: "NIOCore", package: "swift-nio"),
      ],
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
    .executableTarget(
      name: "FuzzServerConnection",
      dependencies: [
        .product(name: "VietnameseAI", package: "vietnamese-ai-serving"),
        .product(name: "VietnameseAIWire", package: "vietnamese-ai-serving"),
        .product(name: "VietnameseAIServer", package: "vietnamese-ai-serving"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOEmbedded", package: "swift-nio"),
      ],
      swiftSettings: [.swiftLanguageMode(.v6)]
    ),
  ]
)
