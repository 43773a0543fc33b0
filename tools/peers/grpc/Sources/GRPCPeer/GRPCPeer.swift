import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import PeerBenchSupport

/// `grpc-peer serve` and `grpc-peer bench`: the gRPC side of the comparison.
@main
struct GRPCPeer: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "grpc-peer",
    abstract: "A grpc-swift 2 echo and streaming service, and its load client.",
    subcommands: [Serve.self, Bench.self]
  )
}

/// The methods of the peer service. Messages are raw bytes; no protobuf code generator is
/// needed because the serializers below pass `[UInt8]` through.
enum PeerMethods {
  static let echo = MethodDescriptor(fullyQualifiedService: "peer.Echo", method: "Unary")
  static let stream = MethodDescriptor(fullyQualifiedService: "peer.Echo", method: "Stream")
}

struct BytesSerializer: MessageSerializer {
  func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
}

struct BytesDeserializer: MessageDeserializer {
  func deserialize<Bytes: GRPCContiguousBytes>(_ bytes: Bytes) throws -> [UInt8] {
    bytes.withUnsafeBytes { Array($0) }
  }
}

/// Unary echoes its input. Stream reads a count (4 bytes, big endian) from its input and sends
/// that many 4-byte messages, like a token stream.
struct EchoService: RegistrableRPCService {
  func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
    router.registerHandler(
      forMethod: PeerMethods.echo,
      deserializer: BytesDeserializer(),
      serializer: BytesSerializer()
    ) { request, _ in
      StreamingServerResponse { writer in
        for try await message in request.messages { try await writer.write(message) }
        return [:]
      }
    }
    router.registerHandler(
      forMethod: PeerMethods.stream,
      deserializer: BytesDeserializer(),
      serializer: BytesSerializer()
    ) { request, _ in
      StreamingServerResponse { writer in
        var count = 0
        for try await message in request.messages where message.count >= 4 {
          count = message.prefix(4).reduce(0) { $0 << 8 | Int($1) }
        }
        let token: [UInt8] = Array("tok ".utf8)
        for _ in 0..<count { try await writer.write(token) }
        return [:]
      }
    }
  }
}

struct Serve: AsyncParsableCommand {
  @Option(help: "Host to bind.") var host = "127.0.0.1"
  @Option(help: "Port to bind (0 picks a free one).") var port = 0

  func run() async throws {
    let transport = HTTP2ServerTransport.Posix(
      address: .ipv4(host: host, port: port),
      transportSecurity: .plaintext
    )
    try await withGRPCServer(transport: transport, services: [EchoService()]) { _ in
      let address = try await transport.listeningAddress
      if let ipv4 = address.ipv4 {
        print("listening on \(ipv4.host):\(ipv4.port)")
      } else {
        print("listening on \(address)")
      }
      fflush(nil)
      try await Task.sleep(for: .seconds(1_000_000))
    }
  }
}

struct Bench: AsyncParsableCommand {
  @OptionGroup var options: LoadOptions

  func run() async throws {
    let options = self.options
    try await withThrowingTaskGroup(of: Void.self) { group in
      var clients: [GRPCClient<HTTP2ClientTransport.Posix>] = []
      for _ in 0..<options.connections {
        let client = GRPCClient(
          transport: try .http2NIOPosix(
            target: .ipv4(address: options.host, port: options.port),
            transportSecurity: .plaintext
          )
        )
        clients.append(client)
        group.addTask { try await client.runConnections() }
      }
      let payload = [UInt8](repeating: UInt8(ascii: "a"), count: options.payloadSize)
      let count = UInt32(options.tokens)
      let streamRequest = [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: count >> $0) }
      let mode = options.mode
      let (tally, seconds) = await runAsyncLoad(options: options, connections: clients) { client in
        switch mode {
        case .predict:
          _ = try await client.unary(
            request: ClientRequest(message: payload),
            descriptor: PeerMethods.echo,
            serializer: BytesSerializer(),
            deserializer: BytesDeserializer(),
            options: .defaults
          ) { try $0.message }
          return 0
        case .stream:
          return try await client.serverStreaming(
            request: ClientRequest(message: streamRequest),
            descriptor: PeerMethods.stream,
            serializer: BytesSerializer(),
            deserializer: BytesDeserializer(),
            options: .defaults
          ) { response in
            var received = 0
            for try await _ in response.messages { received += 1 }
            return received
          }
        }
      }
      tally.report(system: "grpc-swift-2", options: options, seconds: seconds)
      for client in clients { client.beginGracefulShutdown() }
      try await group.waitForAll()
    }
  }
}
