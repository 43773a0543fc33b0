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
    .library(name: "VietnameseAIWire", targets: ["VietnameseAIWire"]),
    .library(name: "VietnameseAIServer", targets: ["VietnameseAIServer"]),
    .library(name: "VietnameseAIClient", targets: ["VietnameseAIClient"]),
    .executable(name: "rpc-server", targets: ["RPCServerMain"]),
    .executable(name: "rpc-cli", targets: ["RPCCLI"]),
    .executable(name: "custom-model-server", targets: ["CustomModelServer"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
    .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
    .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
    .package(url: "https://github.com/pointfreeco/swift-clocks", from: "1.0.0"),
    .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
    .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
    .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
    .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
  ],
  targets: [
    // Low-level helpers every other module may use: the lock, the event-loop task executor,
    // cache-line padding.
    .target(
      name: "VietnameseAIConcurrency",
      dependencies: [
        .product(name: "NIOCore", package: "swift-nio")
      ],
      swiftSettings: swiftSettings
    ),
    // Core components: batching, streaming, rate limiting. No networking; time is injected.
    // NIOCore only for `ByteBuffer`, which the batcher is specialized for: the server's
    // byte models batch slices of what connections read, without copying them.
    .target(
      name: "VietnameseAI",
      dependencies: [
        "CCurrentCPU",
        "VietnameseAIConcurrency",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "DequeModule", package: "swift-collections"),
        .product(name: "HeapModule", package: "swift-collections"),
        .product(name: "Histogram", package: "hdrhistogram-swift"),
      ],
      swiftSettings: swiftSettings
    ),
    // Which CPU a thread runs on, for the rate limiter's per-CPU reader counts.
    .target(name: "CCurrentCPU"),
    // The system zlib, for the wire protocol's compression.
    .target(
      name: "CZlib",
      linkerSettings: [.linkedLibrary("z")]
    ),
    // The wire protocol: frames, messages, codec, compression. NIOCore only; no server or
    // client logic.
    .target(
      name: "VietnameseAIWire",
      dependencies: [
        "CZlib",
        .product(name: "NIOCore", package: "swift-nio"),
      ],
      swiftSettings: swiftSettings
    ),
    // The server: the serving core behind its two front doors, the binary protocol on
    // SwiftNIO and HTTP on Hummingbird, with Prometheus metrics.
    .target(
      name: "VietnameseAIServer",
      dependencies: [
        "VietnameseAI",
        "VietnameseAIConcurrency",
        "VietnameseAIRedis",
        "VietnameseAIWire",
        .product(name: "DequeModule", package: "swift-collections"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "HTTPTypes", package: "swift-http-types"),
        .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
        .product(name: "Prometheus", package: "swift-prometheus"),
      ],
      swiftSettings: swiftSettings
    ),
    // The small Redis client the shared rate limits need: RESP2 on SwiftNIO, pipelined.
    .target(
      name: "VietnameseAIRedis",
      dependencies: [
        "VietnameseAIConcurrency",
        .product(name: "DequeModule", package: "swift-collections"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
      ],
      swiftSettings: swiftSettings
    ),
    // The client SDK. NIO stays behind its API.
    .target(
      name: "VietnameseAIClient",
      dependencies: [
        "VietnameseAIConcurrency",
        "VietnameseAIWire",
        .product(name: "DequeModule", package: "swift-collections"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
      ],
      swiftSettings: swiftSettings
    ),
    .executableTarget(
      name: "RPCServerMain",
      dependencies: [
        "VietnameseAI",
        "VietnameseAIServer",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "Metrics", package: "swift-metrics"),
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "UnixSignals", package: "swift-service-lifecycle"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
      ],
      swiftSettings: swiftSettings
    ),
    .executableTarget(
      name: "RPCCLI",
      dependencies: [
        "VietnameseAI",
        "VietnameseAIClient",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Histogram", package: "hdrhistogram-swift"),
      ],
      swiftSettings: swiftSettings
    ),
    // How to serve a model of your own: the server embedded in a program of a few lines.
    .executableTarget(
      name: "CustomModelServer",
      dependencies: [
        "VietnameseAI",
        "VietnameseAIServer",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "UnixSignals", package: "swift-service-lifecycle"),
      ],
      path: "Examples/CustomModelServer",
      swiftSettings: swiftSettings
    ),
    // Helpers shared by the test targets.
    .target(
      name: "TestSupport",
      dependencies: [
        "VietnameseAI",
        "VietnameseAIConcurrency",
        "VietnameseAIWire",
        .product(name: "NIOCore", package: "swift-nio"),
      ],
      path: "Tests/TestSupport",
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "VietnameseAIConcurrencyTests",
      dependencies: [
        "VietnameseAIConcurrency"
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "VietnameseAITests",
      dependencies: [
        "VietnameseAI",
        "VietnameseAIConcurrency",
        "TestSupport",
        .product(name: "Clocks", package: "swift-clocks"),
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "VietnameseAIWireTests",
      dependencies: [
        "VietnameseAIWire",
        "TestSupport",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOEmbedded", package: "swift-nio"),
        .product(name: "NIOTestUtils", package: "swift-nio"),
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "VietnameseAIServerTests",
      dependencies: [
        "VietnameseAI",
        "VietnameseAIConcurrency",
        "VietnameseAIServer",
        "VietnameseAIWire",
        "TestSupport",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "VietnameseAIRedisTests",
      dependencies: [
        "VietnameseAIRedis",
        "TestSupport",
        .product(name: "NIOCore", package: "swift-nio"),
      ],
      swiftSettings: swiftSettings
    ),
    .testTarget(
      name: "VietnameseAIClientTests",
      dependencies: [
        "VietnameseAIClient",
        "VietnameseAIConcurrency",
        "VietnameseAIWire",
        "TestSupport",
        .product(name: "NIOCore", package: "swift-nio"),
      ],
      swiftSettings: swiftSettings
    ),
    // A loopback server driven by the client and by raw bytes, and the executables as
    // processes.
    .testTarget(
      name: "VietnameseAIIntegrationTests",
      dependencies: [
        "VietnameseAI",
        "VietnameseAIConcurrency",
        "VietnameseAIWire",
        "VietnameseAIServer",
        "VietnameseAIClient",
        "TestSupport",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      swiftSettings: swiftSettings
    ),
  ]
)
