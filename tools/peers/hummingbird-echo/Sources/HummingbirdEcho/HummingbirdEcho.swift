import ArgumentParser
import Foundation
import Hummingbird

/// `hummingbird-echo --port 0`: Hummingbird 2 answering `POST /v2/models/echo/infer` with the
/// body it received, on NIO's shared event loops (one per core), as `rpc-server` uses.
@main
struct HummingbirdEcho: AsyncParsableCommand {
  @Option(help: "Host to bind.") var host = "127.0.0.1"
  @Option(help: "Port to bind (0 picks a free one).") var port = 0

  func run() async throws {
    let router = Router()
    router.post("/v2/models/echo/infer") { request, _ -> Response in
      let body = try await request.body.collect(upTo: 4 << 20)
      return Response(
        status: .ok,
        headers: [.contentType: "application/json"],
        body: ResponseBody(byteBuffer: body)
      )
    }
    let host = self.host
    let app = Application(
      router: router,
      configuration: .init(address: .hostname(host, port: port), serverName: nil, backlog: 1024),
      onServerRunning: { channel in
        print("listening on \(host):\(channel.localAddress?.port ?? 0)")
        fflush(nil)
      }
    )
    try await app.runService()
  }
}
