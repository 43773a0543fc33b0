#!/usr/bin/env python3
"""Writes the golden test vectors of Protocol/vectors from the definitions below.

Each vector is one JSON file:
  name, description     what it is and what it decodes to, in words
  decoder               role ("server" decodes what clients send), compression (negotiated or
                        not), max_frame_size
  hex                   the bytes, one frame per line, header and payload fields separated
  eof                   whether the bytes are followed by the end of the connection
  results               what decoding yields, in order: a frame (dict) or a request error
                        {"request_error": STATUS, "request_id": N}
  connection_error      null, or the status of the connection error decoding ends with
  reencode              "exact": encoding `results` gives `hex` again byte for byte;
                        "roundtrip": encoding with compression gives bytes that decode to the same
                        results (zlib's output is not specified byte for byte); "none": invalid input

Run it after changing the protocol, then `tools/check_vectors.py` and `swift test`.
"""

import json
import os
import struct
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wire  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Protocol", "vectors")


def header(length, type_name, request_id, flags=0, version=1, type_byte=None):
    t = wire.TYPES[type_name] if type_byte is None else type_byte
    return struct.pack(">IBBBI", length, version, t, flags, request_id)


def frame_hex(data):
    """Lays out one frame as hex: header fields, then the payload in 32-byte rows."""
    if len(data) < wire.HEADER_SIZE:
        return data.hex()
    head = data[:wire.HEADER_SIZE]
    parts = [head[0:4].hex(), head[4:5].hex(), head[5:6].hex(), head[6:7].hex(), head[7:11].hex()]
    payload = data[wire.HEADER_SIZE:]
    rows = [payload[i:i + 32].hex() for i in range(0, len(payload), 32)]
    return " ".join(parts) + ("\n" + "\n".join(rows) if rows else "")


vectors = []


def add(name, description, frames_bytes, results, role="server", compression=False,
        max_frame_size=wire.DEFAULT_MAX_FRAME_SIZE, connection_error=None, eof=False, reencode="exact"):
    vectors.append({
        "name": name,
        "description": description,
        "decoder": {"role": role, "compression": compression, "max_frame_size": max_frame_size},
        "hex": "\n".join(frame_hex(f) for f in frames_bytes),
        "eof": eof,
        "results": results,
        "connection_error": connection_error,
        "reencode": reencode,
    })


def valid(name, description, frames, role="server"):
    add(name, description, [wire.encode_frame(f) for f in frames], frames, role=role)


# --- Valid frames, one per message type -------------------------------------------------------

valid("hello", "HELLO: client offers version 1, client id \"c1\", no auth token, compressions none and zlib",
      [{"request_id": 0, "type": "HELLO", "versions": [1], "client_id": "c1", "auth_token": "",
        "compressions": [0, 1]}])
valid("hello-token", "HELLO with auth token \"s3cret\" and client id \"người-dùng-7\" (UTF-8), versions 2 and 1",
      [{"request_id": 0, "type": "HELLO", "versions": [2, 1], "client_id": "người-dùng-7",
        "auth_token": "s3cret", "compressions": [0]}])
valid("hello-max-frame-size", "HELLO from a client that accepts frames of at most 64 KiB: the optional "
      "last field, max_frame_size, after the compressions",
      [{"request_id": 0, "type": "HELLO", "versions": [1], "client_id": "c1", "auth_token": "",
        "compressions": [0], "max_frame_size": 65536}])
valid("welcome", "WELCOME: version 1, zlib, max frame 4 MiB, 1024 concurrent requests, client id \"c1\"",
      [{"request_id": 0, "type": "WELCOME", "version": 1, "compression": 1, "max_frame_size": 4194304,
        "max_concurrent_requests": 1024, "client_id": "c1"}], role="client")
valid("predict", "PREDICT on request 7: model \"echo\", input \"xin chào\" (UTF-8 bytes), deadline 250 ms",
      [{"request_id": 7, "type": "PREDICT", "deadline_ms": 250, "model": "echo",
        "input_hex": "xin chào".encode().hex()}])
valid("predict-empty-input", "PREDICT on request 1: model \"echo\", empty input, no deadline",
      [{"request_id": 1, "type": "PREDICT", "deadline_ms": 0, "model": "echo", "input_hex": ""}])
valid("batch-predict", "BATCH_PREDICT on request 9: model \"sim\", inputs \"a\", \"bb\", \"\" in that order, no deadline",
      [{"request_id": 9, "type": "BATCH_PREDICT", "deadline_ms": 0, "model": "sim",
        "inputs_hex": ["61", "6262", ""]}])
valid("batch-predict-empty", "BATCH_PREDICT on request 10 with no inputs (answered by an empty BATCH_RESULT)",
      [{"request_id": 10, "type": "BATCH_PREDICT", "deadline_ms": 1000, "model": "echo", "inputs_hex": []}])
valid("stream-open", "STREAM_OPEN on request 3: default generator, prompt \"Viết bài luận về AI\", deadline 60 s",
      [{"request_id": 3, "type": "STREAM_OPEN", "deadline_ms": 60000, "model": "",
        "prompt": "Viết bài luận về AI"}])
valid("cancel", "CANCEL of request 3 (empty payload)", [{"request_id": 3, "type": "CANCEL"}])
valid("stats-request", "STATS_REQUEST on request 4 (empty payload)", [{"request_id": 4, "type": "STATS_REQUEST"}])
valid("ping", "PING from the client with value 0x0102030405060708",
      [{"request_id": 0, "type": "PING", "value": 0x0102030405060708}])
valid("pong", "PONG from the server echoing 0x0102030405060708",
      [{"request_id": 0, "type": "PONG", "value": 0x0102030405060708}], role="client")
valid("ping-from-server", "PING from the server (servers may ping too) with value 42",
      [{"request_id": 0, "type": "PING", "value": 42}], role="client")
valid("result", "RESULT on request 7: output \"xin chào\"",
      [{"request_id": 7, "type": "RESULT", "output_hex": "xin chào".encode().hex()}], role="client")
valid("batch-result", "BATCH_RESULT on request 9: outputs \"A\", \"BB\", \"\" in input order",
      [{"request_id": 9, "type": "BATCH_RESULT", "outputs_hex": ["41", "4242", ""]}], role="client")
valid("token", "TOKEN on request 3: \"Việt \\\"😀\\\"\\n\" (Vietnamese, quotes, emoji, newline)",
      [{"request_id": 3, "type": "TOKEN", "token": "Việt \"😀\"\n"}], role="client")
valid("stream-end", "STREAM_END on request 3 after 5 tokens",
      [{"request_id": 3, "type": "STREAM_END", "token_count": 5}], role="client")
valid("stats", "STATS on request 4 with a JSON document using the seed's keys",
      [{"request_id": 4, "type": "STATS",
        "json": "{\"batch\":{\"latency_p50\":0.001},\"rate_limit\":{\"ty_le_tu_choi\":0},\"stream\":{\"tong_stream\":1}}"}],
      role="client")
valid("error-rate-limited", "ERROR on request 12: RATE_LIMITED, retry after 600 ms, message \"rate limit exceeded\"",
      [{"request_id": 12, "type": "ERROR", "status": "RATE_LIMITED", "retry_after_ms": 600,
        "message": "rate limit exceeded"}], role="client")
valid("error-connection", "ERROR on request 0 (the whole connection): PROTOCOL_ERROR \"unknown frame type 0x30\"",
      [{"request_id": 0, "type": "ERROR", "status": "PROTOCOL_ERROR", "retry_after_ms": 0,
        "message": "unknown frame type 0x30"}], role="client")
valid("error-unknown-status", "ERROR on request 5 with status 999, unknown to this version (handled as INTERNAL)",
      [{"request_id": 5, "type": "ERROR", "status": "UNKNOWN(999)", "retry_after_ms": 0, "message": "?"}],
      role="client")
valid("goaway", "GOAWAY: UNAVAILABLE \"server is shutting down\"",
      [{"request_id": 0, "type": "GOAWAY", "status": "UNAVAILABLE", "message": "server is shutting down"}],
      role="client")
valid("multiplexed-stream", "Answers interleaved on one connection: TOKEN \"Xin\" and \" chào\" on request 3, "
      "RESULT \"ok\" on request 8, STREAM_END (2 tokens) on request 3",
      [{"request_id": 3, "type": "TOKEN", "token": "Xin"},
       {"request_id": 8, "type": "RESULT", "output_hex": "6f6b"},
       {"request_id": 3, "type": "TOKEN", "token": " chào"},
       {"request_id": 3, "type": "STREAM_END", "token_count": 2}], role="client")

# --- Compressed frames ---------------------------------------------------------------------

big_input = ("Trí tuệ nhân tạo " * 256).encode()
predict_big = {"request_id": 21, "type": "PREDICT", "deadline_ms": 0, "model": "echo", "input_hex": big_input.hex()}
add("predict-compressed", "PREDICT on request 21, zlib-compressed: model \"echo\", input \"Trí tuệ nhân tạo \" x 256 "
    "(%d bytes); the payload starts with its uncompressed length" % len(big_input),
    [wire.encode_frame(predict_big, compress=True)], [predict_big], compression=True, reencode="roundtrip")
result_big = {"request_id": 21, "type": "RESULT", "output_hex": bytes(4096).hex()}
add("result-compressed", "RESULT on request 21, zlib-compressed: 4096 zero bytes",
    [wire.encode_frame(result_big, compress=True)], [result_big], role="client", compression=True,
    reencode="roundtrip")
small = {"request_id": 22, "type": "PREDICT", "deadline_ms": 0, "model": "echo", "input_hex": "6869"}
add("small-uncompressed-when-negotiated", "PREDICT on request 22 below the compression threshold: sent uncompressed "
    "even though zlib was negotiated", [wire.encode_frame(small, compress=True)], [small], compression=True)

# --- Invalid input ---------------------------------------------------------------------------

add("frame-4gib", "A header declaring a 4 GiB payload (0xFFFFFFFF), no payload: rejected before any buffering",
    [header(0xFFFFFFFF, "PREDICT", 1)], [], connection_error="FRAME_TOO_LARGE", reencode="none")
add("frame-over-limit", "A 1025-byte CANCEL payload when the receiver's limit is 1024: rejected on the header",
    [header(1025, "CANCEL", 1)], [], max_frame_size=1024, connection_error="FRAME_TOO_LARGE", reencode="none")
add("unknown-type", "Frame type 0x30, which version 1 does not define",
    [header(0, "CANCEL", 1, type_byte=0x30)], [], connection_error="PROTOCOL_ERROR", reencode="none")
add("unknown-flags", "CANCEL with flag bit 0x02 set, which version 1 does not define",
    [header(0, "CANCEL", 1, flags=0x02)], [], connection_error="PROTOCOL_ERROR", reencode="none")
add("unknown-version", "A CANCEL frame whose header says protocol version 2",
    [header(0, "CANCEL", 1, version=2)], [], connection_error="UNSUPPORTED_VERSION", reencode="none")
add("wrong-direction", "A RESULT frame sent to a server (only servers send RESULT)",
    [wire.encode_frame({"request_id": 7, "type": "RESULT", "output_hex": ""})], [],
    connection_error="PROTOCOL_ERROR", reencode="none")
add("request-id-zero", "A PREDICT on request id 0, which is reserved for the connection",
    [wire.encode_frame({"request_id": 0, "type": "PREDICT", "deadline_ms": 0, "model": "echo", "input_hex": ""})],
    [], connection_error="PROTOCOL_ERROR", reencode="none")
add("hello-nonzero-id", "A HELLO on request id 5 (connection frames use id 0)",
    [header(6, "HELLO", 5) + bytes([1, 1, 0, 0, 0, 0, 0])[:6]], [], connection_error="PROTOCOL_ERROR",
    reencode="none")
add("cancel-id-zero", "A CANCEL on request id 0: it must name a request", [header(0, "CANCEL", 0)], [],
    connection_error="PROTOCOL_ERROR", reencode="none")
add("truncated-field", "A PREDICT whose model name claims 200 bytes in a 12-byte payload",
    [header(12, "PREDICT", 2) + struct.pack(">IH", 0, 200) + b"echo" + b"\0\0"], [],
    connection_error="PROTOCOL_ERROR", reencode="none")
add("trailing-bytes", "A CANCEL with a 3-byte payload (CANCEL's payload is empty)",
    [header(3, "CANCEL", 4) + b"abc"], [], connection_error="PROTOCOL_ERROR", reencode="none")
hello_body = bytes([1, 1]) + struct.pack(">H", 2) + b"c1" + struct.pack(">H", 0) + bytes([1, 0]) + b"\x00\x10"
add("hello-partial-limit", "A HELLO with 2 bytes after its compressions: the optional max_frame_size is 4 bytes "
    "or absent", [header(len(hello_body), "HELLO", 0) + hello_body], [], connection_error="PROTOCOL_ERROR",
    reencode="none")
add("batch-count-lies", "A BATCH_PREDICT whose count says 1,000,000 inputs in a 14-byte payload: rejected before "
    "allocating for them", [header(14, "BATCH_PREDICT", 6) + struct.pack(">IH", 0, 0) + struct.pack(">I", 1000000)
                            + b"\0\0\0\0"], [], connection_error="PROTOCOL_ERROR", reencode="none")
bad_model = header(4 + 2 + 2 + 4, "PREDICT", 11) + struct.pack(">IH", 0, 2) + b"\xc3\x28" + struct.pack(">I", 0)
next_ok = wire.encode_frame({"request_id": 12, "type": "CANCEL"})
add("invalid-utf8-model", "A PREDICT on request 11 whose model name is not UTF-8 (bytes c3 28): that request fails "
    "with INVALID_ARGUMENT, the connection goes on (a CANCEL of request 12 follows and decodes)",
    [bad_model, next_ok], [{"request_error": "INVALID_ARGUMENT", "request_id": 11},
                           {"request_id": 12, "type": "CANCEL"}], reencode="none")
bad_hello = header(1 + 1 + 2 + 2 + 2 + 1, "HELLO", 0) + bytes([1, 1]) + struct.pack(">H", 2) + b"\xff\xfe" + \
    struct.pack(">H", 0) + bytes([0])
add("invalid-utf8-hello", "A HELLO whose client id is not UTF-8 (bytes ff fe): a connection error",
    [bad_hello], [], connection_error="PROTOCOL_ERROR", reencode="none")
add("compressed-not-negotiated", "A compressed PREDICT when compression was not negotiated",
    [wire.encode_frame(predict_big, compress=True)], [], compression=False, connection_error="PROTOCOL_ERROR",
    reencode="none")
add("compressed-hello", "A HELLO with the compressed flag (handshake frames are never compressed)",
    [header(0, "HELLO", 0, flags=1)], [], compression=True, connection_error="PROTOCOL_ERROR", reencode="none")


def compressed_frame(type_name, request_id, declared, zdata):
    body = struct.pack(">I", declared) + zdata
    return header(len(body), type_name, request_id, flags=1) + body


plain_cancel_payload = b""
bomb = zlib.compress(bytes(10 * 1024 * 1024), 9)
add("zip-bomb", "A %d-byte compressed RESULT that inflates to 10 MiB of zeros but declares 4096 bytes: stopped after "
    "4097 bytes of output" % (len(bomb) + 4 + 11), [compressed_frame("RESULT", 5, 4096, bomb)], [], role="client",
    compression=True, connection_error="PROTOCOL_ERROR", reencode="none")
add("declared-over-limit", "A compressed RESULT declaring 5 MiB uncompressed, over the 4 MiB limit: rejected before "
    "inflating", [compressed_frame("RESULT", 5, 5 * 1024 * 1024, zlib.compress(b"x"))], [], role="client",
    compression=True, connection_error="FRAME_TOO_LARGE", reencode="none")
result_payload = wire.encode_payload({"type": "RESULT", "output_hex": "00" * 100})
add("declared-length-lies", "A compressed RESULT whose payload inflates to 104 bytes but declares 200",
    [compressed_frame("RESULT", 5, 200, zlib.compress(result_payload))], [], role="client", compression=True,
    connection_error="PROTOCOL_ERROR", reencode="none")
add("corrupt-zlib", "A compressed RESULT whose zlib stream is garbage",
    [compressed_frame("RESULT", 5, 10, b"\x78\x9c\xff\xff\xff\xff\xff\xff")], [], role="client", compression=True,
    connection_error="PROTOCOL_ERROR", reencode="none")
add("zlib-trailing-garbage", "A compressed RESULT with 3 extra bytes after the end of its zlib stream",
    [compressed_frame("RESULT", 5, len(result_payload), zlib.compress(result_payload) + b"xyz")], [], role="client",
    compression=True, connection_error="PROTOCOL_ERROR", reencode="none")
full = wire.encode_frame({"request_id": 7, "type": "PREDICT", "deadline_ms": 0, "model": "echo", "input_hex": "6869"})
add("truncated-at-eof", "The first 15 bytes of a 23-byte PREDICT frame, then the connection closes",
    [full[:15]], [], eof=True, connection_error="PROTOCOL_ERROR", reencode="none")
add("garbage", "Text where a frame should start (\"GET / HTTP/1.1\\r\\n\"): its first four bytes read as a length of "
    "1.2 GB, over the limit", [b"GET / HTTP/1.1\r\n"], [], connection_error="FRAME_TOO_LARGE", reencode="none")


def write_files(folder, items, what):
    """Replaces the JSON files of `folder` with one file per item, named after it."""
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith(".json"):
            os.remove(os.path.join(folder, name))
    for item in items:
        with open(os.path.join(folder, item["name"] + ".json"), "w", encoding="utf-8") as f:
            json.dump(item, f, ensure_ascii=False, indent=2)
            f.write("\n")
    print("wrote %d %s to %s" % (len(items), what, os.path.normpath(folder)))


def main():
    write_files(OUT, vectors, "vectors")


if __name__ == "__main__":
    main()
