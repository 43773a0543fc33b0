#!/usr/bin/env python3
"""Plays every exchange vector of Protocol/exchanges against a live rpc-server, each against a
fresh server started with the vector's flags, using the Python implementation of the protocol.

    python3 tools/check_exchanges.py --spawn .build/debug/rpc-server
    python3 tools/check_exchanges.py --spawn .build/debug/rpc-server idle-timeout drain-timeout

See tools/make_exchanges.py for the format. Exits non-zero if any exchange fails.
"""

import argparse
import json
import os
import select
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import live_client  # noqa: E402
import wire  # noqa: E402

EXCHANGES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Protocol", "exchanges")
BASE_FLAGS = ["--port", "0", "--http-port", "0", "--token-interval", "0", "--batch-timeout", "0.002"]
# Generous: an answer that takes this long means a broken server, not a slow machine.
WAIT = 30.0


class Failure(Exception):
    pass


class Connection:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=WAIT)
        self.decoder = wire.Decoder("client")
        self.frames = []
        self.closed = False

    def send(self, frames):
        data = b""
        for frame in frames:
            if "hex" in frame:
                data += bytes.fromhex(frame["hex"])
            elif "compressed" in frame:
                data += wire.encode_frame(frame["compressed"], compress=True, threshold=0)
            else:
                data += wire.encode_frame(frame)
        self.sock.sendall(data)

    def _read(self, timeout):
        """Reads what arrives within `timeout`; notes the end of the connection."""
        if self.closed:
            return
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return
        for frame in self.decoder.feed(data):
            if isinstance(frame, wire.WireError):
                raise Failure("the server sent a frame the client refuses: %s" % frame)
            if frame["type"] == "WELCOME" and frame["compression"] == 1:
                self.decoder.compression = True
            self.frames.append(frame)

    def next_frame(self):
        deadline = time.monotonic() + WAIT
        while not self.frames:
            if self.closed:
                raise Failure("the connection closed instead")
            if time.monotonic() > deadline:
                raise Failure("nothing arrived within %.0f s" % WAIT)
            self._read(0.05)
        return self.frames.pop(0)

    def expect_silence(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._read(max(0.0, deadline - time.monotonic()))
            if self.frames:
                raise Failure("expected nothing, got %s" % self.frames[0])

    def expect_closed(self):
        deadline = time.monotonic() + WAIT
        while not self.closed:
            if time.monotonic() > deadline:
                raise Failure("still open after %.0f s" % WAIT)
            self._read(0.05)
            if self.frames:
                raise Failure("expected the close, got %s" % self.frames[0])


def matches(frame, expected):
    for key, value in expected.items():
        if key == "message_contains":
            if value not in frame.get("message", ""):
                return False
        elif frame.get(key) != value:
            return False
    return True


def play(exchange, server):
    process, host, port = live_client.spawn([server] + BASE_FLAGS + exchange["server_flags"])
    connections = {}
    try:
        for index, step in enumerate(exchange["steps"]):
            try:
                if "connect" in step:
                    connections[step["connect"]] = Connection(host, port)
                elif "send" in step:
                    connections[step["send"]].send(step["frames"])
                elif "expect" in step:
                    frame = connections[step["expect"]].next_frame()
                    if not matches(frame, step["frame"]):
                        raise Failure("expected %s, got %s" % (step["frame"], frame))
                elif "expect_silence" in step:
                    connections[step["expect_silence"]].expect_silence(step["ms"] / 1000)
                elif "expect_closed" in step:
                    connections[step["expect_closed"]].expect_closed()
                elif "shutdown_write" in step:
                    connections[step["shutdown_write"]].sock.shutdown(socket.SHUT_WR)
                elif "signal" in step:
                    process.send_signal(getattr(signal, step["signal"]))
                else:
                    raise Failure("unknown step")
            except (Failure, OSError, wire.WireError) as error:
                raise Failure("step %d %s: %s" % (index + 1, json.dumps(step, ensure_ascii=False)[:160], error))
    finally:
        for connection in connections.values():
            connection.sock.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=WAIT)
        except Exception:
            process.kill()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spawn", metavar="SERVER", required=True, help="the rpc-server binary")
    parser.add_argument("names", nargs="*", help="only these exchanges")
    args = parser.parse_args()
    names = sorted(name[:-5] for name in os.listdir(EXCHANGES) if name.endswith(".json"))
    if args.names:
        names = [name for name in names if name in args.names]
    failed = 0
    for name in names:
        with open(os.path.join(EXCHANGES, name + ".json")) as f:
            exchange = json.load(f)
        started = time.monotonic()
        try:
            play(exchange, args.spawn)
            print("ok    %-30s %6.0f ms" % (name, (time.monotonic() - started) * 1000), flush=True)
        except Failure as failure:
            failed += 1
            print("FAIL  %-30s %s" % (name, failure), flush=True)
    print("%d passed, %d failed" % (len(names) - failed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
