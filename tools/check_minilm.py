#!/usr/bin/env python3
"""End-to-end check of a real model behind rpc-server: all-MiniLM-L6-v2 in a Python worker.

    tools/models/setup.sh minilm
    .venv-models/bin/python tools/check_minilm.py --spawn .build/debug/rpc-server

The served vector of each sentence, through the binary protocol (alone and in batches of
concurrent callers), /v1/embeddings and /v2/models/minilm/infer, must equal what the model
gives offline for it within 1e-5, however the server batched it; and similar sentences must
score higher than unrelated ones.
"""

import argparse
import base64
import json
import os
import struct
import subprocess
import sys
import threading
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "models"))

import live_client  # noqa: E402
import minilm  # noqa: E402  (the model, offline)

SENTENCES = [
    "Hà Nội là thủ đô của Việt Nam.",
    "Thủ đô của Việt Nam là Hà Nội.",
    "Tôi thích ăn phở bò vào buổi sáng.",
    "The cat sat on the mat.",
    "A cat was sitting on a rug.",
    "Stock markets fell sharply on Monday.",
    "Mô hình học máy cần nhiều dữ liệu.",
    "",
] + ["câu số %d về thời tiết hôm nay" % n for n in range(40)]

failures = []


def check(condition, message):
    print(("ok   " if condition else "FAIL ") + message, flush=True)
    if not condition:
        failures.append(message)


def close(a, b, tolerance=1e-5):
    return len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) <= tolerance


def floats(data):
    return list(struct.unpack("<%df" % (len(data) // 4), data))


def spawn(server):
    command = [server, "--port", "0", "--http-port", "0", "--batch-timeout", "0.005", "--rate-limit", "1000000",
               "--worker", "minilm=%s %s" % (sys.executable, os.path.join(HERE, "models", "minilm.py")),
               "--workers", "2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    ports = {}
    while len(ports) < 2:
        line = process.stdout.readline()
        if not line:
            raise SystemExit("rpc-server exited (code %s)" % process.wait())
        for door, prefix in (("binary", "listening on "), ("http", "http listening on ")):
            if line.startswith(prefix):
                ports[door] = int(line.split()[-1].rsplit(":", 1)[1])
    return process, ports["binary"], ports["http"]


def descendants(root):
    """The pids of the processes below `root`, from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def worker_processes(root):
    count = 0
    for pid in descendants(root):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as cmdline:
                arguments = cmdline.read().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"minilm.py") for a in arguments) and b"python" in arguments[0]:
            count += 1
    return count


def post(port, path, body):
    request = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spawn", required=True, metavar="RPC_SERVER")
    args = parser.parse_args()
    offline = {s: [float(x) for x in v] for s, v in zip(SENTENCES, minilm.embed(SENTENCES))}
    process, port, http = spawn(args.spawn)
    try:
        check(worker_processes(process.pid) == 2, "--workers 2 runs two worker processes")
        # One caller at a time: batches of one.
        connection = live_client.Connection("127.0.0.1", port)
        alone = {}
        for sentence in SENTENCES[:4]:
            rid = connection.request({"type": "PREDICT", "deadline_ms": 0, "model": "minilm",
                                      "input_hex": sentence.encode().hex()})
            frame = connection.wait(rid)[-1]
            alone[sentence] = floats(bytes.fromhex(frame["output_hex"])) if frame["type"] == "RESULT" else None
        check(all(alone[s] is not None and close(alone[s], offline[s]) for s in alone),
              "a predict alone gives the offline vector (384 floats, within 1e-5)")

        # Many callers at once: the server batches them.
        served, threads = {}, []

        def caller(sentence):
            own = live_client.Connection("127.0.0.1", port)
            rid = own.request({"type": "PREDICT", "deadline_ms": 0, "model": "minilm", "input_hex": sentence.encode().hex()})
            frame = own.wait(rid)[-1]
            served[sentence] = floats(bytes.fromhex(frame["output_hex"])) if frame["type"] == "RESULT" else frame
            own.close()

        for sentence in SENTENCES:
            threads.append(threading.Thread(target=caller, args=(sentence,)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        check(all(isinstance(served[s], list) and close(served[s], offline[s]) for s in SENTENCES),
              "%d concurrent predicts, batched by the server, each give the offline vector" % len(SENTENCES))
        stats = json.loads(connection.wait(connection.request({"type": "STATS_REQUEST"}))[-1]["json"])
        mean = stats["models"]["minilm"]["batch_size_tb"]
        check(mean > 1, "the server batched them (mean batch %.1f)" % mean)

        rid = connection.request({"type": "BATCH_PREDICT", "deadline_ms": 0, "model": "minilm",
                                  "inputs_hex": [s.encode().hex() for s in SENTENCES[:6]]})
        frame = connection.wait(rid)[-1]
        check(frame["type"] == "BATCH_RESULT"
              and all(close(floats(bytes.fromhex(o)), offline[s]) for o, s in zip(frame["outputs_hex"], SENTENCES[:6])),
              "a batch predict gives the offline vectors in order")
        connection.close()

        body = post(http, "/v1/embeddings", {"model": "minilm", "input": SENTENCES[:5]})
        check([d["index"] for d in body["data"]] == list(range(5))
              and all(close(d["embedding"], offline[s]) for d, s in zip(body["data"], SENTENCES[:5])),
              "/v1/embeddings gives the offline vectors")
        body = post(http, "/v1/embeddings", {"model": "minilm", "input": SENTENCES[0], "encoding_format": "base64"})
        check(close(floats(base64.b64decode(body["data"][0]["embedding"])), offline[SENTENCES[0]]),
              "/v1/embeddings in base64 gives the offline vector")
        body = post(http, "/v2/models/minilm/infer",
                    {"inputs": [{"name": "TEXT", "shape": [2], "datatype": "BYTES", "data": SENTENCES[3:5]}]})
        output = body["outputs"][0]
        rows = [output["data"][i * 384:(i + 1) * 384] for i in range(2)]
        check(output["datatype"] == "FP32" and output["shape"] == [2, 384]
              and all(close(r, offline[s]) for r, s in zip(rows, SENTENCES[3:5])),
              "/v2/models/minilm/infer gives FP32 [2, 384] equal to the offline vectors")

        def cosine(a, b):
            return sum(x * y for x, y in zip(served[a], served[b]))

        check(cosine(SENTENCES[0], SENTENCES[1]) > cosine(SENTENCES[0], SENTENCES[2]) + 0.1
              and cosine(SENTENCES[3], SENTENCES[4]) > cosine(SENTENCES[3], SENTENCES[5]) + 0.1,
              "similar sentences score higher than unrelated ones (%.2f > %.2f, %.2f > %.2f)" % (
                  cosine(SENTENCES[0], SENTENCES[1]), cosine(SENTENCES[0], SENTENCES[2]),
                  cosine(SENTENCES[3], SENTENCES[4]), cosine(SENTENCES[3], SENTENCES[5])))
    finally:
        process.terminate()
        code = process.wait(timeout=60)
    check(code == 0, "rpc-server exits 0 on SIGTERM and stops its worker")
    if failures:
        raise SystemExit("%d check(s) failed" % len(failures))
    print("every minilm check passed")


if __name__ == "__main__":
    main()
