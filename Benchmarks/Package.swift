// swift-tools-version: 6.1
import PackageDescription

// Micro-benchmarks, kept out of the main package so that `swift build` and `swift test` never
// fetch or build the benchmark harness. Run with `swift package benchmark` from this folder.
let package = Package(
  name: "benchmarks",
  platforms: [.macOS(.v15)],
  dependencies: [
    .package(name: "vietnamese-ai-serving", path: "../"),
    .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.0", traits: ["MallocInterposer"]),
  ],
  targets: [
    .executableTarget(
      name: "WireBenchmarks",
      dependencies: [
        .product(name: "VietnameseAIWire", package: "vietnamese-ai-serving"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "Benchmark", package: "benchmark"),
      ],
      path: "Benchmarks/WireBenchmarks",
      swiftSettings: [.swiftLanguageMode(.v6)],
      plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
    ),
    .executableTarget(
      name: "CoreBenchmarks",
      dependencies: [
        .product(name: "VietnameseAI", package: "vietnamese-ai-serving"),
        .product(name: "Benchmark", package: "benchmark"),
      ],
      path: "Benchmarks/CoreBenchmarks",
      swiftSettings: [.swiftLanguageMode(.v6)],
      plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
    ),
  ]
)
