#!/usr/bin/env python3
"""Three rpc-servers sharing one client's rate limit through one Redis (--redis-url).

    python3 tools/check_shared_limits.py --spawn .build/debug/rpc-server   # needs redis-server

1. 10 s of predicts at three times the client's rate, spread over the three servers, admit
   the configured rate (plus the burst) within 1%, give or take one lease per server.
2. Redis stopped mid-run with --redis-policy local: every request is answered, each server
   then admits up to the whole limit on its own, /metrics says the store is down; Redis back:
   shared limiting resumes without a restart.
3. The same with --redis-policy refuse: while Redis is away, requests are answered
   UNAVAILABLE; when it is back, they are admitted again.
4. --token-limit: 10 s of streams at three times the client's tokens per second, over the
   three servers, use the configured tokens (plus the burst) within 1%, give or take the
   tokens produced within one flush interval.

Standard library only.
"""

import argparse
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import live_client  # noqa: E402
from checks import check, finish, free_port, wait_for  # noqa: E402
import wire  # noqa: E402

RATE = 200  # requests per second for the client
BURST = 50
LEASE = 10
SERVERS = 3
TOKENS = 2000  # tokens per second for the client, in phase 4





class Redis:
    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="redis-")
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.port)

    def stop(self):
        self.process.kill()
        self.process.wait()


class Servers:
    def __init__(self, binary, redis_port, policy, limits=None):
        self.ports = [(free_port(), free_port()) for _ in range(SERVERS)]
        limits = limits or ["--rate-limit", str(RATE), "--rate-window", "1", "--rate-burst", str(BURST)]
        self.processes = [
            subprocess.Popen([binary, "--port", str(port), "--http-port", str(http_port),
                              "--redis-url", "redis://127.0.0.1:%d" % redis_port,
                              "--redis-lease", str(LEASE), "--redis-policy", policy] + limits,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for port, http_port in self.ports]
        for port, http_port in self.ports:
            wait_for(port)
            wait_for(http_port)

    def metric(self, index, name):
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.ports[index][1], timeout=10).read()
        for line in text.decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return None

    def stop(self):
        logs = []
        for process in self.processes:
            process.kill()
            logs.append(process.communicate()[1])
        return logs


PREDICT = {"type": "PREDICT", "deadline_ms": 0, "model": "echo", "input_hex": b"x".hex()}


def load(port, client, rate, duration, outcomes, request=PREDICT):
    """`request` at `rate` per second for `duration` seconds on one connection; appends
    (send time, status, tokens received) per request, status "OK" for a result or a stream's
    end."""
    connection = live_client.Connection("127.0.0.1", port, client_id=client, timeout=30)
    sock = connection.sock
    sent = {}
    interval = 1.0 / rate
    start = time.monotonic()
    next_send = start
    end = start + duration

    def drain(timeout):
        readable, _, _ = select.select([sock], [], [], max(timeout, 0))
        if readable:
            connection._pump()
        for request_id in [r for r in connection.frames if connection.frames[r][-1]["type"] in live_client.TERMINAL]:
            frames = connection.frames.pop(request_id)
            if request_id not in sent:
                outcomes.append((None, "UNKNOWN_ID", 0))
                continue
            frame = frames[-1]
            status = "OK" if frame["type"] in ("RESULT", "STREAM_END") else frame.get("status", "?")
            tokens = sum(1 for f in frames if f["type"] == "TOKEN")
            outcomes.append((sent.pop(request_id), status, tokens))

    while True:
        now = time.monotonic()
        if now >= end:
            break
        if now >= next_send:
            request_id = connection.request(request)
            sent[request_id] = now - start
            next_send += interval
        else:
            drain(next_send - now)
    deadline = time.monotonic() + 30
    while sent and time.monotonic() < deadline:
        drain(0.5)
    for send_time in sent.values():
        outcomes.append((send_time, "UNANSWERED", 0))
    connection.close()


def run_load(servers, client, duration, rate_each, request=PREDICT):
    """Load on every server at once; the outcomes of all requests."""
    outcomes = [[] for _ in servers.ports]
    threads = [threading.Thread(target=load, args=(port, client, rate_each, duration, outcomes[index], request))
               for index, (port, _) in enumerate(servers.ports)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [item for per_server in outcomes for item in per_server]


def load_with_outage(servers, redis, client, duration, away, while_away=None):
    """run_load at the client's rate on each server, Redis killed at away[0] s and started again
    at away[1] s; `while_away` runs half a second into the outage."""
    def outage():
        time.sleep(away[0])
        redis.stop()
        time.sleep(0.5)
        if while_away:
            while_away()
        time.sleep(away[1] - away[0] - 0.5)
        redis.start()

    thread = threading.Thread(target=outage)
    thread.start()
    outcomes = run_load(servers, client, duration, RATE)
    thread.join()
    return outcomes


def count(outcomes, status, start=0.0, end=float("inf")):
    return sum(1 for when, got, _ in outcomes if got == status and when is not None and start <= when < end)


def http(port, path, body, client):
    request = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "X-Client-ID": client})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read().decode()


def check_every_path(servers):
    """Each kind of request from a client new to every server, so each waits for its first
    lease, on both doors."""
    port, http_port = servers.ports[0]
    connection = live_client.Connection("127.0.0.1", port, client_id="paths-batch", timeout=30)
    rid = connection.request({"type": "BATCH_PREDICT", "deadline_ms": 0, "model": "sim",
                              "inputs_hex": [b"mot".hex(), b"hai".hex()]})
    (answer,) = connection.wait(rid)
    check(answer["type"] == "BATCH_RESULT" and len(answer["outputs_hex"]) == 2,
          "binary BATCH_PREDICT through a shared limit: %s" % answer["type"])
    connection.close()
    connection = live_client.Connection("127.0.0.1", port, client_id="paths-stream", timeout=30)
    rid = connection.request({"type": "STREAM_OPEN", "deadline_ms": 0, "model": "syllables", "prompt": "một hai"})
    frames = connection.wait(rid)
    check(frames[-1]["type"] == "STREAM_END" and len(frames) == 3,
          "binary STREAM_OPEN through a shared limit: %r" % [f["type"] for f in frames])
    rid = connection.request({"type": "STATS_REQUEST"})
    (answer,) = connection.wait(rid)
    check(answer["type"] == "STATS", "binary STATS_REQUEST through a shared limit: %s" % answer["type"])
    connection.close()
    status, body = http(http_port, "/v2/models/echo/infer",
                        {"inputs": [{"name": "INPUT", "shape": [1], "datatype": "BYTES", "data": ["xin chào"]}]},
                        "paths-http")
    check(status == 200 and "xin chào" in body, "HTTP infer through a shared limit: %d" % status)
    status, body = http(http_port, "/v1/stream", {"prompt": "một hai", "model": "syllables"}, "paths-sse")
    check(status == 200 and body.rstrip().endswith("data: [DONE]"), "SSE stream through a shared limit: %d" % status)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spawn", required=True, metavar="RPC_SERVER")
    args = parser.parse_args()
    if not shutil.which("redis-server"):
        raise SystemExit("redis-server is missing: apt-get install redis-server")
    redis = Redis()
    redis.start()
    servers = Servers(args.spawn, redis.port, "local")
    try:
        check_every_path(servers)

        # 1. Three times the rate, spread over three servers, for 10 s.
        duration = 10.0
        outcomes = run_load(servers, "tenant-a", duration, RATE)
        admitted = count(outcomes, "OK")
        limited = count(outcomes, "RATE_LIMITED")
        expected = RATE * duration + BURST
        bound = 0.01 * expected + LEASE * SERVERS
        check(admitted + limited == len(outcomes),
              "every request answered OK or RATE_LIMITED: %d + %d of %d" % (admitted, limited, len(outcomes)))
        check(abs(admitted - expected) <= bound,
              "3 servers at 3x the rate for %.0f s admit %d, expected %d (rate %d/s x %.0f s + burst %d) within %.0f "
              "(1%% + one lease of %d per server): off by %.2f%%"
              % (duration, admitted, expected, RATE, duration, BURST, bound, LEASE,
                 100.0 * (admitted - expected) / expected))
        calls = sum(servers.metric(i, "vai:rate_limit_store_calls_total") or 0 for i in range(SERVERS))
        decisions = admitted + limited
        print("     Redis calls: %d for %d decisions (%.1f per 100)" % (calls, decisions, 100.0 * calls / decisions))
        check(calls < decisions / 5, "leases spare Redis most decisions (%d calls for %d decisions)" % (calls, decisions))

        # 2. Redis stopped mid-run, policy local; then back.
        result = {}

        def while_away():
            result["up_while_away"] = [servers.metric(i, "vai:rate_limit_store_up") for i in range(SERVERS)]

        outcomes = load_with_outage(servers, redis, "tenant-b", 14.0, away=(3.0, 8.0), while_away=while_away)
        unanswered = [got for _, got, _ in outcomes if got not in ("OK", "RATE_LIMITED")]
        check(not unanswered, "every request answered while Redis went away and came back (%d others: %s)"
              % (len(unanswered), sorted(set(unanswered))))
        check(result["up_while_away"] == [0.0] * SERVERS,
              "vai:rate_limit_store_up is 0 on every server while Redis is away: %r" % result["up_while_away"])
        # Away from 3.0 s to 8.0 s: each server decides alone (its own burst, then the rate).
        away = count(outcomes, "OK", 4.0, 8.0) / 4.0
        check(away > 2.5 * RATE, "policy local: %.0f admitted/s while Redis is away (each server alone: ~%d/s)"
              % (away, SERVERS * RATE))
        back = count(outcomes, "OK", 10.0, 14.0) / 4.0
        check(abs(back - RATE) <= 0.1 * RATE, "Redis back: shared limiting resumes, %.0f admitted/s (limit %d/s)"
              % (back, RATE))
        logs = servers.stop()
        check(all("shared limit store unreachable" in log and "shared limit store reachable again" in log
                  for log in logs),
              "each server logged the store going away and coming back")

        # 3. Policy refuse.
        servers = Servers(args.spawn, redis.port, "refuse")

        outcomes = load_with_outage(servers, redis, "tenant-c", 9.0, away=(2.0, 5.0))
        others = [got for _, got, _ in outcomes if got not in ("OK", "RATE_LIMITED", "UNAVAILABLE")]
        check(not others, "policy refuse: every request answered (%d others: %s)" % (len(others), sorted(set(others))))
        unavailable = count(outcomes, "UNAVAILABLE", 2.5, 5.0)
        admitted_away = count(outcomes, "OK", 2.5, 5.0)
        check(unavailable > 0 and admitted_away <= LEASE * SERVERS,
              "policy refuse: %d UNAVAILABLE and %d admitted (at most the leases held) while Redis is away"
              % (unavailable, admitted_away))
        back = count(outcomes, "OK", 6.5, 9.0) / 2.5
        check(abs(back - RATE) <= 0.15 * RATE, "policy refuse, Redis back: %.0f admitted/s (limit %d/s)"
              % (back, RATE))
        servers.stop()

        # 4. The token limit on streams: three times the tokens per second, over three servers.
        servers = Servers(args.spawn, redis.port, "local",
                          ["--rate-limit", "1000000", "--token-limit", str(TOKENS), "--token-window", "1",
                           "--token-interval", "0"])
        prompt = "một hai ba bốn năm"  # 5 tokens of prompt, 5 generated
        per_stream = 10
        stream = {"type": "STREAM_OPEN", "deadline_ms": 0, "model": "syllables", "prompt": prompt}
        duration = 10.0
        outcomes = run_load(servers, "tenant-d", duration, 3 * TOKENS / per_stream / SERVERS, stream)
        opened = [tokens for _, got, tokens in outcomes if got == "OK"]
        limited = count(outcomes, "RATE_LIMITED")
        check(len(opened) + limited == len(outcomes) and all(tokens == 5 for tokens in opened),
              "every stream answered: %d whole streams + %d RATE_LIMITED of %d"
              % (len(opened), limited, len(outcomes)))
        used = len(opened) * per_stream
        expected = TOKENS * duration + TOKENS
        # Tokens another server produced reach Redis within its flush interval (50 ms), and
        # a stream opens while one token is left: at most that, plus a stream per server.
        bound = 0.01 * expected + TOKENS * 0.05 + per_stream * SERVERS
        check(abs(used - expected) <= bound,
              "3 servers at 3x the token rate for %.0f s use %d tokens, expected %d (%d/s x %.0f s + burst %d) "
              "within %.0f: off by %.2f%%" % (duration, used, expected, TOKENS, duration, TOKENS, bound,
                                              100.0 * (used - expected) / expected))
    finally:
        servers.stop()
        redis.stop()
    finish("shared-limit")


if __name__ == "__main__":
    main()
