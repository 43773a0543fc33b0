#!/usr/bin/env python3
"""What a rate limit shared through Redis costs one server, against its local limiter.

    swift build -c release --product rpc-server --product rpc-cli
    python3 tools/bench_limits.py [--bin .build/release] [--rounds 3] [--seconds 5]

Configurations take turns, round after round, each on a fresh rpc-server (release) with a
limit far above the load, so every decision allows and the figures measure the decision:
- local: the server's own limiter;
- redis, lease L: --redis-url with --redis-lease L (L = 1000, 100, 10, 1).
For each: decisions per second under load (`rpc-cli bench --api callback`, 4 connections x 32
calls in flight, one client id: one predict is one decision), Redis calls per 100 decisions
(the server's /metrics), and the latency of one predict at a time (p50/p99, 1 connection, 1
call in flight, --batch-timeout 0). Medians over the rounds. Needs redis-server.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from checks import free_port, wait_for  # noqa: E402

CONFIGS = [("local", None), ("redis, lease 1000", 1000), ("redis, lease 100", 100), ("redis, lease 10", 10),
           ("redis, lease 1", 1)]


def metric(http_port, name):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % http_port, timeout=10).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def bench(cli, port, args):
    output = subprocess.run([cli, "bench", "--port", str(port), "--json"] + args,
                            capture_output=True, text=True, check=True).stdout
    return json.loads(output[output.index("{"):])


def run(binary_dir, redis_port, lease, seconds):
    port, http_port = free_port(), free_port()
    command = [os.path.join(binary_dir, "rpc-server"), "--port", str(port), "--http-port", str(http_port),
               "--rate-limit", "1000000000", "--rate-window", "1", "--batch-timeout", "0"]
    if lease is not None:
        command += ["--redis-url", "redis://127.0.0.1:%d" % redis_port, "--redis-lease", str(lease)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(port)
        wait_for(http_port)
        cli = os.path.join(binary_dir, "rpc-cli")
        load = bench(cli, port, ["--api", "callback", "--connections", "4", "--concurrency", "32",
                                 "--duration", str(seconds), "--client-id", "bench-%d" % time.monotonic_ns()])
        decisions = metric(http_port, "vai:rate_limit_decisions_total")
        calls = metric(http_port, "vai:rate_limit_store_calls_total")
        one = bench(cli, port, ["--connections", "1", "--concurrency", "1", "--duration", str(seconds),
                                "--client-id", "one-%d" % time.monotonic_ns()])
        return {"decisions_per_second": load["calls_per_second"], "calls_per_100": 100.0 * calls / decisions,
                "p50_us": one["latency_us"]["p50"], "p99_us": one["latency_us"]["p99"]}
    finally:
        server.kill()
        server.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=".build/release")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", tempfile.mkdtemp()],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = {name: [] for name, _ in CONFIGS}
    try:
        wait_for(redis_port)
        for round_number in range(args.rounds):
            for name, lease in CONFIGS:
                result = run(args.bin, redis_port, lease, args.seconds)
                results[name].append(result)
                print("round %d %-18s %9.0f decisions/s  %5.2f Redis calls/100  p50 %4.0f us  p99 %5.0f us"
                      % (round_number + 1, name, result["decisions_per_second"], result["calls_per_100"],
                         result["p50_us"], result["p99_us"]), flush=True)
    finally:
        redis.kill()
        redis.wait()
    base = statistics.median(r["decisions_per_second"] for r in results["local"])
    base_p50 = statistics.median(r["p50_us"] for r in results["local"])
    base_p99 = statistics.median(r["p99_us"] for r in results["local"])
    print("\n| limiter | decisions/s | vs local | Redis calls per 100 decisions | predict p50 | p99 | added p50 / p99 |")
    print("|---|---|---|---|---|---|---|")
    for name, _ in CONFIGS:
        rows = results[name]
        rate = statistics.median(r["decisions_per_second"] for r in rows)
        calls = statistics.median(r["calls_per_100"] for r in rows)
        p50 = statistics.median(r["p50_us"] for r in rows)
        p99 = statistics.median(r["p99_us"] for r in rows)
        print("| %s | %.0f | %.2f | %.2f | %.0f us | %.0f us | %+.0f / %+.0f us |"
              % (name, rate, rate / base, calls, p50, p99, p50 - base_p50, p99 - base_p99))


if __name__ == "__main__":
    main()
