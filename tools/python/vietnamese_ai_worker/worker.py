"""Serves Python models and generators to an rpc-server over the worker protocol.

A reader thread answers pings at once, even while a model computes, so that the server tells
a slow worker from a hung one; each model computes its batches on a thread of its own, one
batch at a time; each generation runs on a thread of its own within the credit the server
grants.
"""

import array
import os
import socket
import sys
import threading
import time
import traceback

from . import protocol


_current = threading.local()


def da_huy():
    """Whether the server has cancelled the batch this thread computes (nobody waits for its
    results any more): a long batch function may check it between steps and stop early."""
    state = getattr(_current, "state", None)
    return bool(state and state["cancelled"])


def han_chot():
    """Seconds left until the deadline of the batch this thread computes (the latest of its
    requests' deadlines), or None when one of them waits as long as it takes: a long batch
    function may give up past it."""
    state = getattr(_current, "state", None)
    if state is None or state.get("deadline") is None:
        return None
    return state["deadline"] - time.monotonic()


class InputError(Exception):
    """Raise it from a predict function for inputs the model cannot take: the client gets
    INVALID_ARGUMENT with the message instead of INTERNAL."""


class MoHinh:
    """A model served by this worker, as the design's MayChuBatch takes one.

    Either `ham_du_doan(batch_inputs) -> list`, one output per input, in order; or `mo_hinh`,
    an object with `predict_batch(inputs)` or `predict(input)` (called once per input).

    `dau_vao` is "text" (inputs are str) or "bytes"; `ket_qua` is "text", "bytes" or
    "vector" (a sequence of `so_chieu` floats, sent as float32). `kich_thuoc_batch` is the
    batch size the model prefers (0: the server's).
    """

    def __init__(self, ten, ham_du_doan=None, mo_hinh=None, kich_thuoc_batch=0, dau_vao="text",
                 ket_qua="text", so_chieu=0):
        if (ham_du_doan is None) == (mo_hinh is None):
            raise ValueError("give ham_du_doan or mo_hinh, not both")
        if dau_vao not in protocol.KINDS_IN or ket_qua not in protocol.KINDS_OUT:
            raise ValueError("dau_vao is text or bytes; ket_qua is text, bytes or vector")
        if (ket_qua == "vector") != (so_chieu > 0):
            raise ValueError("a vector output needs so_chieu, and only a vector output has it")
        if ham_du_doan is None:
            if hasattr(mo_hinh, "predict_batch"):
                ham_du_doan = mo_hinh.predict_batch
            else:
                ham_du_doan = lambda batch: [mo_hinh.predict(x) for x in batch]  # noqa: E731
        self.ten, self.ham_du_doan = ten, ham_du_doan
        self.kich_thuoc_batch, self.dau_vao, self.ket_qua, self.so_chieu = kich_thuoc_batch, dau_vao, ket_qua, so_chieu

    def declaration(self):
        return (self.ten, protocol.KIND_MODEL, protocol.KINDS_IN[self.dau_vao], protocol.KINDS_OUT[self.ket_qua],
                self.so_chieu, self.kich_thuoc_batch, 1)

    def run(self, inputs):
        if self.dau_vao == "text":
            try:
                inputs = [bytes(x).decode("utf-8") for x in inputs]
            except UnicodeDecodeError:
                raise InputError("model %s takes UTF-8 text" % self.ten)
        outputs = list(self.ham_du_doan(inputs))
        if len(outputs) != len(inputs):
            raise RuntimeError("model %s gave %d outputs for %d inputs" % (self.ten, len(outputs), len(inputs)))
        return [self.encode(output) for output in outputs]

    def encode(self, output):
        if self.ket_qua == "text":
            return output.encode("utf-8")
        if self.ket_qua == "bytes":
            return bytes(output)
        if hasattr(output, "astype"):  # a numpy array, without importing numpy
            data = output.astype("<f4").tobytes()
        else:
            values = array.array("f", output)
            if sys.byteorder != "little":
                values.byteswap()
            data = values.tobytes()
        if len(data) != 4 * self.so_chieu:
            raise RuntimeError("model %s gave a vector of %d floats, not %d" % (self.ten, len(data) // 4, self.so_chieu))
        return data


class MaySinh:
    """A generator served by this worker, as the design's MayChuStream takes one:
    `ham_sinh(prompt)` yields tokens (str). `dong_thoi` streams run at once."""

    def __init__(self, ten, ham_sinh, dong_thoi=1):
        self.ten, self.ham_sinh, self.dong_thoi = ten, ham_sinh, dong_thoi

    def declaration(self):
        return (self.ten, protocol.KIND_GENERATOR, protocol.KINDS_IN["text"], protocol.KINDS_OUT["text"], 0, 0,
                self.dong_thoi)


class Worker:
    def __init__(self, served, name=None):
        if not served:
            raise ValueError("a worker serves at least one MoHinh or MaySinh")
        self.served = {item.ten: item for item in served}
        self.name = name or "%s-%d" % ("+".join(self.served), os.getpid())
        self.send_lock = threading.Lock()
        self.sock = None
        self.work = {}  # request id -> {"cancelled": Event, "credit": int, "condition": Condition}
        self.work_lock = threading.Lock()
        self.queues = {}
        self.closing = threading.Event()

    def send(self, data):
        with self.send_lock:
            self.sock.sendall(data)

    def connect(self, address, token):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host.strip("[]"), int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.send(protocol.hello(self.name, token, [item.declaration() for item in self.served.values()]))
        reader = protocol.FrameReader()
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection during the handshake")
            for type_, _, payload in reader.feed(data):
                fields = protocol.decode(type_, payload)
                if type_ == protocol.ERROR:
                    raise Refused("the server refused this worker: %s: %s" % (
                        protocol.STATUS_NAMES.get(fields["status"], fields["status"]), fields["message"]))
                if type_ != protocol.WORKER_WELCOME:
                    raise protocol.ProtocolError("expected WORKER_WELCOME")
                reader.max_payload = fields["max_frame_size"]
                self.reader = reader
                return fields

    def serve(self):
        """Answers the server until it closes the connection or asks this worker to shut down."""
        for item in self.served.values():
            if isinstance(item, MoHinh):
                queue = self.queues[item.ten] = _Queue()
                threading.Thread(target=self.compute, args=(item, queue), daemon=True).start()
        try:
            while True:
                data = self.sock.recv(1 << 20)
                if not data:
                    break
                for type_, request_id, payload in self.reader.feed(data):
                    self.dispatch(type_, request_id, protocol.decode(type_, payload))
        except protocol.ProtocolError as problem:
            try:
                self.send(protocol.error(0, protocol.PROTOCOL_ERROR, str(problem)))
            except OSError:
                pass
            raise
        finally:
            self.closing.set()
            for queue in self.queues.values():
                queue.put(None)

    def dispatch(self, type_, request_id, fields):
        if type_ == protocol.PING:
            self.send(protocol.pong(fields["value"]))
        elif type_ == protocol.RUN_BATCH:
            item = self.served.get(fields["model"])
            if not isinstance(item, MoHinh):
                self.send(protocol.error(request_id, protocol.INVALID_ARGUMENT, "no model %s here" % fields["model"]))
                return
            state = self.track(request_id)
            if fields["deadline_ms"]:
                state["deadline"] = time.monotonic() + fields["deadline_ms"] / 1000
            self.queues[item.ten].put((request_id, fields["inputs"]))
        elif type_ == protocol.GENERATE:
            item = self.served.get(fields["generator"])
            if not isinstance(item, MaySinh):
                self.send(protocol.error(request_id, protocol.INVALID_ARGUMENT,
                                         "no generator %s here" % fields["generator"]))
                return
            state = self.track(request_id, credit=fields["window"])
            threading.Thread(target=self.generate, args=(item, request_id, fields, state), daemon=True).start()
        elif type_ == protocol.CANCEL_WORK:
            with self.work_lock:
                state = self.work.get(request_id)
            if state:
                with state["condition"]:
                    state["cancelled"] = True
                    state["condition"].notify_all()
        elif type_ == protocol.CREDIT:
            with self.work_lock:
                state = self.work.get(request_id)
            if state:
                with state["condition"]:
                    state["credit"] += fields["value"]
                    state["condition"].notify_all()
        elif type_ == protocol.SHUTDOWN:
            threading.Thread(target=self.shut_down, daemon=True).start()
        elif type_ == protocol.ERROR and request_id == 0:
            raise ConnectionError("the server closed this worker: %s" % fields["message"])

    def track(self, request_id, credit=0):
        state = {"cancelled": False, "credit": credit, "condition": threading.Condition()}
        with self.work_lock:
            self.work[request_id] = state
        return state

    def finish(self, request_id, frame):
        with self.work_lock:
            self.work.pop(request_id, None)
        try:
            self.send(frame)
        except OSError:
            pass

    def compute(self, model, queue):
        while True:
            job = queue.get()
            if job is None:
                return
            request_id, inputs = job
            with self.work_lock:
                state = self.work.get(request_id)
            if state is None or state["cancelled"]:
                self.finish(request_id, protocol.error(request_id, protocol.CANCELLED, "cancelled"))
                continue
            if state.get("deadline") is not None and time.monotonic() >= state["deadline"]:
                # Waited here past its deadline: nobody would use the outputs.
                self.finish(request_id, protocol.error(request_id, protocol.DEADLINE_EXCEEDED, "deadline passed"))
                continue
            _current.state = state
            try:
                outputs = model.run(inputs)
                if state["cancelled"]:
                    self.finish(request_id, protocol.error(request_id, protocol.CANCELLED, "cancelled"))
                else:
                    self.finish(request_id, protocol.batch_done(request_id, outputs))
            except InputError as problem:
                self.finish(request_id, protocol.error(request_id, protocol.INVALID_ARGUMENT, str(problem)))
            except Exception as problem:  # the model's failure is the batch's, not the worker's
                traceback.print_exc(file=sys.stderr)
                self.finish(request_id, protocol.error(
                    request_id, protocol.CANCELLED if state["cancelled"] else protocol.INTERNAL,
                    "%s: %s" % (type(problem).__name__, problem)))
            finally:
                _current.state = None

    def generate(self, generator, request_id, fields, state):
        sent, text, stops, limit = 0, "", fields["stop"], fields["max_tokens"]
        condition = state["condition"]
        tokens = None
        try:
            tokens = iter(generator.ham_sinh(fields["prompt"]))
            for token in tokens:
                with condition:
                    while state["credit"] <= 0 and not state["cancelled"]:
                        condition.wait()
                    if state["cancelled"]:
                        self.finish(request_id, protocol.error(request_id, protocol.CANCELLED, "cancelled"))
                        return
                    state["credit"] -= 1
                if stops:
                    text += token
                    cut = min((text.find(stop) for stop in stops if stop in text), default=-1)
                    if cut >= 0:
                        kept = token[:len(token) - (len(text) - cut)] if len(text) - cut <= len(token) else ""
                        if kept:
                            self.send(protocol.tokens(request_id, [kept]))
                            sent += 1
                        break
                self.send(protocol.tokens(request_id, [token]))
                sent += 1
                if limit and sent >= limit:
                    break
            self.finish(request_id, protocol.generate_done(request_id, sent))
        except OSError:
            return
        except Exception as problem:
            traceback.print_exc(file=sys.stderr)
            self.finish(request_id, protocol.error(request_id, protocol.INTERNAL,
                                                   "%s: %s" % (type(problem).__name__, problem)))
        finally:
            close = getattr(tokens, "close", None)
            if close:
                close()

    def shut_down(self):
        """Finishes the work in flight, then closes."""
        while True:
            with self.work_lock:
                if not self.work:
                    break
            if self.closing.wait(0.01):
                break
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Queue:
    """A blocking FIFO (queue.Queue without its task accounting)."""

    def __init__(self):
        self.items, self.condition = [], threading.Condition()

    def put(self, item):
        with self.condition:
            self.items.append(item)
            self.condition.notify()

    def get(self):
        with self.condition:
            while not self.items:
                self.condition.wait()
            return self.items.pop(0)


class Refused(ConnectionError):
    """The server refused the handshake (token, version, declarations): retrying cannot help."""


def chay(*served, address=None, token=None, name=None, reconnect=None):
    """Serves `served` to a server.

    A worker the server spawned (VAI_WORKER_ADDRESS, VAI_WORKER_TOKEN and VAI_WORKER_MODEL set)
    serves until the server closes the connection, then returns: the server restarts it if it
    must. An attached worker (`address` given: an rpc-server's --worker-listen) keeps its models
    loaded and reconnects, waiting 0.1 s doubling to 10 s, whenever the server is away or goes;
    it stops only on a refusal (`Refused`: wrong token, version or declarations) or a signal."""
    spawned = address is None and "VAI_WORKER_MODEL" in os.environ
    address = address or os.environ.get("VAI_WORKER_ADDRESS")
    token = token if token is not None else os.environ.get("VAI_WORKER_TOKEN", "")
    if not address:
        raise SystemExit("no server to serve: set VAI_WORKER_ADDRESS or pass --connect HOST:PORT")
    if reconnect is None:
        reconnect = not spawned
    delay = 0.1
    while True:
        worker = Worker(list(served), name=name)  # a fresh session: nothing in flight
        started = time.monotonic()
        try:
            worker.connect(address, token)
            worker.serve()
            if not reconnect:
                return
            print("the server at %s closed the connection; reconnecting" % address, file=sys.stderr, flush=True)
        except Refused:
            raise
        except (OSError, protocol.ProtocolError) as problem:  # ConnectionError is an OSError
            if not reconnect:
                raise ConnectionError(str(problem)) from problem
            print("cannot serve %s: %s; retrying in %.1f s" % (address, problem, delay), file=sys.stderr, flush=True)
        finally:
            if worker.sock is not None:
                worker.sock.close()
        if time.monotonic() - started > 10:
            delay = 0.1
        time.sleep(delay)
        delay = min(delay * 2, 10)
