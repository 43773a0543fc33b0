#!/usr/bin/env python3
"""Side-by-side benchmark of the HTTP door: rpc-server against a bare Hummingbird route and
FastAPI on uvicorn, and its SSE streams against the binary protocol's streams.

    python3 tools/bench_http.py                  # build, install the peers, run, update BENCHMARKS.md
    python3 tools/bench_http.py --duration 2 --rounds 1 --skip-build

HTTP predict: `wrk` (Debian) posts the same Open Inference Protocol body, keep-alive, to
`rpc-server`'s `/v2/models/echo/infer`, to `tools/peers/hummingbird-echo` (the same stack
handing the body back: its ceiling) and to `tools/peers/fastapi/echo_server.py` on uvicorn
(the Python service a user would write instead), in turns, the order turning each round.

Streams: `wrk` opens SSE streams of `/v1/stream` from the `syllables` generator and
`rpc-cli bench --mode stream` opens binary streams of the same prompt, from the same server,
in turns. Tokens per second are streams per second times the tokens each carries; a sample
stream read with urllib checks that count and the bytes each stream takes.

The script rewrites the section it owns in BENCHMARKS.md ("## The HTTP door") and leaves the
rest. Nothing here is timed against a threshold in CI.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (build, machine, run)

ROOT = bench.ROOT
HEADING = "## The HTTP door"
SERVER_FLAGS = ["--rate-limit", "100000000", "--batch-timeout", "0", "--token-interval", "0"]
VENV = os.path.join(ROOT, ".venv-bench")
FASTAPI = os.path.join(ROOT, "tools", "peers", "fastapi")
PAYLOAD = "x" * 64
INFER_BODY = json.dumps({"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": [PAYLOAD]}]})
STREAM_TOKENS = 1000
STREAM_BODY = json.dumps({"prompt": "tok " * STREAM_TOKENS, "model": "syllables"})


def spawn_rpc_server(binary, extra=()):
    """Starts rpc-server on free ports; returns the process and both ports."""
    command = [binary, "--port", "0", "--http-port", "0"] + SERVER_FLAGS + list(extra)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    ports = {}
    deadline = time.monotonic() + 120
    while len(ports) < 2 and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise SystemExit("rpc-server exited before listening (code %s)" % process.wait())
        for door, prefix in (("binary", "listening on "), ("http", "http listening on ")):
            if line.startswith(prefix):
                ports[door] = int(line.split()[-1].rsplit(":", 1)[1])
    return process, ports["binary"], ports["http"]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port, process):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the peer exited (code %s)" % process.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("nothing listens on %d after 60 s" % port)


def install_fastapi():
    python = os.path.join(VENV, "bin", "python")
    if not os.path.exists(python):
        bench.run([sys.executable, "-m", "venv", VENV])
    bench.run([python, "-m", "pip", "install", "-q", "-r", os.path.join(FASTAPI, "requirements.txt")])
    return python


UNITS = {"us": 1, "ms": 1e3, "s": 1e6}


def wrk(url, body, connections, duration, script_dir):
    """Runs wrk posting `body` to `url`; returns requests/s, p50 and p99 in µs, and bytes/s."""
    script = os.path.join(script_dir, "post.lua")
    with open(script, "w") as out:
        out.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
        out.write("wrk.body = %s\n" % json.dumps(body))
    output = bench.run(["wrk", "-t", "2", "-c", str(connections), "-d", "%ds" % duration, "--latency",
                        "-s", script, url])
    if "Non-2xx" in output or "Socket errors" in output:
        raise SystemExit("wrk saw failures:\n" + output)
    result = {"requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}
    for label, key in (("50%", "p50_us"), ("99%", "p99_us")):
        value, unit = re.search(r"\s%s\s+([\d.]+)(us|ms|s)\b" % label, output).groups()
        result[key] = float(value) * UNITS[unit]
    transfer, unit = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", output).groups()
    result["bytes_per_second"] = float(transfer) * {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[unit]
    return result


def sample_stream(port):
    """One SSE stream read whole: its token count and its size on the wire."""
    request = urllib.request.Request("http://127.0.0.1:%d/v1/stream" % port, data=STREAM_BODY.encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
        head = sum(len(k) + len(v) + 4 for k, v in response.getheaders()) + len("HTTP/1.1 200 OK\r\n\r\n")
    events = [line for line in body.decode().split("\n\n") if line.startswith("data: ")]
    if events[-1] != "data: [DONE]" or len(events) != STREAM_TOKENS + 1:
        raise SystemExit("the sample stream is not %d tokens then [DONE]" % STREAM_TOKENS)
    return len(events) - 1, head + len(body)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=5, help="seconds per run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per system (default 3)")
    parser.add_argument("--connections", type=int, default=64, help="wrk's keep-alive connections for predicts")
    parser.add_argument("--streams", type=int, default=100, help="streams open at once")
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--output", default=os.path.join(ROOT, "BENCHMARKS.md"))
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install wrk")

    ours = bench.build(ROOT, args.skip_build)
    hummingbird = bench.build(os.path.join(bench.PEERS, "hummingbird-echo"), args.skip_build)
    python = install_fastapi()

    processes = []
    try:
        server, binary_port, http_port = spawn_rpc_server(os.path.join(ours, "rpc-server"))
        processes.append(server)
        pooled, _, pooled_port = spawn_rpc_server(os.path.join(ours, "rpc-server"), ["--pool-executor"])
        processes.append(pooled)
        peer, _, peer_port = bench.live_client.spawn([os.path.join(hummingbird, "hummingbird-echo"), "--port", "0"])
        processes.append(peer)
        uvicorn_ports = {}
        for name, workers in (("fastapi", os.cpu_count() or 1), ("fastapi-1", 1)):
            uvicorn_ports[name] = free_port()
            uvicorn = subprocess.Popen(
                [python, "-m", "uvicorn", "echo_server:app", "--port", str(uvicorn_ports[name]),
                 "--workers", str(workers), "--http", "httptools", "--loop", "uvloop", "--no-access-log",
                 "--log-level", "warning"],
                cwd=FASTAPI, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            processes.append(uvicorn)
            wait_for_port(uvicorn_ports[name], uvicorn)
        tokens, stream_bytes = sample_stream(http_port)

        urls = {
            "ours": "http://127.0.0.1:%d/v2/models/echo/infer" % http_port,
            "ours-pool": "http://127.0.0.1:%d/v2/models/echo/infer" % pooled_port,
            "hummingbird": "http://127.0.0.1:%d/v2/models/echo/infer" % peer_port,
            "fastapi": "http://127.0.0.1:%d/v2/models/echo/infer" % uvicorn_ports["fastapi"],
            "fastapi-1": "http://127.0.0.1:%d/v2/models/echo/infer" % uvicorn_ports["fastapi-1"],
        }
        stream_url = "http://127.0.0.1:%d/v1/stream" % http_port
        binary_command = [os.path.join(ours, "rpc-cli"), "bench", "--port", str(binary_port), "--mode", "stream",
                          "--connections", "1", "--concurrency", str(args.streams), "--tokens", str(STREAM_TOKENS),
                          "--duration", str(args.duration), "--json", "--quiet"]
        predicts = {name: [] for name in urls}
        streams = {"sse": [], "binary": []}
        with tempfile.TemporaryDirectory() as scripts:
            for _ in range(3):  # warm-up: each system's first seconds are not measured
                for url in urls.values():
                    wrk(url, INFER_BODY, args.connections, 1, scripts)
            for round_index in range(args.rounds):
                names = list(urls)
                names = names[round_index % len(names):] + names[:round_index % len(names)]
                for name in names:
                    predicts[name].append(wrk(urls[name], INFER_BODY, args.connections, args.duration, scripts))
                    print("%s: %.0f req/s" % (name, predicts[name][-1]["requests_per_second"]), file=sys.stderr)
                order = ["sse", "binary"] if round_index % 2 == 0 else ["binary", "sse"]
                for kind in order:
                    if kind == "sse":
                        run = wrk(stream_url, STREAM_BODY, args.streams, args.duration, scripts)
                        # Bytes, not finished streams: the streams cut off at the end of the
                        # run count their tokens too, as rpc-cli's tally does.
                        streams["sse"].append(run["bytes_per_second"] / stream_bytes * tokens)
                    else:
                        streams["binary"].append(bench.load(binary_command)["tokens_per_second"])
                    print("%s: %.0f tokens/s" % (kind, streams[kind][-1]), file=sys.stderr)
    finally:
        bench.stop(processes)

    write_section(args, predicts, streams)


def write_section(args, predicts, streams):
    def med(name, key):
        return statistics.median(run[key] for run in predicts[name])

    names = ("ours", "ours-pool", "hummingbird", "fastapi", "fastapi-1")
    sse, binary = statistics.median(streams["sse"]), statistics.median(streams["binary"])
    lines = [
        HEADING,
        "",
        "Measured %s on %s, with `python3 tools/bench_http.py`: each figure the median of %d runs of %d s, "
        "the systems taking turns. Client (`wrk -t 2`, Debian) and servers share the machine." % (
            datetime.date.today().isoformat(), bench.machine(), args.rounds, args.duration),
        "",
        "- **ours**: `rpc-server %s`, `POST /v2/models/echo/infer` with one 64-byte BYTES input in JSON, "
        "%d keep-alive connections; *pool executor*: the same with `--pool-executor` (Swift's own "
        "thread pool runs tasks instead of the event loops)." % (" ".join(SERVER_FLAGS), args.connections),
        "- **bare Hummingbird**: `tools/peers/hummingbird-echo`, Hummingbird 2 handing the body back (no "
        "decoding, no batcher, no limiter, no metrics): the ceiling of this HTTP stack.",
        "- **FastAPI**: `tools/peers/fastapi/echo_server.py`, pydantic models of the same request and response, "
        "on uvicorn with httptools and uvloop (versions in its `requirements.txt`): one worker process per "
        "core (%d), and uvicorn's default of one." % (os.cpu_count() or 1),
        "- **streams**: %d streams open at once, each %d tokens of the `syllables` generator; SSE through "
        "`POST /v1/stream` (wrk; tokens counted from the bytes received), binary through "
        "`rpc-cli bench --mode stream`." % (args.streams, STREAM_TOKENS),
        "",
        "| workload | ours | ours, pool executor | bare Hummingbird | FastAPI | FastAPI, 1 worker "
        "| best of ours / Hummingbird | best of ours / FastAPI | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, label, better in (("requests_per_second", "requests/s", max), ("p50_us", "p50 µs", min),
                               ("p99_us", "p99 µs", min)):
        o, op, c, p, p1 = (med(name, key) for name in names)
        best = better(o, op)
        if key == "requests_per_second":
            ratios = "%.2f | %.1f× | ≥ 0.70, ≥ 10×" % (best / c, best / p)
        else:
            ratios = "%.2f× | %.2f× |" % (best / c, best / p)
        lines.append("| HTTP infer, %s | %.0f | %.0f | %.0f | %.0f | %.0f | %s |" % (label, o, op, c, p, p1, ratios))
    lines += [
        "",
        "| workload | SSE (HTTP) | binary | SSE / binary | target |",
        "|---|---|---|---|---|",
        "| stream-%dx%d, tokens/s | %.0f | %.0f | %.2f | ≥ 0.50 |" % (
            args.streams, STREAM_TOKENS, sse, binary, sse / binary),
        "",
    ]
    section = "\n".join(lines).rstrip("\n") + "\n\n"
    bench.replace_section(args.output, HEADING, section)


if __name__ == "__main__":
    main()
