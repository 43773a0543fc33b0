"""The worker protocol's frames (Protocol/PROTOCOL.md §11), with the standard library only."""

import struct

HEADER = struct.Struct(">IBBBI")  # payload length, version, type, flags, request id
VERSION = 1
DEFAULT_MAX_FRAME_SIZE = 4 * 1024 * 1024

PING, PONG, ERROR = 0x07, 0x08, 0x47
WORKER_HELLO, BATCH_DONE, TOKENS, GENERATE_DONE = 0x80, 0x81, 0x82, 0x83
WORKER_WELCOME, RUN_BATCH, GENERATE, CANCEL_WORK, CREDIT, SHUTDOWN = 0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5

SERVER_TYPES = {PING, PONG, ERROR, WORKER_WELCOME, RUN_BATCH, GENERATE, CANCEL_WORK, CREDIT, SHUTDOWN}

# Status codes (§5) a worker sends or reads.
INVALID_ARGUMENT, DEADLINE_EXCEEDED, CANCELLED, PROTOCOL_ERROR, INTERNAL = 1, 6, 7, 10, 12
FRAME_TOO_LARGE, UNSUPPORTED_VERSION = 11, 13
STATUS_NAMES = {1: "INVALID_ARGUMENT", 2: "UNKNOWN_MODEL", 6: "DEADLINE_EXCEEDED", 7: "CANCELLED",
                8: "UNAVAILABLE", 9: "UNAUTHENTICATED", 10: "PROTOCOL_ERROR", 11: "FRAME_TOO_LARGE",
                12: "INTERNAL", 13: "UNSUPPORTED_VERSION"}

KIND_MODEL, KIND_GENERATOR = 0, 1
KINDS_IN = {"bytes": 0, "text": 1}
KINDS_OUT = {"bytes": 0, "text": 1, "vector": 2}


# Frames on request id 0, and frames of a piece of work (never id 0); ERROR may be either.
CONNECTION_TYPES = {PING, PONG, WORKER_WELCOME, SHUTDOWN}
WORK_TYPES = {RUN_BATCH, GENERATE, CANCEL_WORK, CREDIT}


class ProtocolError(Exception):
    """The server sent bytes that break the specification; `status` says how (§5)."""

    def __init__(self, message, status=PROTOCOL_ERROR):
        super().__init__(message)
        self.status = status


def frame(type_, request_id, payload=b""):
    return HEADER.pack(len(payload), VERSION, type_, 0, request_id) + payload


def str16(text):
    data = text.encode("utf-8")
    if len(data) > 0xFFFF:
        raise ValueError("a str16 field holds at most 65535 bytes")
    return struct.pack(">H", len(data)) + data


def str32(text):
    data = text.encode("utf-8")
    return struct.pack(">I", len(data)) + data


def bytes32(data):
    return struct.pack(">I", len(data)) + bytes(data)


def hello(name, token, declarations):
    """WORKER_HELLO; `declarations` are (name, kind, input, output, dimensions, batch, concurrency)."""
    payload = bytes([1, VERSION]) + str16(name) + str16(token) + struct.pack(">H", len(declarations))
    for (model, kind, input_, output, dimensions, batch, concurrency) in declarations:
        payload += str16(model) + struct.pack(">BBBIII", kind, input_, output, dimensions, batch, concurrency)
    return frame(WORKER_HELLO, 0, payload)


def batch_done(request_id, outputs):
    return frame(BATCH_DONE, request_id, struct.pack(">I", len(outputs)) + b"".join(bytes32(o) for o in outputs))


def tokens(request_id, texts):
    return frame(TOKENS, request_id, struct.pack(">I", len(texts)) + b"".join(str32(t) for t in texts))


def generate_done(request_id, count):
    return frame(GENERATE_DONE, request_id, struct.pack(">I", count))


def error(request_id, status, message):
    data = message.encode("utf-8")[:1000].decode("utf-8", "ignore")
    return frame(ERROR, request_id, struct.pack(">HI", status, 0) + str16(data))


def pong(value):
    return frame(PONG, 0, struct.pack(">Q", value))


class Reader:
    """Reads one payload strictly: every field bounded, nothing left over."""

    def __init__(self, payload, name):
        self.data, self.at, self.name = payload, 0, name

    def take(self, count):
        if self.at + count > len(self.data):
            raise ProtocolError("%s payload is truncated" % self.name)
        piece = self.data[self.at:self.at + count]
        self.at += count
        return piece

    def int(self, fmt):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size))[0]

    def text(self, fmt):
        raw = self.take(self.int(fmt))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("%s carries text that is not UTF-8" % self.name)

    def items(self):
        count = self.int(">I")
        if count > (len(self.data) - self.at) // 4:
            raise ProtocolError("%s payload is truncated" % self.name)
        return [self.take(self.int(">I")) for _ in range(count)]

    def done(self):
        if self.at != len(self.data):
            raise ProtocolError("%s payload has bytes left over" % self.name)


def decode(type_, payload):
    """A server frame's payload as a dict."""
    names = {PING: "PING", PONG: "PONG", ERROR: "ERROR", WORKER_WELCOME: "WORKER_WELCOME",
             RUN_BATCH: "RUN_BATCH", GENERATE: "GENERATE", CANCEL_WORK: "CANCEL_WORK", CREDIT: "CREDIT",
             SHUTDOWN: "SHUTDOWN"}
    reader = Reader(payload, names.get(type_, hex(type_)))
    if type_ in (PING, PONG):
        value = {"value": reader.int(">Q")}
    elif type_ == ERROR:
        value = {"status": reader.int(">H"), "retry_after_ms": reader.int(">I"), "message": reader.text(">H")}
    elif type_ == WORKER_WELCOME:
        value = {"version": reader.int(">B"), "max_frame_size": reader.int(">I"),
                 "heartbeat_interval_ms": reader.int(">I"), "heartbeat_timeout_ms": reader.int(">I")}
    elif type_ == RUN_BATCH:
        value = {"deadline_ms": reader.int(">I"), "model": reader.text(">H"), "inputs": reader.items()}
    elif type_ == GENERATE:
        value = {"deadline_ms": reader.int(">I"), "generator": reader.text(">H"), "prompt": reader.text(">I"),
                 "max_tokens": reader.int(">I"), "window": reader.int(">I")}
        count = reader.int(">B")
        if count > 4:
            raise ProtocolError("GENERATE carries at most 4 stop sequences")
        value["stop"] = [reader.text(">H") for _ in range(count)]
    elif type_ == CANCEL_WORK:
        value = {}
    elif type_ in (CREDIT, SHUTDOWN):
        value = {"value": reader.int(">I")}
    else:
        raise ProtocolError("unknown frame type 0x%02x" % type_)
    reader.done()
    return value


class FrameReader:
    """Cuts a byte stream into (type, request id, payload) frames, checking each header."""

    def __init__(self, max_payload=DEFAULT_MAX_FRAME_SIZE):
        self.buffer = bytearray()
        self.max_payload = max_payload

    def feed(self, data):
        self.buffer += data
        while len(self.buffer) >= HEADER.size:
            length, version, type_, flags, request_id = HEADER.unpack_from(self.buffer)
            if length > self.max_payload:
                raise ProtocolError("a frame of %d bytes exceeds the limit of %d" % (length, self.max_payload),
                                    FRAME_TOO_LARGE)
            if version != VERSION:
                raise ProtocolError("a frame of worker protocol version %d" % version, UNSUPPORTED_VERSION)
            if type_ not in SERVER_TYPES or flags != 0:
                raise ProtocolError("a frame of type 0x%02x, flags 0x%02x from the server" % (type_, flags))
            if (type_ in CONNECTION_TYPES and request_id != 0) or (type_ in WORK_TYPES and request_id == 0):
                raise ProtocolError("a frame of type 0x%02x on request id %d" % (type_, request_id))
            if len(self.buffer) < HEADER.size + length:
                return
            payload = bytes(self.buffer[HEADER.size:HEADER.size + length])
            del self.buffer[:HEADER.size + length]
            yield type_, request_id, payload
