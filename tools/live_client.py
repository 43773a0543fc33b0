#!/usr/bin/env python3
"""Checks a live rpc-server with the independent Python implementation of the protocol.

    python3 tools/live_client.py --port 7070             # a server that is already running
    python3 tools/live_client.py --spawn .build/debug/rpc-server [-- server flags]

With --spawn the script starts the server on a free port, waits for its `listening on` line,
runs every check, then sends SIGTERM and requires a clean exit. Standard library only. The
server must serve the built-in models ("echo", "sim") and generators ("essay", "syllables")
with a rate limit of at least 100 requests per window.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wire  # noqa: E402

TERMINAL = {"RESULT", "BATCH_RESULT", "STREAM_END", "STATS", "ERROR"}


class Connection:
    """One client connection: sends frames, gathers the frames of each request id."""

    def __init__(self, host, port, client_id="py-live", compress=False, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.compress = False
        self.decoder = wire.Decoder("client")
        self.frames = {}
        self.connection_frames = []
        self.next_id = 1
        self.send({"type": "HELLO", "request_id": 0, "versions": [1], "client_id": client_id,
                   "auth_token": "", "compressions": [1, 0] if compress else [0]})
        welcome = self.wait_connection("WELCOME")
        self.welcome = welcome
        if welcome["compression"] == 1:
            self.compress = True
            self.decoder.compression = True

    def send(self, frame):
        self.sock.sendall(wire.encode_frame(frame, compress=self.compress))

    def request(self, frame):
        request_id = self.next_id
        self.next_id += 1
        frame = dict(frame, request_id=request_id)
        self.send(frame)
        return request_id

    def _pump(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        for item in self.decoder.feed(data):
            if isinstance(item, wire.WireError):
                raise AssertionError("malformed frame from the server: %s" % item)
            if item["request_id"] == 0:
                self.connection_frames.append(item)
            else:
                self.frames.setdefault(item["request_id"], []).append(item)

    def wait_connection(self, type_name):
        while True:
            for index, frame in enumerate(self.connection_frames):
                if frame["type"] in (type_name, "ERROR"):
                    del self.connection_frames[index]
                    if frame["type"] == "ERROR" and type_name != "ERROR":
                        raise AssertionError("connection error: %s %s" % (frame["status"], frame["message"]))
                    return frame
            self._pump()

    def wait(self, request_id):
        """All frames of a request, up to and including its terminal frame."""
        while True:
            frames = self.frames.get(request_id, [])
            if frames and frames[-1]["type"] in TERMINAL:
                return self.frames.pop(request_id)
            self._pump()

    def close(self):
        self.sock.close()


def utf8_hex(text):
    return text.encode("utf-8").hex()


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def run_checks(host, port):
    results = []

    def case(name):
        def register(function):
            results.append((name, function))
            return function
        return register

    @case("handshake and ping")
    def _():
        c = Connection(host, port, client_id="py-live-1")
        check(c.welcome["version"] == 1, "version %r" % c.welcome)
        check(c.welcome["client_id"] == "py-live-1", "client id %r" % c.welcome)
        c.send({"type": "PING", "request_id": 0, "value": 0x0102030405060708})
        pong = c.wait_connection("PONG")
        check(pong["value"] == 0x0102030405060708, "pong %r" % pong)
        c.close()

    @case("predict on echo and sim")
    def _():
        c = Connection(host, port, client_id="py-live-2")
        a = c.request({"type": "PREDICT", "deadline_ms": 5000, "model": "echo", "input_hex": utf8_hex("xin chào")})
        b = c.request({"type": "PREDICT", "deadline_ms": 0, "model": "sim", "input_hex": utf8_hex("xin chào")})
        (ra,), (rb,) = c.wait(a), c.wait(b)
        check(ra["type"] == "RESULT" and bytes.fromhex(ra["output_hex"]).decode() == "xin chào", repr(ra))
        check(rb["type"] == "RESULT" and bytes.fromhex(rb["output_hex"]).decode() == "XIN CHÀO", repr(rb))
        c.close()

    @case("batch predict keeps the order")
    def _():
        c = Connection(host, port, client_id="py-live-3")
        inputs = ["một", "hai", "ba", "", "bốn năm"]
        r = c.request({"type": "BATCH_PREDICT", "deadline_ms": 0, "model": "sim",
                       "inputs_hex": [utf8_hex(text) for text in inputs]})
        (answer,) = c.wait(r)
        check(answer["type"] == "BATCH_RESULT", repr(answer))
        outputs = [bytes.fromhex(h).decode() for h in answer["outputs_hex"]]
        check(outputs == [text.upper() for text in inputs], repr(outputs))
        c.close()

    @case("stream tokens then STREAM_END with the count")
    def _():
        c = Connection(host, port, client_id="py-live-4")
        prompt = "Trí tuệ nhân tạo đang thay đổi thế giới"
        r = c.request({"type": "STREAM_OPEN", "deadline_ms": 30000, "model": "syllables", "prompt": prompt})
        frames = c.wait(r)
        tokens = [f["token"] for f in frames if f["type"] == "TOKEN"]
        check(frames[-1]["type"] == "STREAM_END", repr(frames[-1]))
        check(frames[-1]["token_count"] == len(tokens), repr(frames[-1]))
        check("".join(tokens) == prompt, repr(tokens))
        d = c.request({"type": "STREAM_OPEN", "deadline_ms": 0, "model": "", "prompt": "Viết bài luận về AI"})
        frames = c.wait(d)
        text = "".join(f["token"] for f in frames if f["type"] == "TOKEN")
        check(frames[-1]["type"] == "STREAM_END" and text.startswith("Bài luận: Viết bài luận về AI"), text[:80])
        c.close()

    @case("cancel a stream mid-way")
    def _():
        c = Connection(host, port, client_id="py-live-5")
        # A million tokens: about a second of an unpaced stream on a small machine. CANCEL goes
        # out as soon as the first bytes arrive, before this slow decoder has read them.
        r = c.request({"type": "STREAM_OPEN", "deadline_ms": 0, "model": "syllables", "prompt": "a " * 1000000})
        c.sock.recv(1, socket.MSG_PEEK)
        c.send({"type": "CANCEL", "request_id": r})
        frames = c.wait(r)
        last = frames[-1]
        check(last["type"] == "ERROR" and last["status"] == "CANCELLED", repr(last))
        c.close()

    @case("compression: a large input inflates on the server and comes back compressed")
    def _():
        c = Connection(host, port, client_id="py-live-6", compress=True)
        check(c.compress, "the server did not agree to zlib")
        text = "Trí tuệ nhân tạo " * 1000
        r = c.request({"type": "PREDICT", "deadline_ms": 0, "model": "echo", "input_hex": utf8_hex(text)})
        (answer,) = c.wait(r)
        check(bytes.fromhex(answer["output_hex"]).decode() == text, "compressed echo differs")
        c.close()

    @case("request errors: unknown model, invalid UTF-8, cancel of an unknown id")
    def _():
        c = Connection(host, port, client_id="py-live-7")
        c.send({"type": "CANCEL", "request_id": 999})
        r = c.request({"type": "PREDICT", "deadline_ms": 0, "model": "no-such-model", "input_hex": "00"})
        (answer,) = c.wait(r)
        check(answer["type"] == "ERROR" and answer["status"] == "UNKNOWN_MODEL", repr(answer))
        request_id = c.next_id
        c.next_id += 1
        bad = bytes.fromhex("00000000" "0002" "c328" "00000000")  # model name "\xc3\x28"
        c.sock.sendall(wire.HEADER.pack(len(bad), 1, wire.TYPES["PREDICT"], 0, request_id) + bad)
        (answer,) = c.wait(request_id)
        check(answer["type"] == "ERROR" and answer["status"] == "INVALID_ARGUMENT", repr(answer))
        c.close()

    @case("stats carry the design's keys")
    def _():
        c = Connection(host, port, client_id="py-live-8")
        r = c.request({"type": "STATS_REQUEST"})
        (answer,) = c.wait(r)
        stats = json.loads(answer["json"])
        for group, keys in (("batch", ["latency_p50", "latency_p95", "batch_size_tb", "queue_size"]),
                            ("stream", ["tong_stream", "client_hien_tai", "thoi_gian_tb"]),
                            ("rate_limit", ["ty_le_tu_choi"])):
            for key in keys:
                check(key in stats[group], "%s.%s missing from %s" % (group, key, answer["json"]))
        c.close()

    @case("a protocol violation gets ERROR on id 0 and a close")
    def _():
        sock = socket.create_connection((host, port), timeout=10)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        decoder, frames = wire.Decoder("client"), []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            frames += decoder.feed(data)
        check(len(frames) == 1 and frames[0]["type"] == "ERROR" and frames[0]["request_id"] == 0, repr(frames))
        check(frames[0]["status"] == "FRAME_TOO_LARGE", repr(frames[0]))
        sock.close()

    failures = 0
    for name, function in results:
        started = time.monotonic()
        try:
            function()
            print("ok    %-72s %6.1f ms" % (name, (time.monotonic() - started) * 1000))
        except Exception as error:  # noqa: BLE001 - report every failure, then exit non-zero
            failures += 1
            print("FAIL  %s: %s" % (name, error))
    print("%d passed, %d failed" % (len(results) - failures, failures))
    return failures


def spawn(command):
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise SystemExit("the server exited before listening (code %s)" % process.wait())
        if line.startswith("listening on "):
            host, port = line.split()[-1].rsplit(":", 1)
            return process, host, int(port)
    process.kill()
    raise SystemExit("the server did not print 'listening on' within 120 s")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7070)
    parser.add_argument("--spawn", metavar="SERVER", help="start this rpc-server binary on a free port")
    parser.add_argument("server_args", nargs="*", help="extra flags for the spawned server (after --)")
    args = parser.parse_args()

    if not args.spawn:
        sys.exit(1 if run_checks(args.host, args.port) else 0)

    command = [args.spawn, "--port", "0", "--http-port", "0", "--token-interval", "0", "--batch-timeout", "0.002"]
    command += args.server_args
    process, host, port = spawn(command)
    try:
        failures = run_checks(host, port)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise SystemExit("the server did not exit within 30 s of SIGTERM")
    if code != 0:
        print("the server exited with code %d after SIGTERM" % code)
        failures += 1
    else:
        print("ok    server drained and exited 0 after SIGTERM")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
