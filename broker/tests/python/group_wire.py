"""Hand-written group-API requests for the bad-input tests (non-flexible versions only), in
the style of wire.py: JoinGroup v5, SyncGroup v3, Heartbeat v3, LeaveGroup v3, OffsetCommit v7.
Clients never send most of these mistakes, so the tests build them by hand."""

from __future__ import annotations

import socket

from wire import Reader, array, frame, i16, i32, i64, nbytes, read_response, request_header_v1, string


class Conn:
    """One connection; call(api_key, version, body) -> response Reader."""

    def __init__(self, addr: str, timeout: float = 30.0):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.correlation = 0

    def call(self, api_key: int, version: int, body: bytes) -> Reader:
        self.correlation += 1
        self.sock.sendall(frame(request_header_v1(api_key, version, self.correlation) + body))
        cid, payload = read_response(self.sock)
        assert cid == self.correlation, f"correlation id {cid}, expected {self.correlation}"
        return Reader(payload)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def consumer_subscription(topics: list[str]) -> bytes:
    """ConsumerProtocolSubscription v0: topics and empty user data."""
    return i16(0) + array([string(t) for t in topics]) + nbytes(None)


def join_group(c: Conn, group: str, member_id: str = "", instance: str | None = None,
               protocol_type: str = "consumer", protocols=(("range", b""),),
               session_ms: int = 10000, rebalance_ms: int = 10000) -> dict:
    body = (string(group) + i32(session_ms) + i32(rebalance_ms) + string(member_id) + string(instance)
            + string(protocol_type) + array([string(n) + nbytes(m) for n, m in protocols]))
    r = c.call(11, 5, body)
    r.i32()  # throttle
    out = {"error": r.i16(), "generation": r.i32(), "protocol": r.string(), "leader": r.string(),
           "member_id": r.string()}
    members = []
    for _ in range(r.i32()):
        members.append((r.string(), r.string(), r.nbytes()))
    out["members"] = members
    return out


def sync_group(c: Conn, group: str, generation: int, member_id: str, assignments=(),
               instance: str | None = None) -> dict:
    body = (string(group) + i32(generation) + string(member_id) + string(instance)
            + array([string(m) + nbytes(a) for m, a in assignments]))
    r = c.call(14, 3, body)
    r.i32()
    return {"error": r.i16(), "assignment": r.nbytes()}


def heartbeat(c: Conn, group: str, generation: int, member_id: str, instance: str | None = None) -> int:
    r = c.call(12, 3, string(group) + i32(generation) + string(member_id) + string(instance))
    r.i32()
    return r.i16()


def leave_group(c: Conn, group: str, members: list[tuple[str, str | None]]) -> tuple[int, list[int]]:
    r = c.call(13, 3, string(group) + array([string(m) + string(i) for m, i in members]))
    r.i32()
    error = r.i16()
    codes = []
    for _ in range(r.i32()):
        r.string(), r.string()
        codes.append(r.i16())
    return error, codes


def offset_commit(c: Conn, group: str, generation: int, member_id: str, offsets: dict,
                  instance: str | None = None) -> dict:
    """offsets: {(topic, partition): offset}; returns {(topic, partition): error_code}."""
    by_topic: dict[str, list[tuple[int, int]]] = {}
    for (t, p), o in offsets.items():
        by_topic.setdefault(t, []).append((p, o))
    topics = [string(t) + array([i32(p) + i64(o) + i32(-1) + string("") for p, o in ps])
              for t, ps in by_topic.items()]
    r = c.call(8, 7, string(group) + i32(generation) + string(member_id) + string(instance) + array(topics))
    r.i32()
    out = {}
    for _ in range(r.i32()):
        t = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            out[(t, p)] = r.i16()
    return out


def find_coordinator(c: Conn, group: str) -> tuple[int, int]:
    """FindCoordinator v1: (error_code, node_id)."""
    r = c.call(10, 1, string(group) + bytes([0]))
    r.i32()
    error = r.i16()
    r.string()
    return error, r.i32()
