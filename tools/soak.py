#!/usr/bin/env python3
"""Soak test: mixed traffic against one rpc-server for minutes, with the rate limiter engaged.

    python3 tools/soak.py                     # 300 s, release build
    python3 tools/soak.py --duration 60 --skip-build

Three `rpc-cli bench` processes run at once, each under its own client id: predicts on the
echo model as fast as they go (more than the rate limit allows, so the limiter refuses some),
batch predicts on the simulated accelerator, and streams of the syllables generator. The
server's resident memory is sampled every few seconds. Afterwards the script checks that

- every call a client started was answered exactly once (`issued == ok + errors`),
- the server's statistics agree with the clients' counts (echo completions, rate-limit
  refusals, streams and tokens),
- memory stayed flat: the last samples are within 10% (and 8 MiB) of the first after warm-up,

and exits 1 if any check fails. Not part of CI (it runs for minutes); its figures go in the
closing notes of the work that touches the serving path.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (build, rss_kib)
import live_client  # noqa: E402  (spawn)

ROOT = bench.ROOT


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=300, help="seconds of load (default 300)")
    parser.add_argument("--warmup", type=float, default=20, help="seconds before memory counts as settled")
    parser.add_argument("--rate", type=int, default=20_000, help="server rate limit per client per second")
    parser.add_argument("--skip-build", action="store_true")
    args = parser.parse_args()

    binaries = bench.build(ROOT, args.skip_build)
    server_bin, cli = os.path.join(binaries, "rpc-server"), os.path.join(binaries, "rpc-cli")
    server, host, port = live_client.spawn([
        server_bin, "--port", "0", "--rate-limit", str(args.rate), "--rate-window", "1",
        "--batch-timeout", "0.001", "--token-interval", "0", "--max-streams", "200",
    ])

    common = ["--port", str(port), "--duration", str(args.duration), "--json", "--quiet"]
    loads = {
        "predict": ["--client-id", "soak-predict", "--mode", "predict", "--model", "echo",
                    "--connections", "4", "--concurrency", "8", "--payload-size", "64"],
        "batch": ["--client-id", "soak-batch", "--mode", "batch", "--model", "sim", "--batch-size", "4",
                  "--connections", "2", "--concurrency", "4", "--payload-size", "32"],
        "stream": ["--client-id", "soak-stream", "--mode", "stream", "--model", "syllables",
                   "--connections", "1", "--concurrency", "20", "--tokens", "200"],
    }
    samples = []
    stop = threading.Event()

    def sample():
        start = time.monotonic()
        while not stop.wait(5):
            samples.append((time.monotonic() - start, bench.rss_kib(server.pid)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    processes = {name: subprocess.Popen([cli, "bench"] + flags + common, stdout=subprocess.PIPE, text=True)
                 for name, flags in loads.items()}
    reports = {}
    try:
        for name, process in processes.items():
            out, _ = process.communicate(timeout=args.duration + 120)
            reports[name] = json.loads(out.strip().splitlines()[-1])
        stop.set()
        stats = json.loads(subprocess.run([cli, "stats", "--port", str(port), "--json"], check=True, text=True,
                                          stdout=subprocess.PIPE).stdout)
    finally:
        stop.set()
        for process in processes.values():
            if process.poll() is None:
                process.kill()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)

    failures = []

    def check(ok, what):
        print("%s %s" % ("ok  " if ok else "FAIL", what))
        if not ok:
            failures.append(what)

    for name, report in reports.items():
        errors = sum(report["errors"].values())
        print("%-8s issued %9d  ok %9d  errors %s  %.0f calls/s%s" % (
            name, report["issued"], report["ok"], report["errors"] or "{}", report["calls_per_second"],
            "  %.0f tokens/s" % report["tokens_per_second"] if "tokens_per_second" in report else ""))
        check(report["issued"] == report["ok"] + errors and report["unanswered"] == 0,
              "%s: every call answered exactly once (%d = %d + %d)" % (name, report["issued"], report["ok"], errors))

    echo = stats["models"]["echo"]
    check(echo["completed"] == reports["predict"]["ok"],
          "server's echo completions (%d) equal the predict client's answers (%d)" % (
              echo["completed"], reports["predict"]["ok"]))
    limited = sum(r["errors"].get("RATE_LIMITED", 0) for r in reports.values())
    check(limited > 0, "the rate limiter was engaged (%d refusals)" % limited)
    check(stats["rate_limit"]["rejected"] == limited,
          "server's rate-limit refusals (%d) equal the clients' (%d)" % (stats["rate_limit"]["rejected"], limited))
    stream = reports["stream"]
    # Refused before a slot was taken: by the rate limit, or by the cap on streams.
    started = stream["ok"] + sum(n for code, n in stream["errors"].items()
                                 if code not in ("RATE_LIMITED", "TOO_MANY_STREAMS"))
    check(stats["stream"]["tong_stream"] == started,
          "server's streams (%d) equal the streams the client saw start (%d)" % (stats["stream"]["tong_stream"], started))
    tokens = stream["tokens"]
    check(stats["stream"]["tokens_sent"] == tokens,
          "server's tokens sent (%d) equal the tokens received (%d)" % (stats["stream"]["tokens_sent"], tokens))

    minutes = {}
    for t, rss in samples:
        minutes[int(t // 60)] = rss
    print("memory by minute (MiB): " + "  ".join("%d: %.1f" % (m, rss / 1024) for m, rss in sorted(minutes.items())))
    settled = [rss for t, rss in samples if t >= args.warmup]
    if len(settled) >= 4:
        first, last, peak = settled[0], settled[-1], max(settled)
        print("memory: %.1f MiB after warm-up, %.1f MiB at the end, %.1f MiB peak (%d samples)" % (
            first / 1024, last / 1024, peak / 1024, len(settled)))
        check(last <= first * 1.10 + 8 * 1024, "resident memory stayed flat")
    else:
        check(False, "enough memory samples after warm-up")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
