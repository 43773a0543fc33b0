// swift-tools-version: 6.1
import PackageDescription

/// Settings every target shares: Swift 6 language mode plus the upcoming features that keep
/// imports and existentials explicit.
let swiftSettings: [SwiftSetting] = [
  .swiftLanguageMode(.v6),
  .enableUpcomingFeature("ExistentialAny"),
  .enableUpcomingFeature("InternalImportsByDefault"),
  .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
  name: "vietnamese-ai-serving",
  platforms: [.macOS(.v15)],
  products: [
    .library(name: "VietnameseAI", targets: ["VietnameseAI"]),
    .executable(name: "vietnamese-ai-demo", targets: ["VietnameseAIDemo"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
    .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
    .package(url: "https://github.com/pointfreeco/swift-clocks", from: "1.0.0"),
  ],
  targets: [
    // Core components: batching, streaming, rate limiting. No networking; time is injected.
    .target(
      name: "VietnameseAI",
      dependencies: [
        .product(name: "DequeModule", package: "swift-collections"),
        .product(name: "Histogram", package: "hdrhistogram-swift"),
      ],
      swiftSettings: swiftSettings
    ),
    .executableTarget(
      name: "VietnameseAIDemo",
      dependencies: ["VietnameseAI"],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "VietnameseAITests",
      dependencies: [
        "VietnameseAI",
        .product(name: "Clocks", package: "swift-clocks"),
      ],
      swiftSettings: swiftSettings
    ),
  ]
)
