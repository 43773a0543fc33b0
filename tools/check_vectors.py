#!/usr/bin/env python3
"""Decodes and re-encodes every golden vector of Protocol/vectors with the Python
implementation (tools/wire.py) and checks each against its expectation.

Exit status 0 when all pass. The Swift test suite checks the same files with the Swift codec.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wire  # noqa: E402

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


def main():
    names = sorted(n for n in os.listdir(VECTORS) if n.endswith(".json"))
    failed = 0
    for name in names:
        with open(os.path.join(VECTORS, name), encoding="utf-8") as f:
            vector = json.load(f)
        problems = check(vector)
        if problems:
            failed += 1
            print("FAIL %s: %s" % (name, "; ".join(problems)))
    print("%d passed, %d failed" % (len(names) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
