#!/usr/bin/env python3
"""A second, independent implementation of the wire protocol (Protocol/PROTOCOL.md), version 1.

Standard library only. It decodes and re-encodes the golden vectors in Protocol/vectors, and
(`tools/wire_client.py`) talks to a live server, which proves that the specification alone is
enough to write a client.

Frames are represented as plain dicts, the same shape the vectors use:

    {"request_id": 7, "type": "PREDICT", "deadline_ms": 250, "model": "echo", "input_hex": "..."}
"""

import struct
import zlib

VERSION = 1
HEADER = struct.Struct(">IBBBI")  # payload length, version, type, flags, request id
HEADER_SIZE = HEADER.size  # 11
DEFAULT_MAX_FRAME_SIZE = 4 * 1024 * 1024
DEFAULT_COMPRESSION_THRESHOLD = 1024
FLAG_COMPRESSED = 0x01
KNOWN_FLAGS = FLAG_COMPRESSED

TYPES = {
    "HELLO": 0x01, "PREDICT": 0x02, "BATCH_PREDICT": 0x03, "STREAM_OPEN": 0x04, "CANCEL": 0x05,
    "STATS_REQUEST": 0x06, "PING": 0x07, "PONG": 0x08, "WELCOME": 0x41, "RESULT": 0x42,
    "BATCH_RESULT": 0x43, "TOKEN": 0x44, "STREAM_END": 0x45, "STATS": 0x46, "ERROR": 0x47,
    "GOAWAY": 0x48,
}
TYPE_NAMES = {value: name for name, value in TYPES.items()}
CONNECTION_TYPES = {"HELLO", "WELCOME", "PING", "PONG", "GOAWAY"}
REQUEST_TYPES_WITH_TEXT = {"PREDICT", "BATCH_PREDICT", "STREAM_OPEN"}

STATUS_NAMES = [
    "OK", "INVALID_ARGUMENT", "UNKNOWN_MODEL", "RATE_LIMITED", "QUEUE_FULL", "TOO_MANY_STREAMS",
    "DEADLINE_EXCEEDED", "CANCELLED", "UNAVAILABLE", "UNAUTHENTICATED", "PROTOCOL_ERROR",
    "FRAME_TOO_LARGE", "INTERNAL", "UNSUPPORTED_VERSION", "RESOURCE_EXHAUSTED", "REFUSED",
]


def status_name(code):
    return STATUS_NAMES[code] if code < len(STATUS_NAMES) else "UNKNOWN(%d)" % code


def status_code(name):
    if name.startswith("UNKNOWN("):
        return int(name[len("UNKNOWN("):-1])
    return STATUS_NAMES.index(name)


def sent_by_client(type_byte):
    return type_byte & 0x40 == 0


def sent_by_server(type_byte):
    return type_byte & 0x40 != 0 or type_byte in (TYPES["PING"], TYPES["PONG"])


class WireError(Exception):
    """A protocol violation. `closes` is True for connection errors, False for request errors."""

    def __init__(self, status, message, request_id=None, closes=True):
        super().__init__("%s: %s" % (status, message))
        self.status = status
        self.message = message
        self.request_id = request_id
        self.closes = closes


# ---------------------------------------------------------------------------------------------
# Payloads

class _Reader:
    def __init__(self, data, type_name, text_is_request_error, request_id):
        self.data = data
        self.pos = 0
        self.type_name = type_name
        self.text_is_request_error = text_is_request_error
        self.request_id = request_id
        self.deferred = None

    def _take(self, n, what):
        if self.pos + n > len(self.data):
            raise WireError("PROTOCOL_ERROR", "%s payload is truncated: %s" % (self.type_name, what))
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def uint(self, size):
        fmt = {1: ">B", 2: ">H", 4: ">I", 8: ">Q"}[size]
        return struct.unpack(fmt, self._take(size, "integer"))[0]

    def list8(self):
        return list(self._take(self.uint(1), "list"))

    def bytes32(self):
        return self._take(self.uint(4), "bytes")

    def bytes_list(self):
        count = self.uint(4)
        if count > (len(self.data) - self.pos) // 4:
            raise WireError("PROTOCOL_ERROR", "%s payload is truncated: list" % self.type_name)
        return [self.bytes32() for _ in range(count)]

    def text(self, length_size, field):
        raw = self._take(self.uint(length_size), field)
        try:
            return raw.decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            message = "%s of %s is not valid UTF-8" % (field, self.type_name)
            if self.text_is_request_error:
                if self.deferred is None:
                    self.deferred = WireError("INVALID_ARGUMENT", message, self.request_id, closes=False)
                return ""
            raise WireError("PROTOCOL_ERROR", message)

    def finish(self):
        if self.pos != len(self.data):
            raise WireError("PROTOCOL_ERROR", "%s payload has unexpected trailing bytes" % self.type_name)
        if self.deferred is not None:
            raise self.deferred


def decode_payload(type_name, request_id, payload):
    """Parses a payload into the dict form (without request_id)."""
    r = _Reader(payload, type_name, request_id != 0 and type_name in REQUEST_TYPES_WITH_TEXT, request_id)
    m = {"type": type_name}
    if type_name == "HELLO":
        m["versions"] = r.list8()
        m["client_id"] = r.text(2, "client_id")
        m["auth_token"] = r.text(2, "auth_token")
        m["compressions"] = r.list8()
        if r.pos != len(r.data):
            # The optional last field: the client's own frame limit.
            m["max_frame_size"] = r.uint(4)
    elif type_name == "WELCOME":
        m["version"] = r.uint(1)
        m["compression"] = r.uint(1)
        m["max_frame_size"] = r.uint(4)
        m["max_concurrent_requests"] = r.uint(4)
        m["client_id"] = r.text(2, "client_id")
    elif type_name == "PREDICT":
        m["deadline_ms"] = r.uint(4)
        m["model"] = r.text(2, "model")
        m["input_hex"] = r.bytes32().hex()
    elif type_name == "BATCH_PREDICT":
        m["deadline_ms"] = r.uint(4)
        m["model"] = r.text(2, "model")
        m["inputs_hex"] = [item.hex() for item in r.bytes_list()]
    elif type_name == "STREAM_OPEN":
        m["deadline_ms"] = r.uint(4)
        m["model"] = r.text(2, "model")
        m["prompt"] = r.text(4, "prompt")
    elif type_name in ("CANCEL", "STATS_REQUEST"):
        pass
    elif type_name in ("PING", "PONG"):
        m["value"] = r.uint(8)
    elif type_name == "RESULT":
        m["output_hex"] = r.bytes32().hex()
    elif type_name == "BATCH_RESULT":
        m["outputs_hex"] = [item.hex() for item in r.bytes_list()]
    elif type_name == "TOKEN":
        m["token"] = r.text(4, "token")
    elif type_name == "STREAM_END":
        m["token_count"] = r.uint(4)
    elif type_name == "STATS":
        m["json"] = r.text(4, "json")
    elif type_name == "ERROR":
        m["status"] = status_name(r.uint(2))
        m["retry_after_ms"] = r.uint(4)
        m["message"] = r.text(2, "message")
    elif type_name == "GOAWAY":
        m["status"] = status_name(r.uint(2))
        m["message"] = r.text(2, "message")
    r.finish()
    return m


def _str(value, size):
    raw = value.encode("utf-8")
    if len(raw) >= 1 << (8 * size):
        raise ValueError("string too long for its length prefix")
    return struct.pack(">H" if size == 2 else ">I", len(raw)) + raw


def _bytes32(raw):
    return struct.pack(">I", len(raw)) + raw


def _list8(values):
    return struct.pack(">B", len(values)) + bytes(values)


def encode_payload(m):
    t = m["type"]
    if t == "HELLO":
        limit = struct.pack(">I", m["max_frame_size"]) if "max_frame_size" in m else b""
        return (_list8(m["versions"]) + _str(m["client_id"], 2) + _str(m["auth_token"], 2)
                + _list8(m["compressions"]) + limit)
    if t == "WELCOME":
        return struct.pack(">BBII", m["version"], m["compression"], m["max_frame_size"],
                           m["max_concurrent_requests"]) + _str(m["client_id"], 2)
    if t == "PREDICT":
        return struct.pack(">I", m["deadline_ms"]) + _str(m["model"], 2) + _bytes32(bytes.fromhex(m["input_hex"]))
    if t == "BATCH_PREDICT":
        items = [bytes.fromhex(h) for h in m["inputs_hex"]]
        return (struct.pack(">I", m["deadline_ms"]) + _str(m["model"], 2) + struct.pack(">I", len(items))
                + b"".join(_bytes32(i) for i in items))
    if t == "STREAM_OPEN":
        return struct.pack(">I", m["deadline_ms"]) + _str(m["model"], 2) + _str(m["prompt"], 4)
    if t in ("CANCEL", "STATS_REQUEST"):
        return b""
    if t in ("PING", "PONG"):
        return struct.pack(">Q", m["value"])
    if t == "RESULT":
        return _bytes32(bytes.fromhex(m["output_hex"]))
    if t == "BATCH_RESULT":
        items = [bytes.fromhex(h) for h in m["outputs_hex"]]
        return struct.pack(">I", len(items)) + b"".join(_bytes32(i) for i in items)
    if t == "TOKEN":
        return _str(m["token"], 4)
    if t == "STREAM_END":
        return struct.pack(">I", m["token_count"])
    if t == "STATS":
        return _str(m["json"], 4)
    if t == "ERROR":
        return struct.pack(">HI", status_code(m["status"]), m["retry_after_ms"]) + _str(m["message"], 2)
    if t == "GOAWAY":
        return struct.pack(">H", status_code(m["status"])) + _str(m["message"], 2)
    raise ValueError("unknown type %r" % t)


# ---------------------------------------------------------------------------------------------
# Frames

def encode_frame(frame, compress=False, threshold=DEFAULT_COMPRESSION_THRESHOLD, level=6):
    """Encodes one frame dict. With `compress`, the payload is deflated when it is at least
    `threshold` bytes, not a handshake frame, and the result is smaller."""
    payload = encode_payload(frame)
    flags = 0
    if compress and len(payload) >= threshold and frame["type"] not in ("HELLO", "WELCOME"):
        packed = struct.pack(">I", len(payload)) + zlib.compress(payload, level)
        if len(packed) < len(payload):
            payload, flags = packed, FLAG_COMPRESSED
    return HEADER.pack(len(payload), VERSION, TYPES[frame["type"]], flags, frame["request_id"]) + payload


class Decoder:
    """Decodes a byte stream into frames, applying every rule of the specification.

    `role` is "server" (decoding what a client sends) or "client". `feed` returns a list of
    results: a frame dict, or a WireError with closes=False for a request error. A connection
    error is raised.
    """

    def __init__(self, role, max_frame_size=DEFAULT_MAX_FRAME_SIZE, compression=False):
        self.role = role
        self.max_frame_size = max_frame_size
        self.compression = compression
        self.buffer = b""

    def feed(self, data, eof=False):
        self.buffer += data
        results = []
        while True:
            result = self._next()
            if result is None:
                break
            results.append(result)
        if eof and self.buffer:
            raise WireError("PROTOCOL_ERROR", "the connection closed %d bytes into a frame" % len(self.buffer))
        return results

    def _next(self):
        if len(self.buffer) < HEADER_SIZE:
            return None
        length, version, type_byte, flags, request_id = HEADER.unpack_from(self.buffer)
        if length > self.max_frame_size:
            raise WireError("FRAME_TOO_LARGE", "frame of %d bytes exceeds %d" % (length, self.max_frame_size))
        if version != VERSION:
            raise WireError("UNSUPPORTED_VERSION", "frame of protocol version %d" % version)
        if type_byte not in TYPE_NAMES:
            raise WireError("PROTOCOL_ERROR", "unknown frame type 0x%02x" % type_byte)
        name = TYPE_NAMES[type_byte]
        if flags & ~KNOWN_FLAGS:
            raise WireError("PROTOCOL_ERROR", "unknown flags 0x%02x" % flags)
        if self.role == "server" and not sent_by_client(type_byte):
            raise WireError("PROTOCOL_ERROR", "%s is sent by servers" % name)
        if self.role == "client" and not sent_by_server(type_byte):
            raise WireError("PROTOCOL_ERROR", "%s is sent by clients" % name)
        if name in CONNECTION_TYPES and request_id != 0:
            raise WireError("PROTOCOL_ERROR", "%s must use request id 0" % name)
        if name not in CONNECTION_TYPES and name != "ERROR" and request_id == 0:
            raise WireError("PROTOCOL_ERROR", "%s must not use request id 0" % name)
        if flags & FLAG_COMPRESSED and name in ("HELLO", "WELCOME"):
            raise WireError("PROTOCOL_ERROR", "%s is never compressed" % name)
        if len(self.buffer) < HEADER_SIZE + length:
            return None
        payload = self.buffer[HEADER_SIZE:HEADER_SIZE + length]
        self.buffer = self.buffer[HEADER_SIZE + length:]
        if flags & FLAG_COMPRESSED:
            payload = self._inflate(payload, name)
        try:
            message = decode_payload(name, request_id, payload)
        except WireError as error:
            if error.closes:
                raise
            return error
        message["request_id"] = request_id
        return message

    def _inflate(self, payload, name):
        if not self.compression:
            raise WireError("PROTOCOL_ERROR", "compressed %s but compression was not negotiated" % name)
        if len(payload) < 4:
            raise WireError("PROTOCOL_ERROR", "compressed %s has no uncompressed length" % name)
        declared = struct.unpack_from(">I", payload)[0]
        if declared > self.max_frame_size:
            raise WireError("FRAME_TOO_LARGE", "declares %d bytes uncompressed" % declared)
        inflater = zlib.decompressobj()
        try:
            # Never produce more than declared + 1 bytes, whatever the input claims.
            out = inflater.decompress(payload[4:], declared + 1)
        except zlib.error as error:
            raise WireError("PROTOCOL_ERROR", "corrupt compressed payload: %s" % error)
        if len(out) != declared:
            raise WireError("PROTOCOL_ERROR", "inflates to a length other than the declared %d" % declared)
        if not inflater.eof:
            raise WireError("PROTOCOL_ERROR", "compressed payload is truncated")
        if inflater.unused_data or inflater.unconsumed_tail:
            raise WireError("PROTOCOL_ERROR", "bytes follow the end of the compressed payload")
        return out
