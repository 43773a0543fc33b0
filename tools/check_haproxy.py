#!/usr/bin/env python3
"""Two rpc-servers behind HAProxy with tools/deploy/haproxy.cfg (its ports moved to free
ones): the binary protocol and SSE work end to end through it, and a server sent SIGTERM is
taken out without losing a request made on a new connection.

    python3 tools/check_haproxy.py --spawn .build/debug/rpc-server     # needs haproxy (Debian)
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import live_client  # noqa: E402
from checks import check, failures, free_port, wait_for  # noqa: E402

CONFIG = os.path.join(HERE, "deploy", "haproxy.cfg")




def start_server(binary, port, http_port):
    return subprocess.Popen([binary, "--port", str(port), "--http-port", str(http_port), "--rate-limit", "1000000"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)



def predict(port, text):
    """One predict on a new connection through the proxy; the output, or None."""
    try:
        connection = live_client.Connection("127.0.0.1", port, timeout=10)
        rid = connection.request({"type": "PREDICT", "deadline_ms": 0, "model": "echo",
                                  "input_hex": text.encode().hex()})
        frame = connection.wait(rid)[-1]
        connection.close()
        return bytes.fromhex(frame["output_hex"]).decode() if frame["type"] == "RESULT" else None
    except Exception:  # refused, reset, closed or a protocol error: not answered
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spawn", required=True, metavar="RPC_SERVER")
    args = parser.parse_args()
    if not shutil.which("haproxy"):
        raise SystemExit("haproxy is missing: apt-get install haproxy")
    ports = {name: free_port() for name in ("front", "front_http", "b1", "h1", "b2", "h2")}
    text = open(CONFIG).read()
    for old, new in (("bind :7070", "bind 127.0.0.1:%d" % ports["front"]),
                     ("bind :8080", "bind 127.0.0.1:%d" % ports["front_http"]),
                     ("127.0.0.1:7171 check port 8181", "127.0.0.1:%d check port %d" % (ports["b1"], ports["h1"])),
                     ("127.0.0.1:7172 check port 8182", "127.0.0.1:%d check port %d" % (ports["b2"], ports["h2"])),
                     ("127.0.0.1:8181 check", "127.0.0.1:%d check" % ports["h1"]),
                     ("127.0.0.1:8182 check", "127.0.0.1:%d check" % ports["h2"])):
        if old not in text:
            raise SystemExit("tools/deploy/haproxy.cfg no longer has %r" % old)
        text = text.replace(old, new)
    config = tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False)
    config.write(text)
    config.close()
    servers = [start_server(args.spawn, ports["b1"], ports["h1"]), start_server(args.spawn, ports["b2"], ports["h2"])]
    proxy = None
    try:
        for port in (ports["b1"], ports["h1"], ports["b2"], ports["h2"]):
            wait_for(port)
        proxy = subprocess.Popen(["haproxy", "-f", config.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(ports["front"])
        time.sleep(2.5)  # both servers seen ready by the checks

        check(predict(ports["front"], "xin chào") == "xin chào", "a binary predict through HAProxy (TCP mode)")
        connection = live_client.Connection("127.0.0.1", ports["front"], timeout=10)
        rid = connection.request({"type": "STREAM_OPEN", "deadline_ms": 0, "model": "syllables",
                                  "prompt": "một hai ba"})
        frames = connection.wait(rid)
        connection.close()
        tokens = [f["token"] for f in frames if f["type"] == "TOKEN"]
        check(tokens == ["một ", "hai ", "ba"] and frames[-1]["type"] == "STREAM_END",
              "a binary stream through HAProxy: %r" % tokens)

        request = urllib.request.Request(
            "http://127.0.0.1:%d/v1/stream" % ports["front_http"],
            data=json.dumps({"prompt": "một hai ba", "model": "syllables"}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read().decode()
            content_type = response.headers.get("Content-Type", "")
        events = re.findall(r"^data: (.*)$", body, re.MULTILINE)
        check(content_type.startswith("text/event-stream")
              and events == ['{"token": "một "}', '{"token": "hai "}', '{"token": "ba"}', "[DONE]"],
              "an SSE stream through HAProxy (HTTP mode): %r" % events)

        servers[0].send_signal(signal.SIGTERM)
        answers = []
        for i in range(20):
            time.sleep(0.1)  # the pace of a client connecting anew, across the server's drain
            answers.append(predict(ports["front"], "lần %d" % i))
        check(all(answer == "lần %d" % i for i, answer in enumerate(answers)),
              "SIGTERM to one server: 20 predicts on new connections all answered (%d lost)"
              % sum(answer is None for answer in answers))
        check(servers[0].wait(timeout=60) == 0, "the server sent SIGTERM drained and exited 0")
    finally:
        for process in servers + ([proxy] if proxy else []):
            if process.poll() is None:
                process.kill()
                process.wait()
        os.unlink(config.name)
    if failures:
        print("%d HAProxy check(s) failed" % len(failures))
        return 1
    print("every HAProxy check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
