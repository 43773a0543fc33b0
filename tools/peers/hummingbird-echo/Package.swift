// swift-tools-version: 6.1
import PackageDescription

// The ceiling of the HTTP door's stack: Hummingbird 2 with one route that hands the request
// body back, at the path and with the body of an Open Inference Protocol infer, so that the
// same load reaches it and `rpc-server`'s `/v2/models/echo/infer`.
let package = Package(
  name: "hummingbird-echo",
  platforms: [.macOS(.v15)],
  products: [.executable(name: "hummingbird-echo", targets: ["HummingbirdEcho"])],
  dependencies: [
    .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
  ],
  targets: [
    .executableTarget(
      name: "HummingbirdEcho",
      dependencies: [
        .product(name: "Hummingbird", package: "hummingbird"),
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      swiftSettings: [.swiftLanguageMode(.v6)]
    )
  ]
)
