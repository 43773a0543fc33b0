#!/usr/bin/env python3
"""Writes the exchange vectors of Protocol/exchanges from the definitions below.

An exchange vector is a scripted conversation with a live server: what the server does (as
opposed to what bytes decode to, which Protocol/vectors covers). Each is one JSON file:
  name, description   what it shows, in words, and the PROTOCOL.md section it illustrates
  server_flags        flags for a fresh rpc-server, added to `--port 0 --http-port 0
                      --token-interval 0 --batch-timeout 0.002`
  steps               in order, each one of:
    {"connect": C}                       open connection C
    {"send": C, "frames": [F, ...]}      send frames F (dicts as in Protocol/vectors) in one write;
                                         a frame {"compressed": F} is sent compressed;
                                         {"hex": H} sends raw bytes
    {"expect": C, "frame": F}            the next frame C receives has every field of F
                                         ("message_contains": text within its message)
    {"expect_silence": C, "ms": N}       C receives nothing for N ms
    {"expect_closed": C}                 the server closes C without sending anything more
    {"shutdown_write": C}                half-close C (end of file for the server)
    {"signal": "SIGTERM"}                signal the server (a graceful drain)

Run it after changing the protocol, then `tools/check_exchanges.py --spawn rpc-server`.
"""

import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_vectors  # noqa: E402
import wire  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Protocol", "exchanges")

exchanges = []


def add(name, description, steps, server_flags=()):
    exchanges.append({"name": name, "description": description, "server_flags": list(server_flags),
                      "steps": steps})


def hello(client_id="x", versions=(1,), compressions=(0,), token="", max_frame_size=None):
    frame = {"request_id": 0, "type": "HELLO", "versions": list(versions), "client_id": client_id,
             "auth_token": token, "compressions": list(compressions)}
    if max_frame_size is not None:
        frame["max_frame_size"] = max_frame_size
    return frame


def predict(request_id, model="echo", text="xin chào", deadline_ms=0):
    return {"request_id": request_id, "type": "PREDICT", "deadline_ms": deadline_ms, "model": model,
            "input_hex": text.encode().hex()}


def batch(request_id, count, model="echo"):
    return {"request_id": request_id, "type": "BATCH_PREDICT", "deadline_ms": 0, "model": model,
            "inputs_hex": [("%d" % i).encode().hex() for i in range(count)]}


def ping(value):
    return {"request_id": 0, "type": "PING", "value": value}


def error(request_id, status, contains=None):
    frame = {"type": "ERROR", "request_id": request_id, "status": status}
    if contains:
        frame["message_contains"] = contains
    return frame


def result(request_id, text="xin chào"):
    return {"type": "RESULT", "request_id": request_id, "output_hex": text.encode().hex()}


def send(*frames, to="a"):
    return {"send": to, "frames": list(frames)}


def expect(frame, on="a"):
    return {"expect": on, "frame": frame}


def open_connection(name="a", **hello_fields):
    """Connects, says HELLO and reads WELCOME."""
    return [{"connect": name}, send(hello(**hello_fields), to=name), expect({"type": "WELCOME"}, on=name)]


def pong(value, on="a"):
    return expect({"type": "PONG", "value": value}, on=on)


# --- The handshake (§3.1) --------------------------------------------------------------------

add("handshake-timeout", "§3.1: a connection that sends no HELLO within the handshake timeout gets ERROR "
    "PROTOCOL_ERROR on id 0 naming the timeout, then is closed",
    [{"connect": "a"}, expect(error(0, "PROTOCOL_ERROR", "handshake timeout")), {"expect_closed": "a"}],
    ["--handshake-timeout", "0.3"])

add("connection-limit", "§3.1: a server at its connection limit answers a new connection at once, before any "
    "HELLO, with ERROR RESOURCE_EXHAUSTED on id 0, and closes it; the connections it holds go on",
    open_connection("a") + [{"connect": "b"}, expect(error(0, "RESOURCE_EXHAUSTED"), on="b"),
                            {"expect_closed": "b"}, send(ping(1)), pong(1)],
    ["--max-connections", "1"])

add("hello-unknown-offers", "§3.1: versions and compression ids the server does not know, 0 among them, are "
    "ignored: the server picks version 1 and no compression",
    [{"connect": "a"}, send(hello(versions=(0, 9, 1), compressions=(7, 0, 200))),
     expect({"type": "WELCOME", "version": 1, "compression": 0})])

add("hello-no-common-version", "§3.1: a HELLO offering no version the server speaks (0 and 3) is refused "
    "UNSUPPORTED_VERSION on id 0, and the connection closed",
    [{"connect": "a"}, send(hello(versions=(0, 3))), expect(error(0, "UNSUPPORTED_VERSION")),
     {"expect_closed": "a"}])

add("hello-version-2", "§3.1, §9: a client offering versions 2 and 1 is answered in version 2",
    [{"connect": "a"}, send(hello(versions=(2, 1))), expect({"type": "WELCOME", "version": 2})])

add("hello-empty-client-id", "§3.1: a client that claims no id is known by its address",
    [{"connect": "a"}, send(hello(client_id="")), expect({"type": "WELCOME", "client_id": "addr:127.0.0.1"})])

add("hello-client-id-too-long", "§3.1, §7: a client id of 257 bytes is refused INVALID_ARGUMENT on id 0, and "
    "the connection closed",
    [{"connect": "a"}, send(hello(client_id="x" * 257)), expect(error(0, "INVALID_ARGUMENT", "client id")),
     {"expect_closed": "a"}])

add("hello-long-client-id-small-frames", "§3.1, §8: with a 1 KiB frame limit, a HELLO whose client id is 5 KB "
    "(so that WELCOME could not carry it) is refused INVALID_ARGUMENT on id 0, and the connection closed",
    [{"connect": "a"}, send(hello(client_id="x" * 5000)), expect(error(0, "INVALID_ARGUMENT", "client id")),
     {"expect_closed": "a"}],
    ["--max-frame-size", "1024"])

add("hello-frame-limit-too-small", "§3.1, §7: a client that accepts frames of less than 1 KiB is refused "
    "INVALID_ARGUMENT on id 0, and the connection closed",
    [{"connect": "a"}, send(hello(max_frame_size=512)), expect(error(0, "INVALID_ARGUMENT")),
     {"expect_closed": "a"}])

add("compressed-after-hello", "§3.1: a compressed PREDICT sent right behind a HELLO that offers zlib is read "
    "under the compression that HELLO negotiates",
    [{"connect": "a"}, send(hello(compressions=(1, 0)), {"compressed": predict(1, text="dài " * 400)}),
     expect({"type": "WELCOME", "compression": 1}), expect(result(1, "dài " * 400))])

add("compressed-without-zlib", "§6: a compressed frame on a connection that did not negotiate zlib is "
    "PROTOCOL_ERROR on id 0",
    [{"connect": "a"}, send(hello(compressions=(0,)), {"compressed": predict(1, text="dài " * 400)}),
     expect({"type": "WELCOME", "compression": 0}), expect(error(0, "PROTOCOL_ERROR")), {"expect_closed": "a"}])

# --- Requests (§3.2) -------------------------------------------------------------------------

add("answer-over-client-limit", "§3.2, §7: a client that accepts frames of 1 KiB gets RESOURCE_EXHAUSTED for a "
    "2,000-byte answer, on that request only",
    open_connection(max_frame_size=1024)
    + [send(predict(1, text="a" * 2000)), expect(error(1, "RESOURCE_EXHAUSTED", "frame limit")),
       send(predict(2, text="nhỏ")), expect(result(2, "nhỏ"))])

add("empty-model-name", "§5: a PREDICT or BATCH_PREDICT with an empty model name is INVALID_ARGUMENT; the "
    "connection goes on",
    open_connection()
    + [send(predict(1, model="")), expect(error(1, "INVALID_ARGUMENT", "model name")),
       send(batch(2, 1, model="")), expect(error(2, "INVALID_ARGUMENT")), send(ping(3)), pong(3)])

add("batch-over-queue", "§3.2: a batch with more inputs than the model's queue holds can never be taken: "
    "INVALID_ARGUMENT, not QUEUE_FULL; one that fits is answered",
    open_connection()
    + [send(batch(1, 5)), expect(error(1, "INVALID_ARGUMENT", "queue")),
       send(batch(2, 4)), expect({"type": "BATCH_RESULT", "request_id": 2})],
    ["--max-queue", "4"])

add("rate-limit-costs", "§3.2: with an allowance of 5, PING and CANCEL cost nothing, STATS costs 1, a request "
    "for an unknown model costs nothing, a batch costs its inputs and is refused whole, a batch beyond the "
    "burst is INVALID_ARGUMENT",
    open_connection()
    + [send(ping(1), ping(2), ping(3)), pong(1), pong(2), pong(3),
       send({"request_id": 9, "type": "CANCEL"}),
       send({"request_id": 1, "type": "STATS_REQUEST"}), expect({"type": "STATS", "request_id": 1}),
       send(predict(2, model="nope")), expect(error(2, "UNKNOWN_MODEL")),
       send(batch(3, 3)), expect({"type": "BATCH_RESULT", "request_id": 3}),
       send(batch(4, 2)), expect(error(4, "RATE_LIMITED")),
       send(batch(5, 6)), expect(error(5, "INVALID_ARGUMENT", "never")),
       send(predict(6)), expect(result(6)),
       send(predict(7)), expect(error(7, "RATE_LIMITED"))],
    ["--rate-limit", "5", "--rate-window", "3600"])

add("in-flight-limit-first", "§3.2: the connection's own limit answers before the request's content is "
    "looked at: with one request in flight of one allowed, a request for an unknown model is "
    "RESOURCE_EXHAUSTED",
    open_connection()
    + [send(predict(1, model="sim")), send(predict(2, model="nope")), expect(error(2, "RESOURCE_EXHAUSTED")),
       expect(result(1, "XIN CHÀO"))],
    ["--max-concurrent-requests", "1", "--sim-batch-cost", "0.5"])

add("duplicate-request-id", "§8: a request id reused while in flight is PROTOCOL_ERROR on id 0, and the "
    "connection closed",
    open_connection() + [send(predict(7, model="sim")), send(predict(7, model="sim")),
                         expect(error(0, "PROTOCOL_ERROR", "already in flight")), {"expect_closed": "a"}],
    ["--sim-batch-cost", "0.5"])

add("cancel-id-zero", "§3.4, §8: CANCEL on request id 0 names no request: PROTOCOL_ERROR on id 0",
    open_connection() + [send({"hex": struct.pack(">IBBBI", 0, 1, wire.TYPES["CANCEL"], 0, 0).hex()}),
                         expect(error(0, "PROTOCOL_ERROR")), {"expect_closed": "a"}])

# --- Keep-alive, end of file, idling (§3.6, §8) ----------------------------------------------

add("unsolicited-pong", "§3.6: a PONG nobody asked for is ignored",
    open_connection() + [send({"request_id": 0, "type": "PONG", "value": 5}), {"expect_silence": "a", "ms": 200},
                         send(ping(6)), pong(6)])

add("eof-mid-frame", "§8: a connection that ends in the middle of a frame is closed without an answer",
    open_connection() + [send({"hex": wire.encode_frame(predict(1))[:15].hex()}), {"shutdown_write": "a"},
                         {"expect_closed": "a"}])

add("idle-timeout", "§3.6: a connection with nothing received and nothing in flight for the idle timeout gets "
    "GOAWAY UNAVAILABLE, then is closed",
    open_connection() + [expect({"type": "GOAWAY", "status": "UNAVAILABLE", "message_contains": "idle"}),
                         {"expect_closed": "a"}],
    ["--idle-timeout", "0.3"])

# --- Draining (§3.7) -------------------------------------------------------------------------

add("drain-with-work", "§3.7: on SIGTERM a connection with a request in flight gets GOAWAY, still answers PING, "
    "refuses new requests UNAVAILABLE (before looking at their model), answers the request in flight, then "
    "closes; a connection without HELLO gets GOAWAY and is closed",
    open_connection() + [{"connect": "b"}, send(predict(1, model="sim")), {"expect_silence": "a", "ms": 200},
                         {"signal": "SIGTERM"},
                         expect({"type": "GOAWAY", "status": "UNAVAILABLE"}),
                         expect({"type": "GOAWAY", "status": "UNAVAILABLE"}, on="b"), {"expect_closed": "b"},
                         send(ping(2)), pong(2),
                         send(predict(3)), expect(error(3, "UNAVAILABLE")),
                         send(predict(4, model="nope")), expect(error(4, "UNAVAILABLE")),
                         expect(result(1, "XIN CHÀO")), {"expect_closed": "a"}],
    ["--sim-batch-cost", "1.5"])

add("drain-refused-v2", "§3.7: on a version-2 connection, a request that arrives while the server drains is "
    "answered REFUSED: it was not started",
    open_connection(versions=(2, 1)) + [send(predict(1, model="sim")), {"expect_silence": "a", "ms": 200},
                                        {"signal": "SIGTERM"},
                                        expect({"type": "GOAWAY", "status": "UNAVAILABLE"}),
                                        send(predict(2)), expect(error(2, "REFUSED", "not started")),
                                        expect(result(1, "XIN CHÀO")), {"expect_closed": "a"}],
    ["--sim-batch-cost", "1.5"])

add("drain-timeout", "§3.7: a request still in flight at the drain timeout is answered UNAVAILABLE, and the "
    "connection closed",
    open_connection() + [send(predict(1, model="sim")), {"expect_silence": "a", "ms": 200},
                         {"signal": "SIGTERM"}, expect({"type": "GOAWAY", "status": "UNAVAILABLE"}),
                         expect(error(1, "UNAVAILABLE", "shut down")), {"expect_closed": "a"}],
    ["--sim-batch-cost", "30", "--drain-timeout", "0.3"])


def main():
    make_vectors.write_files(OUT, exchanges, "exchanges")


if __name__ == "__main__":
    main()
