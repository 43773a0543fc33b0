"""What the end-to-end check scripts share: a check that is counted rather than raised, and
processes on free loopback ports. Standard library only."""

import socket
import sys
import time

failures = []


def check(condition, message):
    """Prints the outcome; a failure is counted, and `finish` exits non-zero."""
    print(("ok   " if condition else "FAIL ") + message, flush=True)
    if not condition:
        failures.append(message)


def finish(what):
    if failures:
        print("%d check(s) failed" % len(failures))
        sys.exit(1)
    print("all %s checks passed" % what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port, timeout=60):
    """Waits until something listens on loopback `port`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("nothing listens on %d" % port)
