#!/usr/bin/env python3
"""Writes the worker protocol's golden vectors, Protocol/vectors/worker, from the definitions
below (PROTOCOL.md §11), with an encoder of its own written from the spec's tables.

Each vector is one JSON file:
  name, description     what it is, in words
  decoder               role ("server" decodes what a worker sends, "worker" what a server
                        sends) and max_frame_size
  hex                   the bytes, one frame per line
  results               the frames decoding yields, in order
  connection_error      null, or the status decoding ends with (the connection then closes)
  reencode              "exact": encoding `results` gives `hex` again; "none": invalid input

Run it after changing §11, then `tools/check_vectors.py` (the Python worker library) and
`swift test` (the server's codec).
"""

import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_vectors import frame_hex, write_files  # noqa: E402  (the same file layout)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Protocol", "vectors", "worker")

TYPES = {"PING": 0x07, "PONG": 0x08, "ERROR": 0x47,
         "WORKER_HELLO": 0x80, "BATCH_DONE": 0x81, "TOKENS": 0x82, "GENERATE_DONE": 0x83,
         "WORKER_WELCOME": 0xA0, "RUN_BATCH": 0xA1, "GENERATE": 0xA2, "CANCEL_WORK": 0xA3, "CREDIT": 0xA4,
         "SHUTDOWN": 0xA5}
STATUS = {"INVALID_ARGUMENT": 1, "DEADLINE_EXCEEDED": 6, "CANCELLED": 7, "UNAVAILABLE": 8, "UNAUTHENTICATED": 9,
          "PROTOCOL_ERROR": 10, "INTERNAL": 12}
KINDS = {"model": 0, "generator": 1}
INPUTS = {"bytes": 0, "text": 1}
OUTPUTS = {"bytes": 0, "text": 1, "vector": 2}
MAX = 4 * 1024 * 1024


def str16(text):
    data = text.encode()
    return struct.pack(">H", len(data)) + data


def str32(text):
    data = text.encode()
    return struct.pack(">I", len(data)) + data


def bytes32(hex_):
    data = bytes.fromhex(hex_)
    return struct.pack(">I", len(data)) + data


def payload(frame):
    kind = frame["type"]
    if kind == "WORKER_HELLO":
        out = bytes([len(frame["versions"])] + frame["versions"]) + str16(frame["worker_name"])
        out += str16(frame["auth_token"]) + struct.pack(">H", len(frame["declarations"]))
        for d in frame["declarations"]:
            out += str16(d["name"]) + struct.pack(">BBBIII", KINDS[d["kind"]], INPUTS[d["input"]],
                                                   OUTPUTS[d["output"]], d["dimensions"],
                                                   d["preferred_batch_size"], d["concurrency"])
        return out
    if kind == "BATCH_DONE":
        return struct.pack(">I", len(frame["outputs_hex"])) + b"".join(bytes32(o) for o in frame["outputs_hex"])
    if kind == "TOKENS":
        return struct.pack(">I", len(frame["tokens"])) + b"".join(str32(t) for t in frame["tokens"])
    if kind == "GENERATE_DONE":
        return struct.pack(">I", frame["token_count"])
    if kind == "WORKER_WELCOME":
        return struct.pack(">BIII", frame["version"], frame["max_frame_size"], frame["heartbeat_interval_ms"],
                           frame["heartbeat_timeout_ms"])
    if kind == "RUN_BATCH":
        return (struct.pack(">I", frame["deadline_ms"]) + str16(frame["model"])
                + struct.pack(">I", len(frame["inputs_hex"])) + b"".join(bytes32(i) for i in frame["inputs_hex"]))
    if kind == "GENERATE":
        return (struct.pack(">I", frame["deadline_ms"]) + str16(frame["generator"]) + str32(frame["prompt"])
                + struct.pack(">IIB", frame["max_tokens"], frame["window"], len(frame["stop"]))
                + b"".join(str16(s) for s in frame["stop"]))
    if kind == "CANCEL_WORK":
        return b""
    if kind == "CREDIT":
        return struct.pack(">I", frame["tokens"])
    if kind == "SHUTDOWN":
        return struct.pack(">I", frame["grace_ms"])
    if kind in ("PING", "PONG"):
        return struct.pack(">Q", frame["value"])
    if kind == "ERROR":
        return struct.pack(">HI", STATUS[frame["status"]], frame["retry_after_ms"]) + str16(frame["message"])
    raise ValueError(kind)


def encode(frame, body=None, type_byte=None, version=1, flags=0, length=None):
    body = payload(frame) if body is None else body
    return struct.pack(">IBBBI", len(body) if length is None else length, version,
                       TYPES[frame["type"]] if type_byte is None else type_byte, flags, frame["request_id"]) + body


vectors = []


def add(name, description, role, datas, results, error=None, max_frame_size=MAX):
    vectors.append({"name": name, "description": description,
                    "decoder": {"role": role, "max_frame_size": max_frame_size},
                    "hex": "\n".join(frame_hex(d) for d in datas), "results": results,
                    "connection_error": error, "reencode": "none" if error else "exact"})


def valid(name, description, role, frames):
    add(name, description, role, [encode(f) for f in frames], frames)


def invalid(name, description, role, datas, error="PROTOCOL_ERROR", results=(), max_frame_size=MAX):
    add(name, description, role, datas, list(results), error, max_frame_size)


HELLO = {"type": "WORKER_HELLO", "request_id": 0, "versions": [1], "worker_name": "minilm-4242",
         "auth_token": "bí mật",
         "declarations": [
             {"name": "minilm", "kind": "model", "input": "text", "output": "vector", "dimensions": 384,
              "preferred_batch_size": 32, "concurrency": 1},
             {"name": "smollm2", "kind": "generator", "input": "text", "output": "text", "dimensions": 0,
              "preferred_batch_size": 0, "concurrency": 4}]}
RUN_BATCH = {"type": "RUN_BATCH", "request_id": 1, "deadline_ms": 250, "model": "minilm",
             "inputs_hex": ["xin chào".encode().hex(), ""]}
TOKENS = {"type": "TOKENS", "request_id": 2, "tokens": ["Hà ", "Nội", ""]}

# --- Valid frames: every message type, in the direction it travels --------------------------

valid("worker-hello", "WORKER_HELLO: version 1, worker \"minilm-4242\", token \"bí mật\", a model of text to "
      "384-float vectors preferring batches of 32 and a generator of 4 streams at once", "server", [HELLO])
valid("batch-done", "BATCH_DONE for batch 1: two outputs, the second empty", "server",
      [{"type": "BATCH_DONE", "request_id": 1, "outputs_hex": ["0000803f", ""]}])
valid("tokens", "TOKENS for stream 2: three tokens in one frame, UTF-8, the last empty", "server", [TOKENS])
valid("generate-done", "GENERATE_DONE for stream 2 after 3 tokens", "server",
      [{"type": "GENERATE_DONE", "request_id": 2, "token_count": 3}])
valid("worker-pong", "PONG from a worker, echoing 42", "server", [{"type": "PONG", "request_id": 0, "value": 42}])
valid("worker-error", "ERROR from a worker for batch 1: INTERNAL \"model failed\"", "server",
      [{"type": "ERROR", "request_id": 1, "status": "INTERNAL", "retry_after_ms": 0, "message": "model failed"}])
valid("worker-welcome", "WORKER_WELCOME: version 1, frames up to 64 MiB, a ping every second, hung after 10 s",
      "worker", [{"type": "WORKER_WELCOME", "request_id": 0, "version": 1, "max_frame_size": 64 << 20,
                  "heartbeat_interval_ms": 1000, "heartbeat_timeout_ms": 10000}])
valid("run-batch", "RUN_BATCH 1 of model minilm, 250 ms left: the inputs \"xin chào\" and empty", "worker",
      [RUN_BATCH])
valid("generate", "GENERATE 2 of smollm2: prompt, at most 64 tokens, a window of 32, stop at \"\\n\\n\" or "
      "\"User:\", no deadline", "worker",
      [{"type": "GENERATE", "request_id": 2, "deadline_ms": 0, "generator": "smollm2", "prompt": "Thủ đô là",
        "max_tokens": 64, "window": 32, "stop": ["\n\n", "User:"]}])
valid("credit", "CREDIT for stream 2: 16 more tokens", "worker", [{"type": "CREDIT", "request_id": 2, "tokens": 16}])
valid("cancel-work", "CANCEL_WORK for batch 1", "worker", [{"type": "CANCEL_WORK", "request_id": 1}])
valid("shutdown", "SHUTDOWN with 5 s of grace", "worker", [{"type": "SHUTDOWN", "request_id": 0, "grace_ms": 5000}])
valid("server-ping", "PING from the server, value 7", "worker", [{"type": "PING", "request_id": 0, "value": 7}])
valid("refused", "ERROR on id 0 refusing a handshake: UNAUTHENTICATED \"unknown worker token\"", "worker",
      [{"type": "ERROR", "request_id": 0, "status": "UNAUTHENTICATED", "retry_after_ms": 0,
        "message": "unknown worker token"}])
valid("interleaved", "A batch and a stream answered on one connection, their frames interleaved", "server",
      [TOKENS, {"type": "BATCH_DONE", "request_id": 1, "outputs_hex": ["01"]},
       {"type": "GENERATE_DONE", "request_id": 2, "token_count": 3}])

# --- Invalid input: the receiver answers PROTOCOL_ERROR (or the status named) and closes -----

invalid("worker-sends-run-batch", "RUN_BATCH sent by a worker: a server's type", "server", [encode(RUN_BATCH)])
invalid("server-sends-tokens", "TOKENS sent by a server: a worker's type", "worker", [encode(TOKENS)])
invalid("client-type-on-worker-link", "A client's PREDICT (0x02) on the worker connection", "server",
        [encode({"type": "PING", "request_id": 1}, body=b"\x00\x00\x00\x00\x00\x01m\x00", type_byte=0x02)])
invalid("unknown-type", "Type 0x9f, in the workers' range but unassigned", "server",
        [encode({"type": "PONG", "request_id": 0, "value": 1}, type_byte=0x9F)])
invalid("hello-nonzero-id", "WORKER_HELLO on request id 5: connection frames use id 0", "server",
        [encode(dict(HELLO, request_id=5))])
invalid("batch-done-id-zero", "BATCH_DONE on request id 0: work frames never use it", "server",
        [encode({"type": "BATCH_DONE", "request_id": 0, "outputs_hex": []})])
invalid("tokens-count-lies", "TOKENS claiming 3 tokens and carrying 1", "server",
        [encode(TOKENS, body=struct.pack(">I", 3) + str32("một"))])
invalid("hello-trailing-bytes", "WORKER_HELLO with a byte after its last declaration", "server",
        [encode(HELLO, body=payload(HELLO) + b"\x00")])
invalid("hello-unknown-kind", "WORKER_HELLO declaring kind 7", "server",
        [encode(HELLO, body=payload(HELLO).replace(str16("minilm") + b"\x00\x01\x02", str16("minilm") + b"\x07\x01\x02"))])
invalid("tokens-invalid-utf8", "TOKENS whose token is not UTF-8", "server",
        [encode(TOKENS, body=struct.pack(">I", 1) + struct.pack(">I", 2) + b"\xc3\x28")])
invalid("generate-five-stops", "GENERATE with 5 stop sequences: at most 4", "worker",
        [encode({"type": "GENERATE", "request_id": 2},
                body=struct.pack(">I", 0) + str16("g") + str32("p") + struct.pack(">IIB", 0, 32, 5)
                + b"".join(str16(s) for s in "abcde"))])
invalid("flags-set", "BATCH_DONE with the compression flag: version 1 of the worker protocol compresses nothing",
        "server", [encode({"type": "BATCH_DONE", "request_id": 1, "outputs_hex": []}, flags=0x01)])
invalid("unknown-version", "A frame header of version 2", "server",
        [encode({"type": "PONG", "request_id": 0, "value": 1}, version=2)], error="UNSUPPORTED_VERSION")
invalid("over-limit", "A BATCH_DONE of 65,537 bytes where the limit is 65,536: refused from its header alone",
        "server", [encode({"type": "BATCH_DONE", "request_id": 1}, body=b"", length=65537)],
        error="FRAME_TOO_LARGE", max_frame_size=65536)
invalid("welcome-then-garbage", "A good WORKER_WELCOME, then a frame of unknown type: the first is decoded",
        "worker", [encode({"type": "WORKER_WELCOME", "request_id": 0, "version": 1, "max_frame_size": MAX,
                           "heartbeat_interval_ms": 1000, "heartbeat_timeout_ms": 10000}),
                   encode({"type": "PING", "request_id": 0, "value": 0}, type_byte=0x5A)],
        results=[{"type": "WORKER_WELCOME", "request_id": 0, "version": 1, "max_frame_size": MAX,
                  "heartbeat_interval_ms": 1000, "heartbeat_timeout_ms": 10000}])


def main():
    write_files(OUT, vectors, "worker vectors")


if __name__ == "__main__":
    main()
