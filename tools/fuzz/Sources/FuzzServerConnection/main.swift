// libFuzzer entry point for the server's connection handler.
//
// Each input is one connection: its bytes go, in chunks the input chooses, into a
// ServerConnectionHandler of a real RPCServer (built-in models and generators, real batchers
// and limiter) installed in an in-memory channel. The first byte picks whether a valid HELLO
// (with or without zlib) is sent first, so that most runs explore the requests rather than
// the handshake, and how the rest is split into reads.
//
// Findings: a crash, a hang (libFuzzer's -timeout), or a broken promise of the protocol: the
// server's output must always decode as well-formed frames, and no request may receive
// more than one terminal frame.

import Dispatch
import NIOCore
import NIOEmbedded
import VietnameseAI
import VietnameseAIWire

@_spi(Fuzzing) import VietnameseAIServer

let server: RPCServer = {
  var configuration = RPCServer.Configuration()
  configuration.maxFrameSize = 64 * 1024
  configuration.maxConcurrentRequests = 64
  configuration.rateLimit.goiY = 1_000_000_000
  configuration.streaming.tocDoToken = .zero
  configuration.streaming.timeout = .seconds(5)
  var batching = BuiltinModels.Batching()
  batching.timeoutBatch = .zero
  batching.toiDaCho = 256
  let server = RPCServer(
    configuration: configuration,
    models: [
      BuiltinModels.echo(batching: batching),
      BuiltinModels.simulatedAccelerator(perBatch: .zero, perItem: .zero, batching: batching),
    ],
    generators: [BuiltinModels.essay, BuiltinModels.syllables]
  )
  try! server.startWithoutListening()
  return server
}()

/// Runs `body` to completion from the fuzzer's synchronous entry point.
func blocking(_ body: @escaping @Sendable () async -> Void) {
  let done = DispatchSemaphore(value: 0)
  Task {
    await body()
    done.signal()
  }
  done.wait()
}

func hello(compression: Bool) -> ByteBuffer {
  let hello = WireMessage.Hello(
    versions: [WireProtocol.version],
    clientID: "fuzz",
    authToken: "",
    compressions: compression ? [WireProtocol.compressionZlib] : [WireProtocol.compressionIdentity]
  )
  var bytes = ByteBuffer()
  try! FrameEncoder().encode(WireFrame(requestID: 0, message: .hello(hello)), into: &bytes)
  return bytes
}

func connection(_ input: [UInt8]) async {
  guard let settings = input.first else { return }
  let channel = NIOAsyncTestingChannel()
  try! await channel.testingEventLoop.executeInContext {
    try channel.pipeline.syncOperations.addHandler(server.makeConnectionHandler())
  }
  try! await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).get()

  var output = ByteBuffer()
  func drain() async {
    while let bytes = try? await channel.readOutbound(as: ByteBuffer.self) {
      var bytes = bytes
      output.writeBuffer(&bytes)
    }
  }

  if settings & 1 == 1 {
    _ = try? await channel.writeInbound(hello(compression: settings & 2 == 2))
  }
  // The rest, in reads of a size the input picks: whole, or pieces of 1 to 16 bytes.
  let body = input.dropFirst()
  let piece = settings & 4 == 4 ? Int(settings >> 4) + 1 : max(body.count, 1)
  var offset = body.startIndex
  while offset < body.endIndex, channel.isActive {
    let end = min(offset + piece, body.endIndex)
    _ = try? await channel.writeInbound(ByteBuffer(bytes: body[offset..<end]))
    offset = end
  }
  // Let the batchers and generators answer, then let the loop write their answers.
  for _ in 0..<4 {
    try? await Task.sleep(for: .milliseconds(1))
    await channel.testingEventLoop.run()
    await drain()
  }
  _ = try? await channel.finish(acceptAlreadyClosed: true)
  await drain()

  // Whatever the input, the server speaks the protocol.
  var decoder = FrameDecoder(role: .client, maxPayloadSize: .max, decompressor: Zlib.Decompressor())
  var answered: Set<UInt32> = []
  do {
    while let next = try decoder.decodeFrame(&output) {
      guard case .success(let frame) = next else {
        fatalError("the server sent a frame a client must refuse: \(next)")
      }
      switch frame.message {
      case .result, .batchResult, .streamEnd, .stats, .error:
        // An ERROR on id 0 is about the connection, not a request.
        if frame.requestID != 0 && !answered.insert(frame.requestID).inserted {
          fatalError("request \(frame.requestID) was answered twice")
        }
      default:
        break
      }
    }
  } catch {
    fatalError("the server's output is not well-formed: \(error)")
  }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzServerConnection(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
  let input = [UInt8](UnsafeRawBufferPointer(start: start, count: count))
  blocking { await connection(input) }
  return 0
}
