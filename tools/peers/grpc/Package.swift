// swift-tools-version: 6.1
import PackageDescription

// grpc-swift 2 over its HTTP/2 NIO transport, serving the same two workloads as `rpc-server`
// (a unary echo of bytes and a server stream of N small messages), with a load client that
// takes `rpc-cli bench`'s flags. A separate package so that the main build never pulls gRPC;
// a cold release build takes about ten minutes (it compiles BoringSSL).
let package = Package(
  name: "grpc-peer",
  platforms: [.macOS(.v15)],
  products: [.executable(name: "grpc-peer", targets: ["GRPCPeer"])],
  dependencies: [
    .package(path: "../nio-echo"),
    .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.0"),
    .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.0"),
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
  ],
  targets: [
    .executableTarget(
      name: "GRPCPeer",
      dependencies: [
        .product(name: "PeerBenchSupport", package: "nio-echo"),
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      swiftSettings: [.swiftLanguageMode(.v6)]
    )
  ]
)
