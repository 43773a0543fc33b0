#!/usr/bin/env python3
"""Side-by-side benchmark: rpc-server against grpc-swift 2 and a bare SwiftNIO echo.

    python3 tools/bench.py                 # build all three in release, run, write BENCHMARKS.md
    python3 tools/bench.py --duration 2    # shorter runs
    python3 tools/bench.py --skip-build --only predict-1x1
    python3 tools/bench.py --no-micro      # skip the package-benchmark micro-benchmarks

Every configuration runs against each system in turn, three rounds by default, the order
turning each round (A B C, B C A, C A B, ...), on the same machine in one sitting; the table
holds the medians and the ratios of our figures to the peers'. Each load client takes the same flags (`rpc-cli bench`'s). Afterwards
the script opens 10,000 idle connections to rpc-server and reads its resident memory, and it
records the server's RSS after every run so that growth shows.

Nothing here is timed against a threshold in CI: the targets are printed next to the figures.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import live_client  # noqa: E402  (the handshake and the server spawner)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "tools", "peers")

SERVER_FLAGS = ["--rate-limit", "100000000", "--batch-timeout", "0", "--token-interval", "0"]
# The seed's default is one batch worker per model; its own example runs two, one per core here.
TWO_WORKER_FLAGS = SERVER_FLAGS + ["--workers", "2"]
BATCH_SERVER_FLAGS = ["--rate-limit", "100000000", "--batch-size", "32", "--batch-timeout", "0.1",
                      "--sim-batch-cost", "0.005", "--sim-item-cost", "0.00005", "--max-queue", "1000"]

# name, load flags, systems, what to compare
CONFIGS = [
    ("predict-1x1-64B", ["--mode", "predict", "--connections", "1", "--concurrency", "1", "--payload-size", "64"]),
    ("predict-8x16-64B", ["--mode", "predict", "--connections", "8", "--concurrency", "16", "--payload-size", "64"]),
    ("predict-8x16-4KiB", ["--mode", "predict", "--connections", "8", "--concurrency", "16", "--payload-size", "4096"]),
    ("stream-100x1000", ["--mode", "stream", "--connections", "1", "--concurrency", "100", "--tokens", "1000"]),
]


def run(command, cwd=None, capture=True):
    result = subprocess.run(command, cwd=cwd, text=True, stdout=subprocess.PIPE if capture else None)
    if result.returncode != 0:
        raise SystemExit("failed (%d): %s" % (result.returncode, shlex.join(command)))
    return result.stdout


def build(package, skip):
    if not skip:
        print("building %s (release)..." % os.path.relpath(package, ROOT) if package != ROOT else "building rpc-server, rpc-cli (release)...",
              file=sys.stderr, flush=True)
        run(["swift", "build", "-c", "release"], cwd=package, capture=False)
    return run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=package).strip()


def stop(processes):
    """Terminates the servers, then kills any that has not exited within 30 s."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def replace_section(path, heading, section):
    """Puts `section` (which starts with `heading`) in the file at `path`: in place of the
    section of that heading, or else before the notes, or else at the end."""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if heading in text:
        start = text.index(heading)
        following = text.find("\n## ", start + len(heading))
        text = text[:start] + section + (text[following + 1:] if following >= 0 else "")
    elif NOTES_HEADING in text:
        start = text.index(NOTES_HEADING)
        text = text[:start] + section + text[start:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as output:
        output.write(text)
    print("wrote %s" % path, file=sys.stderr)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def machine():
    cores = os.cpu_count()
    memory = "?"
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                memory = "%.1f GiB" % (int(line.split()[1]) / 1024 / 1024)
    model = "?"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    swift = run(["swift", "--version"]).splitlines()[0]
    return "%d cores (%s), %s memory, %s, %s" % (cores, model, memory, platform.platform(), swift)


def load(command):
    out = run(command)
    return json.loads(out.strip().splitlines()[-1])


def stats_json(cli, port):
    return json.loads(run([cli, "stats", "--port", str(port), "--json"]))


def idle_connections(host, port, count):
    """Opens `count` connections that finish the handshake and then stay silent."""
    sockets = []
    hello = {"type": "HELLO", "request_id": 0, "versions": [1], "client_id": "idle",
             "auth_token": "", "compressions": [0]}
    frame = live_client.wire.encode_frame(hello)
    for _ in range(count):
        sock = socket.create_connection((host, port), timeout=30)
        sock.sendall(frame)
        sockets.append(sock)
    # Wait for every WELCOME so that each connection is fully set up on the server.
    for sock in sockets:
        decoder = live_client.wire.Decoder("client")
        while not list(decoder.feed(sock.recv(4096))):
            pass
    return sockets


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per system and configuration, and of the micro-benchmark suite (default 3)")
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--only", help="run only configurations whose name contains this")
    parser.add_argument("--idle", type=int, default=10000, help="idle connections for the memory check (0: skip)")
    parser.add_argument("--output", default=os.path.join(ROOT, "BENCHMARKS.md"))
    parser.add_argument("--no-micro", action="store_true", help="skip the micro-benchmarks (Benchmarks/)")
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    ours = build(ROOT, args.skip_build)
    echo = build(os.path.join(PEERS, "nio-echo"), args.skip_build)
    grpc = build(os.path.join(PEERS, "grpc"), args.skip_build)
    server_bin, cli = os.path.join(ours, "rpc-server"), os.path.join(ours, "rpc-cli")

    processes = []
    try:
        ours_proc, host, our_port = live_client.spawn([server_bin, "--port", "0", "--http-port", "0"] + SERVER_FLAGS)
        processes.append(ours_proc)
        echo_proc, _, echo_port = live_client.spawn([os.path.join(echo, "nio-echo"), "serve", "--port", "0"])
        processes.append(echo_proc)
        grpc_proc, _, grpc_port = live_client.spawn([os.path.join(grpc, "grpc-peer"), "serve", "--port", "0"])
        processes.append(grpc_proc)
        batch_proc, _, batch_port = live_client.spawn([server_bin, "--port", "0", "--http-port", "0"] + BATCH_SERVER_FLAGS)
        processes.append(batch_proc)
        two_proc, _, two_port = live_client.spawn([server_bin, "--port", "0", "--http-port", "0"] + TWO_WORKER_FLAGS)
        processes.append(two_proc)

        def system_command(system, flags):
            common = ["--duration", str(args.duration), "--json", "--quiet"]
            if system == "ours":
                return [cli, "bench", "--port", str(our_port)] + flags + common
            if system == "ours-cb":
                return [cli, "bench", "--port", str(our_port), "--api", "callback"] + flags + common
            if system == "ours-cb-2w":
                return [cli, "bench", "--port", str(two_port), "--api", "callback"] + flags + common
            if system == "nio":
                return [os.path.join(echo, "nio-echo"), "bench", "--port", str(echo_port)] + flags + common
            return [os.path.join(grpc, "grpc-peer"), "bench", "--port", str(grpc_port)] + flags + common

        rss_start = rss_kib(ours_proc.pid)
        rows = []
        commands = []
        for name, flags in CONFIGS:
            if args.only and args.only not in name:
                continue
            predict = "--mode predict" in " ".join(flags)
            systems = ("ours", "ours-cb", "ours-cb-2w", "nio", "grpc") if predict else ("ours", "nio", "grpc")
            results = {system: [] for system in systems}
            for round_index in range(args.rounds):
                # The order turns each round: a run right after another system's run is measurably
                # faster (a few percent, whatever it runs), so no system may keep one slot.
                shift = round_index % len(systems)
                for system in systems[shift:] + systems[:shift]:
                    command = system_command(system, flags)
                    if round_index == 0:
                        commands.append(shlex.join([os.path.relpath(command[0], ROOT)] + command[1:]))
                    report = load(command)
                    results[system].append(report)
                    print("%-18s %-7s round %d: %8.0f calls/s  p50 %6d µs  p99 %6d µs%s" % (
                        name, system, round_index + 1, report["calls_per_second"], report["latency_us"]["p50"],
                        report["latency_us"]["p99"],
                        "  %9.0f tokens/s" % report["tokens_per_second"] if "tokens_per_second" in report else ""),
                        file=sys.stderr, flush=True)
            rows.append((name, results))
        rss_after_runs = rss_kib(ours_proc.pid)

        batching = None
        if not args.only or args.only in "batching-sim-256":
            flags = ["--model", "sim", "--mode", "predict", "--connections", "8", "--concurrency", "32",
                     "--payload-size", "64", "--duration", str(args.duration), "--json", "--quiet"]
            runs = []
            for round_index in range(args.rounds):
                before = stats_json(cli, batch_port)["models"]["sim"]
                report = load([cli, "bench", "--port", str(batch_port)] + flags)
                after = stats_json(cli, batch_port)["models"]["sim"]
                items = after["completed"] - before["completed"]
                batches = after["batches"] - before["batches"]
                report["mean_batch"] = items / batches if batches else 0
                runs.append(report)
                print("batching-sim-256   round %d: %8.0f calls/s  mean batch %.1f" % (
                    round_index + 1, report["calls_per_second"], report["mean_batch"]), file=sys.stderr, flush=True)
            commands.append(shlex.join([os.path.relpath(cli, ROOT), "bench", "--port", "PORT"] + flags))
            batching = runs

        idle = None
        if args.idle:
            before = rss_kib(ours_proc.pid)
            sockets = idle_connections(host, our_port, args.idle)
            time.sleep(1)
            during = rss_kib(ours_proc.pid)
            for sock in sockets:
                sock.close()
            idle = (args.idle, before, during)
            print("idle: %d connections, RSS %.1f -> %.1f MiB" % (args.idle, before / 1024, during / 1024),
                  file=sys.stderr, flush=True)
    finally:
        stop(processes)

    micro = None if args.no_micro or args.only else run_micro(args.rounds)
    write_report(args, rows, batching, idle, commands, (rss_start, rss_after_runs), micro)


MICRO_COMMAND = ["swift", "package", "--disable-sandbox", "benchmark", "--no-progress"]


def run_micro(rounds):
    """Runs the package-benchmark suite `rounds` times and returns {name: {metric: median of the
    runs' p50s}} (times in ns). One run measures each benchmark in one stretch, so a moment of
    load on the shared host can fall on the one-thread row and not the two-thread one; the
    median of several runs is what the ratios are taken from, as for the other configurations."""
    runs = []
    for index in range(rounds):
        print("micro-benchmarks (Benchmarks/, release), round %d..." % (index + 1), file=sys.stderr, flush=True)
        runs.append(parse_micro(run(MICRO_COMMAND, cwd=os.path.join(ROOT, "Benchmarks"))))
        for threads in (1, 2):
            name = "limiter token_bucket 100k clients, %d thread(s)" % threads
            print("  %s: %.0f ns" % (name, runs[-1].get(name, {}).get("time", float("nan"))), file=sys.stderr)
    results = {}
    for name in runs[0]:
        for key in runs[0][name]:
            values = [r[name][key] for r in runs if key in r.get(name, {})]
            results.setdefault(name, {})[key] = statistics.median(values)
    return results


def parse_micro(output):
    """{name: {metric: p50}} from one package-benchmark run's tables (times in ns)."""
    results, name = {}, None
    scale = {"ns": 1, "μs": 1e3, "us": 1e3, "ms": 1e6, "#": 1, "K": 1e3, "M": 1e6}
    for line in output.splitlines():
        line = line.rstrip()
        if line and not line.startswith(("│", "╒", "╞", "├", "╘", "=", "Host", "Baseline", "Running", "Build",
                                          "Note", "Warning", "#")) and "─" not in line and "\x1b" not in line:
            name = line.strip()
            continue
        if not line.startswith("│") or name is None:
            continue
        cells = [c.strip() for c in line.strip("│").split("│")]
        label, values = cells[0], cells[1:]
        if len(values) < 3 or not values[2].replace(".", "").isdigit():
            continue
        unit = label[label.rfind("(") + 1:label.rfind(")")] if "(" in label else "#"
        p50 = float(values[2]) * scale.get(unit, 1)
        key = "time" if label.startswith("Time") else "mallocs" if label.startswith("Malloc") else \
            "throughput" if label.startswith("Throughput") else label
        results.setdefault(name, {})[key] = p50
    return results


def micro_section(micro, rounds):
    def get(name, key):
        return micro.get(name, {}).get(key)

    lines = ["## Micro-benchmarks", "",
             "package-benchmark (`cd Benchmarks && %s`), run %d times: the median over the runs of each "
             "benchmark's p50." % (" ".join(MICRO_COMMAND), rounds), "",
             "| benchmark | p50 time | throughput | mallocs |", "|---|---|---|---|"]
    for name in sorted(micro):
        time_ns, rate, mallocs = get(name, "time"), get(name, "throughput"), get(name, "mallocs")
        shown = "%.0f ns" % time_ns if time_ns is not None and time_ns < 10_000 else \
            "%.1f µs" % (time_ns / 1e3) if time_ns is not None else ""
        lines.append("| %s | %s | %s | %s |" % (name, shown, "%.2f M/s" % (rate / 1e6) if rate and rate >= 1e6 else
                                              "%.0f /s" % rate if rate else "", "%.0f" % mallocs if mallocs is not None else ""))
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    one = get("limiter token_bucket 100k clients, 1 thread(s)", "time")
    two = get("limiter token_bucket 100k clients, 2 thread(s)", "time")
    if one and two:
        lines.append("| limiter, 100k clients: ≥ 10 M decisions/s on one thread | %.1f M/s | %s |" % (
            1e3 / one, "yes" if 1e3 / one >= 10 else "no"))
        lines.append("| limiter, 100k clients: two threads ≥ 1.7× one | %.2f× | %s |" % (
            one / two, "yes" if one / two >= 1.7 else "no"))
    enc, dec = get("wire encode small predict", "time"), get("wire decode small predict", "time")
    if enc and dec:
        allocs = max(get("wire encode small predict", "mallocs") or 0, get("wire decode small predict", "mallocs") or 0)
        lines.append("| small PREDICT encode + decode < 200 ns, ≤ 1 allocation each way | %.0f + %.0f = %.0f ns, %d allocations | %s |" % (
            enc, dec, enc + dec, allocs, "yes" if enc + dec < 200 and allocs <= 1 else "no"))
    raw_c, frame_c = get("zlib compress 64 KiB (Zlib.Compressor)", "time"), get("frame encode 64 KiB compressed (FrameEncoder)", "time")
    raw_d, frame_d = get("zlib decompress 64 KiB (Zlib.Decompressor)", "time"), get("frame decode 64 KiB compressed (FrameDecoder)", "time")
    if raw_c and frame_c and raw_d and frame_d:
        lines.append("| compressed frames ≥ 90%% of raw zlib throughput | encode %.0f%%, decode %.0f%% | %s |" % (
            100 * raw_c / frame_c, 100 * raw_d / frame_d, "yes" if raw_c / frame_c >= 0.9 and raw_d / frame_d >= 0.9 else "no"))
    return lines


def median(reports, key, sub=None):
    values = [r[key][sub] if sub else r[key] for r in reports]
    return statistics.median(values)


NOTES_HEADING = "## Costs behind the design"
KEPT_HEADINGS = ["## The HTTP door", "## Models in workers", "## LLM streams", "## Shared limits", NOTES_HEADING]


def write_report(args, rows, batching, idle, commands, rss, micro=None):
    lines = []
    add = lines.append
    add("# Benchmarks")
    add("")
    add("Measured %s on %s." % (datetime.date.today().isoformat(), machine()))
    add("Client and server share the machine. Each figure is the median of %d runs of %.0f s, taken in "
        "turns, the order of the systems turning each round. Reproduce with `python3 tools/bench.py`." % (
            args.rounds, args.duration))
    add("")
    add("- **ours**: `rpc-server %s` loaded by `rpc-cli bench` (the Swift client SDK with a 30 s "
        "deadline on every call). *async client*: a Swift task per call slot awaiting `RPCClient.predict`; "
        "*callback client*: `--api callback`, the SDK's completion API driven from each connection's event "
        "loop, which is how the bare-NIO load client works. Ratios use the better of the two. *2 workers*: the "
        "callback client against `rpc-server %s`, two batch workers instead of the seed's default one "
        "(the seed's own example uses two); reported beside the default, never in its place." % (
            " ".join(SERVER_FLAGS), " ".join(TWO_WORKER_FLAGS)))
    add("- **bare NIO**: `tools/peers/nio-echo`, length-prefixed frames with request ids, server and load client "
        "written directly on NIO channel handlers (no Swift tasks): the ceiling for this stack.")
    add("- **gRPC**: `tools/peers/grpc`, grpc-swift 2 over its HTTP/2 NIO transport, async/await client.")
    add("")
    add("| workload | ours (async client) | ours (callback client) | bare NIO | gRPC | ours / NIO | ours / gRPC | target "
        "| ours, 2 workers | 2 workers / NIO |")
    add("|---|---|---|---|---|---|---|---|---|---|")
    targets = {
        "predict-1x1-64B": "p50 ≤ 2× NIO",
        "predict-8x16-64B": "≥ 50% NIO, ≥ 10× gRPC; p99 ≤ 3× NIO",
        "predict-8x16-4KiB": "≥ 50% NIO, ≥ 10× gRPC; p99 ≤ 3× NIO",
        "stream-100x1000": "≥ 50% NIO, ≥ 5× gRPC",
    }

    def ratios(ov, cv, nv, gv, lower_is_better):
        best = min(ov, cv) if cv is not None and lower_is_better else max(ov, cv or ov)
        return best / max(nv, 1e-9), best / max(gv, 1e-9)

    for name, results in rows:
        o, n, g = results["ours"], results["nio"], results["grpc"]
        c = results.get("ours-cb")
        if name.startswith("stream"):
            key = "tokens_per_second"
            ov, nv, gv = median(o, key), median(n, key), median(g, key)
            add("| %s, tokens/s | %.0f | | %.0f | %.0f | %.2f | %.1f× | %s | | |" % (
                name, ov, nv, gv, ov / nv, ov / gv, targets[name]))
            continue
        key = "calls_per_second"
        ov, nv, gv = median(o, key), median(n, key), median(g, key)
        cv = median(c, key) if c else None
        w = results.get("ours-cb-2w")
        wv = median(w, key) if w else None
        rn, rg = ratios(ov, cv, nv, gv, False)
        add("| %s, calls/s | %.0f | %s | %.0f | %.0f | %.2f | %.1f× | %s | %s | %s |" % (
            name, ov, "%.0f" % cv if cv is not None else "", nv, gv, rn, rg, targets[name],
            "%.0f" % wv if wv is not None else "", "%.2f" % (wv / nv) if wv is not None else ""))
        for p in ("p50", "p99"):
            ov, nv, gv = median(o, "latency_us", p), median(n, "latency_us", p), median(g, "latency_us", p)
            cv = median(c, "latency_us", p) if c else None
            wv = median(w, "latency_us", p) if w else None
            rn, rg = ratios(ov, cv, nv, gv, True)
            add("| %s, %s µs | %d | %s | %d | %d | %.2f× | %.2f× | | %s | %s |" % (
                name, p, ov, "%d" % cv if cv is not None else "", nv, gv, rn, rg,
                "%d" % wv if wv is not None else "", "%.2f×" % (wv / nv) if wv is not None else ""))
    if batching:
        rate = statistics.median(r["calls_per_second"] for r in batching)
        mean = statistics.median(r["mean_batch"] for r in batching)
        ideal = 32 / 0.0066
        add("| batching-sim-256 (sim 5 ms + 50 µs/item, batch 32, 8×32 callers), calls/s | %.0f | | | | "
            "%.0f%% of ideal %.0f | mean batch %.1f | ≥ 90%%, mean batch ≥ 30 | | |" % (rate, 100 * rate / ideal, ideal, mean))
    add("")
    if idle:
        count, before, during = idle
        add("Memory: rpc-server RSS %.1f MiB at start, %.1f MiB after all runs; %d idle connections "
            "(handshake done) took it from %.1f to %.1f MiB (target < 200 MB)." % (
                rss[0] / 1024, rss[1] / 1024, count, before / 1024, during / 1024))
        add("")
    if micro:
        lines.extend(micro_section(micro, args.rounds))
        add("")
    add("Commands (ports are chosen at run time):")
    add("")
    add("```")
    add("# servers")
    add("rpc-server --port 0 " + " ".join(SERVER_FLAGS))
    add("rpc-server --port 0 " + " ".join(TWO_WORKER_FLAGS) + "   # 2 workers")
    add("rpc-server --port 0 " + " ".join(BATCH_SERVER_FLAGS) + "   # batching-sim-256")
    add("nio-echo serve --port 0")
    add("grpc-peer serve --port 0")
    add("# load")
    for command in commands:
        add(command)
    add("```")
    add("")
    # The hand-written notes at the end of the file (measured costs behind the code) are kept.
    kept = ""
    if os.path.exists(args.output):
        with open(args.output) as existing:
            text = existing.read()
        # Sections other scripts own (tools/bench_http.py) and the notes stay as they are.
        starts = [text.index(heading) for heading in KEPT_HEADINGS if heading in text]
        if starts:
            kept = text[min(starts):]
    with open(args.output, "w") as output:
        output.write("\n".join(lines))
        if kept:
            output.write("\n" + kept)
    print("wrote %s" % args.output, file=sys.stderr)


if __name__ == "__main__":
    main()
