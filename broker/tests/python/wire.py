"""Hand-written Kafka wire encoding for the raw-socket tests.

Independent of every Kafka client library on purpose: the bad-input tests must be able to send
bytes no client would send, and the encodings here are a second, separate reading of the spec.
Only the non-flexible request versions are used (ApiVersions v0, Produce v3, Fetch v4 and v11), so no
tagged fields or compact encodings are needed, except the request header v2 for ApiVersions v99.
"""

from __future__ import annotations

import socket
import struct
import time

# ---------------------------------------------------------------------------------------------
# CRC-32C (Castagnoli), table driven. Check value: crc32c(b"123456789") == 0xE3069283.

_CRC32C_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC32C_TABLE.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283

# ---------------------------------------------------------------------------------------------
# Primitive encoders


def i8(v: int) -> bytes:
    return struct.pack(">b", v)


def i16(v: int) -> bytes:
    return struct.pack(">h", v)


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def i64(v: int) -> bytes:
    return struct.pack(">q", v)


def string(s: str | None) -> bytes:
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def nbytes(b: bytes | None) -> bytes:
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def array(items: list[bytes]) -> bytes:
    return i32(len(items)) + b"".join(items)


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(v: int) -> bytes:
    """Zig-zag signed varint (varlong too: Python ints are unbounded)."""
    return uvarint((v << 1) ^ (v >> 63))


# ---------------------------------------------------------------------------------------------
# Record batch v2 (magic 2)


def record(offset_delta: int, ts_delta: int, key: bytes | None, value: bytes | None,
           headers: list[tuple[str, bytes | None]] = ()) -> bytes:
    body = bytearray()
    body += i8(0)  # attributes
    body += varint(ts_delta)
    body += varint(offset_delta)
    if key is None:
        body += varint(-1)
    else:
        body += varint(len(key)) + key
    if value is None:
        body += varint(-1)
    else:
        body += varint(len(value)) + value
    body += varint(len(headers))
    for hk, hv in headers:
        kb = hk.encode()
        body += varint(len(kb)) + kb
        if hv is None:
            body += varint(-1)
        else:
            body += varint(len(hv)) + hv
    return varint(len(body)) + bytes(body)


def record_batch(records: list[tuple[bytes | None, bytes | None]], base_timestamp: int) -> bytes:
    """An uncompressed, non-transactional, non-idempotent batch; record i has timestamp base+i."""
    recs = b"".join(record(i, i, k, v) for i, (k, v) in enumerate(records))
    n = len(records)
    after_crc = (
        i16(0)  # attributes: no compression, CreateTime
        + i32(n - 1)  # lastOffsetDelta
        + i64(base_timestamp)
        + i64(base_timestamp + n - 1)  # maxTimestamp
        + i64(-1)  # producerId
        + i16(-1)  # producerEpoch
        + i32(-1)  # baseSequence
        + i32(n)
        + recs
    )
    crc = crc32c(after_crc)
    after_length = i32(-1) + i8(2) + struct.pack(">I", crc) + after_crc  # leader epoch, magic, crc
    return i64(0) + i32(len(after_length)) + after_length


# ---------------------------------------------------------------------------------------------
# Request framing


def request_header_v1(api_key: int, api_version: int, correlation_id: int,
                      client_id: str | None = "fjord-wire-test") -> bytes:
    return i16(api_key) + i16(api_version) + i32(correlation_id) + string(client_id)


def request_header_v2(api_key: int, api_version: int, correlation_id: int,
                      client_id: str | None = "fjord-wire-test") -> bytes:
    return request_header_v1(api_key, api_version, correlation_id, client_id) + uvarint(0)


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


def api_versions_v0_request(correlation_id: int) -> bytes:
    return frame(request_header_v1(18, 0, correlation_id))


def produce_v3_request(correlation_id: int, topic: str, partition: int, batch: bytes,
                       acks: int = -1, timeout_ms: int = 10000) -> bytes:
    body = (
        string(None)  # transactional_id
        + i16(acks)
        + i32(timeout_ms)
        + array([string(topic) + array([i32(partition) + nbytes(batch)])])
    )
    return frame(request_header_v1(0, 3, correlation_id) + body)


def fetch_v4_request(correlation_id: int, topic: str, partition: int, offset: int,
                     max_wait_ms: int, min_bytes: int = 1, max_bytes: int = 1 << 20) -> bytes:
    body = (
        i32(-1)  # replica_id
        + i32(max_wait_ms)
        + i32(min_bytes)
        + i32(max_bytes)
        + i8(0)  # isolation_level READ_UNCOMMITTED
        + array([string(topic) + array([i32(partition) + i64(offset) + i32(max_bytes)])])
    )
    return frame(request_header_v1(1, 4, correlation_id) + body)


def fetch_v11_request(correlation_id: int, topic: str, partition: int, offset: int, rack_id: str = "",
                      max_wait_ms: int = 0, min_bytes: int = 0, max_bytes: int = 1 << 20,
                      current_leader_epoch: int = -1) -> bytes:
    """A consumer's Fetch v11 (KIP-392: `rack_id`), the last non-flexible version."""
    body = (
        i32(-1)  # replica_id: a consumer
        + i32(max_wait_ms)
        + i32(min_bytes)
        + i32(max_bytes)
        + i8(0)  # isolation_level READ_UNCOMMITTED
        + i32(0)  # session_id
        + i32(-1)  # session_epoch: no session
        + array([string(topic) + array([i32(partition) + i32(current_leader_epoch) + i64(offset)
                                        + i64(-1) + i32(max_bytes)])])
        + array([])  # forgotten_topics_data
        + string(rack_id)
    )
    return frame(request_header_v1(1, 11, correlation_id) + body)


# ---------------------------------------------------------------------------------------------
# Response reading / parsing


class ConnectionClosed(Exception):
    pass


def connect(addr: str, timeout: float = 10.0) -> socket.socket:
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionClosed(f"EOF after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Returns (correlation_id, body) of one response (response header v0)."""
    try:
        (size,) = struct.unpack(">i", recv_exact(sock, 4))
        payload = recv_exact(sock, size)
    except ConnectionResetError as e:
        raise ConnectionClosed(str(e)) from e
    (corr,) = struct.unpack(">i", payload[:4])
    return corr, payload[4:]


def wait_closed(sock: socket.socket, timeout: float) -> str:
    """Waits until the peer closes `sock`. Returns how ('eof' or 'reset'); raises AssertionError
    if the connection is still open after `timeout` seconds or the peer sends data instead."""
    deadline = time.monotonic() + timeout
    received = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"connection still open after {timeout}s (received {received[:64]!r})")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
        except socket.timeout:
            continue
        if not chunk:
            return "eof"
        received += chunk


class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ValueError(f"short response: need {size} bytes at {self.pos}, have {len(self.data)}")
        (v,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return v

    def i8(self):
        return self.take(">b")

    def i16(self):
        return self.take(">h")

    def i32(self):
        return self.take(">i")

    def i64(self):
        return self.take(">q")

    def string(self):
        n = self.i16()
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s

    def nbytes(self):
        n = self.i32()
        if n < 0:
            return None
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def remaining(self) -> int:
        return len(self.data) - self.pos


def parse_api_versions_v0(body: bytes) -> tuple[int, dict[int, tuple[int, int]]]:
    r = Reader(body)
    error = r.i16()
    n = r.i32()
    keys = {}
    for _ in range(n):
        k = r.i16()
        keys[k] = (r.i16(), r.i16())
    assert r.remaining() == 0, f"{r.remaining()} trailing bytes in ApiVersions v0 response"
    return error, keys


def parse_produce_v3(body: bytes) -> dict[tuple[str, int], tuple[int, int, int]]:
    """{(topic, partition): (error_code, base_offset, log_append_time)}"""
    r = Reader(body)
    out = {}
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            out[(topic, p)] = (r.i16(), r.i64(), r.i64())
    r.i32()  # throttle_time_ms
    assert r.remaining() == 0, f"{r.remaining()} trailing bytes in Produce v3 response"
    return out


def parse_fetch_v4(body: bytes) -> dict[tuple[str, int], dict]:
    r = Reader(body)
    r.i32()  # throttle_time_ms
    out = {}
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            err = r.i16()
            hw = r.i64()
            lso = r.i64()
            n_aborted = r.i32()
            for _ in range(max(n_aborted, 0)):
                r.i64()
                r.i64()
            records = r.nbytes()
            out[(topic, p)] = {"error_code": err, "high_watermark": hw,
                               "last_stable_offset": lso, "records": records}
    assert r.remaining() == 0, f"{r.remaining()} trailing bytes in Fetch v4 response"
    return out


def parse_fetch_v11(body: bytes) -> dict[tuple[str, int], dict]:
    r = Reader(body)
    r.i32()  # throttle_time_ms
    top_error = r.i16()
    r.i32()  # session_id
    out = {}
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            part = {"error_code": r.i16(), "high_watermark": r.i64(), "last_stable_offset": r.i64(),
                    "log_start_offset": r.i64()}
            for _ in range(max(r.i32(), 0)):  # aborted transactions
                r.i64()
                r.i64()
            part["preferred_read_replica"] = r.i32()
            part["records"] = r.nbytes()
            part["top_error_code"] = top_error
            out[(topic, p)] = part
    assert r.remaining() == 0, f"{r.remaining()} trailing bytes in Fetch v11 response"
    return out


def parse_record_batches(data: bytes) -> list[dict]:
    """Decodes uncompressed v2 batches into [{'offset', 'timestamp', 'key', 'value'}].
    A partial trailing batch (allowed in fetch responses) is ignored."""
    out = []
    pos = 0
    while pos + 12 <= len(data):
        base_offset, batch_len = struct.unpack_from(">qi", data, pos)
        end = pos + 12 + batch_len
        if end > len(data):
            break
        r = Reader(data[pos + 12:end])
        r.i32()  # leader epoch
        magic = r.i8()
        assert magic == 2, f"magic {magic}"
        crc = r.take(">I")
        assert crc == crc32c(data[pos + 21:end]), "CRC mismatch in fetched batch"
        attrs = r.i16()
        assert attrs & 0x7 == 0, "compressed batch not supported by this parser"
        r.i32()  # last offset delta
        base_ts = r.i64()
        r.i64()  # max ts
        r.i64()
        r.i16()
        r.i32()
        count = r.i32()
        for _ in range(count):
            _len = _read_varint(r)
            r.i8()
            ts_delta = _read_varint(r)
            off_delta = _read_varint(r)
            klen = _read_varint(r)
            key = None if klen < 0 else r.data[r.pos:r.pos + klen]
            r.pos += max(klen, 0)
            vlen = _read_varint(r)
            value = None if vlen < 0 else r.data[r.pos:r.pos + vlen]
            r.pos += max(vlen, 0)
            for _ in range(_read_varint(r)):
                hk = _read_varint(r)
                r.pos += hk
                hv = _read_varint(r)
                r.pos += max(hv, 0)
            out.append({"offset": base_offset + off_delta, "timestamp": base_ts + ts_delta,
                        "key": key, "value": value})
        pos = end
    return out


def _read_varint(r: Reader) -> int:
    shift = 0
    result = 0
    while True:
        b = r.data[r.pos]
        r.pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
    return (result >> 1) ^ -(result & 1)


def roundtrip(addr: str, request: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    with connect(addr, timeout) as s:
        s.sendall(request)
        return read_response(s)


def list_offsets_v1_request(correlation_id: int, topic: str, partition: int, timestamp: int) -> bytes:
    body = i32(-1) + array([string(topic) + array([i32(partition) + i64(timestamp)])])
    return frame(request_header_v1(2, 1, correlation_id) + body)


def parse_list_offsets_v1(body: bytes) -> dict[tuple[str, int], tuple[int, int, int]]:
    """{(topic, partition): (error_code, timestamp, offset)}"""
    r = Reader(body)
    out = {}
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            out[(topic, p)] = (r.i16(), r.i64(), r.i64())
    assert r.remaining() == 0, f"{r.remaining()} trailing bytes in ListOffsets v1 response"
    return out
