#!/usr/bin/env python3
"""Decodes and re-encodes every golden vector of Protocol/vectors with the Python
implementation (tools/wire.py) and checks each against its expectation; and the worker
protocol's vectors (Protocol/vectors/worker) against the Python worker library.

Exit status 0 when all pass. The Swift test suite checks the same files with the Swift codec.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "python"))
import wire  # noqa: E402
from vietnamese_ai_worker import protocol  # noqa: E402

VECTORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Protocol", "vectors")


def check(vector):
    settings = vector["decoder"]
    data = bytes.fromhex("".join(vector["hex"].split()))
    decoder = wire.Decoder(settings["role"], settings["max_frame_size"], settings["compression"])
    results, error = [], None
    try:
        for item in decoder.feed(data, eof=vector["eof"]):
            if isinstance(item, wire.WireError):
                results.append({"request_error": item.status, "request_id": item.request_id})
            else:
                results.append(item)
    except wire.WireError as e:
        error = e.status
    problems = []
    if results != vector["results"]:
        problems.append("decoded %r, expected %r" % (results, vector["results"]))
    if error != vector["connection_error"]:
        problems.append("connection error %r, expected %r" % (error, vector["connection_error"]))
    mode = vector["reencode"]
    if mode == "exact":
        again = b"".join(wire.encode_frame(frame) for frame in vector["results"])
        if again != data:
            problems.append("re-encoded to %s" % again.hex())
    elif mode == "roundtrip":
        again = b"".join(wire.encode_frame(frame, compress=True) for frame in vector["results"])
        redecoded = wire.Decoder(settings["role"], settings["max_frame_size"], True).feed(again, eof=True)
        if redecoded != vector["results"]:
            problems.append("re-encoded frames decode to %r" % redecoded)
    return problems


WORKER_VECTORS = os.path.join(VECTORS, "worker")


def worker_fields(type_, fields):
    """The library's decoded fields under the vectors' names."""
    p = protocol
    if type_ == p.RUN_BATCH:
        return {"deadline_ms": fields["deadline_ms"], "model": fields["model"],
                "inputs_hex": [bytes(i).hex() for i in fields["inputs"]]}
    if type_ == p.CREDIT:
        return {"tokens": fields["value"]}
    if type_ == p.SHUTDOWN:
        return {"grace_ms": fields["value"]}
    if type_ == p.ERROR:
        return dict(fields, status=p.STATUS_NAMES.get(fields["status"], fields["status"]))
    return fields


def check_worker(vector):
    """Bytes a server sends are decoded by the worker library; frames a worker sends are
    encoded by it (the server's side of both is the Swift test suite's)."""
    p = protocol
    data = bytes.fromhex("".join(vector["hex"].split()))
    names = {value: key for key, value in vars(p).items() if key.isupper() and isinstance(value, int)
             and key in ("PING", "PONG", "ERROR", "WORKER_WELCOME", "RUN_BATCH", "GENERATE", "CANCEL_WORK",
                         "CREDIT", "SHUTDOWN")}
    if vector["decoder"]["role"] == "worker":
        reader, results, error = p.FrameReader(vector["decoder"]["max_frame_size"]), [], None
        try:
            for type_, request_id, payload in reader.feed(data):
                frame = {"type": names[type_], "request_id": request_id}
                frame.update(worker_fields(type_, p.decode(type_, payload)))
                results.append(frame)
        except p.ProtocolError as problem:
            error = {value: key for key, value in vars(p).items() if key.isupper()
                     and key in ("PROTOCOL_ERROR", "FRAME_TOO_LARGE", "UNSUPPORTED_VERSION")}[problem.status]
        problems = []
        if results != vector["results"]:
            problems.append("decoded %r, expected %r" % (results, vector["results"]))
        if error != vector["connection_error"]:
            problems.append("error %r, expected %r" % (error, vector["connection_error"]))
        return problems
    if vector["reencode"] != "exact":
        return []  # a worker's invalid frames: the server's codec checks them
    again = b""
    for f in vector["results"]:
        kind, rid = f["type"], f["request_id"]
        if kind == "WORKER_HELLO":
            again += p.hello(f["worker_name"], f["auth_token"], [
                (d["name"], p.KIND_MODEL if d["kind"] == "model" else p.KIND_GENERATOR, p.KINDS_IN[d["input"]],
                 p.KINDS_OUT[d["output"]], d["dimensions"], d["preferred_batch_size"], d["concurrency"])
                for d in f["declarations"]])
        elif kind == "BATCH_DONE":
            again += p.batch_done(rid, [bytes.fromhex(o) for o in f["outputs_hex"]])
        elif kind == "TOKENS":
            again += p.tokens(rid, f["tokens"])
        elif kind == "GENERATE_DONE":
            again += p.generate_done(rid, f["token_count"])
        elif kind == "PONG":
            again += p.pong(f["value"])
        elif kind == "ERROR":
            status = {v: k for k, v in p.STATUS_NAMES.items()}[f["status"]]
            again += p.error(rid, status, f["message"])
        else:
            return ["the worker library does not send %s" % kind]
    return [] if again == data else ["the worker library encodes %s" % again.hex()]


def run(folder, checker):
    names = sorted(n for n in os.listdir(folder) if n.endswith(".json"))
    failed = 0
    for name in names:
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            vector = json.load(f)
        problems = checker(vector)
        if problems:
            failed += 1
            print("FAIL %s/%s: %s" % (os.path.basename(folder), name, "; ".join(problems)))
    return len(names), failed


def main():
    total, failed = run(VECTORS, check)
    worker_total, worker_failed = run(WORKER_VECTORS, check_worker)
    print("%d passed, %d failed; worker protocol: %d passed, %d failed" % (
        total - failed, failed, worker_total - worker_failed, worker_failed))
    return 1 if failed or worker_failed else 0


if __name__ == "__main__":
    sys.exit(main())
