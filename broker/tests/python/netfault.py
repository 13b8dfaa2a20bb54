"""Cut links between broker processes on loopback. Two kinds of proxy:

- `LinkProxy`, one per directed link (broker i calling broker j) of the controller listener
  (Raft and broker-to-controller RPC): each broker is configured with the proxy address of
  every peer.
- `KafkaRouteProxy`, one per broker in front of its inter-broker Kafka listener (replica
  fetches): every broker dials the same advertised address, so the proxy learns the caller from
  the first request's client id (`broker-<id>-fetcher`, as Kafka's replica fetchers name
  themselves) and applies the cut of that directed link. Other callers (clients) pass.

A cut link is a black hole, as a network partition is: connections are accepted but no byte
passes either way, so callers see timeouts, not refusals; healing resets the connections held
during the cut and lets new ones through."""

from __future__ import annotations

import re
import selectors
import socket
import struct
import threading
import time
from typing import Callable


class LinkProxy:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<target_port> until cut()."""

    def __init__(self, target_port: int, name: str = "link"):
        self.name = name
        self.target_port = target_port
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(256)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._cut = False
        self._closed = False
        self._generation = 0
        self._sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept, name=f"proxy-{name}", daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cut(self) -> None:
        with self._lock:
            self._cut = True

    def heal(self) -> None:
        """Resets every connection that lived through the cut, then lets traffic through."""
        with self._lock:
            self._generation += 1
            held, self._sockets = self._sockets, set()
            self._cut = False
        for s in held:
            _close(s)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            held, self._sockets = self._sockets, set()
        _close(self._listener)
        for s in held:
            _close(s)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _live(self, generation: int) -> bool:
        return not self._closed and self._generation == generation

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            generation = self._generation
            self._sockets.add(client)
        # A connection made during a cut is held, as if the SYN-ACK never came back.
        while self._cut and self._live(generation):
            time.sleep(0.02)
        if not self._live(generation):
            _close(client)
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
        except OSError:
            _close(client)
            return
        upstream.settimeout(None)
        with self._lock:
            if not self._live(generation):
                _close(client)
                _close(upstream)
                return
            self._sockets.add(upstream)
        other = {client: upstream, upstream: client}
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ)
        sel.register(upstream, selectors.EVENT_READ)
        try:
            while self._live(generation):
                if self._cut:
                    time.sleep(0.02)  # bytes stay in the kernel buffers: nothing passes
                    continue
                for key, _ in sel.select(timeout=0.05):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    other[key.fileobj].sendall(data)
        except OSError:
            return
        finally:
            sel.close()
            _close(client)
            _close(upstream)


def _close(s: socket.socket) -> None:
    try:
        s.close()
    except OSError:
        pass


class KafkaRouteProxy:
    """Forwards 127.0.0.1:<port> to a broker's inter-broker listener; `blocked(src)` says whether
    the link from broker `src` to it is cut (src None: not a broker, never blocked)."""

    def __init__(self, target_port: int, blocked: Callable[[int | None], bool], name: str = "route"):
        self.name = name
        self.target_port = target_port
        self._blocked = blocked
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(256)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._closed = False
        # Connections that were blocked at some point: reset on heal, like LinkProxy's.
        self._held: dict[socket.socket, list[socket.socket]] = {}
        self._all: set[socket.socket] = set()
        threading.Thread(target=self._accept, name=f"route-{name}", daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def heal(self) -> None:
        with self._lock:
            held, self._held = self._held, {}
        for group in held.values():
            for s in group:
                _close(s)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            every, self._all = self._all, set()
        _close(self._listener)
        for s in every:
            _close(s)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _hold(self, client: socket.socket, *others: socket.socket) -> bool:
        """Marks the connection as one to reset on heal; False once it was reset."""
        with self._lock:
            if self._closed or (client not in self._all):
                return False
            self._held[client] = [client, *others]
            return True

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self._all.add(client)
        upstream = None
        try:
            src = _caller(client)
            while self._blocked(src):
                if not self._hold(client):
                    return
                time.sleep(0.02)
                if client.fileno() < 0:
                    return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                return
            upstream.settimeout(None)
            with self._lock:
                self._all.add(upstream)
                if client in self._held:
                    self._held[client].append(upstream)
            other = {client: upstream, upstream: client}
            sel = selectors.DefaultSelector()
            sel.register(client, selectors.EVENT_READ)
            sel.register(upstream, selectors.EVENT_READ)
            try:
                while not self._closed and client.fileno() >= 0:
                    if self._blocked(src):
                        self._hold(client, upstream)
                        time.sleep(0.02)  # bytes stay in the kernel buffers: nothing passes
                        continue
                    for key, _ in sel.select(timeout=0.05):
                        data = key.fileobj.recv(65536)
                        if not data:
                            return
                        other[key.fileobj].sendall(data)
            finally:
                sel.close()
        except OSError:
            return
        finally:
            with self._lock:
                self._all.discard(client)
                self._held.pop(client, None)
                if upstream is not None:
                    self._all.discard(upstream)
            _close(client)
            if upstream is not None:
                _close(upstream)


_FETCHER_CLIENT_ID = re.compile(rb"^broker-(\d+)-fetcher")


def _caller(client: socket.socket) -> int | None:
    """The broker id in the first request's client id (peeked, not consumed), or None."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        head = client.recv(256, socket.MSG_PEEK)
        if not head:
            return None
        # size int32, api_key int16, api_version int16, correlation_id int32, client_id string
        if len(head) >= 14:
            (length,) = struct.unpack(">h", head[12:14])
            if length < 0:
                return None
            if len(head) >= 14 + length:
                m = _FETCHER_CLIENT_ID.match(head[14:14 + length])
                return int(m.group(1)) if m else None
        time.sleep(0.01)
    return None


class Links:
    """Every directed link of an N-node cluster: links[(i, j)] carries broker i's calls to j."""

    def __init__(self, target_ports: dict[int, int], kafka_ports: dict[int, int] | None = None):
        """`target_ports`: each node's controller listener; `kafka_ports`: each node's
        inter-broker Kafka listener, reached through `route(j)` (cut with the same links)."""
        self.proxies: dict[tuple[int, int], LinkProxy] = {}
        for i in target_ports:
            for j, port in target_ports.items():
                if i != j:
                    self.proxies[(i, j)] = LinkProxy(port, f"{i}->{j}")
        self.routes: dict[int, KafkaRouteProxy] = {
            j: KafkaRouteProxy(port, lambda src, j=j: self._is_cut(src, j), f"kafka->{j}")
            for j, port in (kafka_ports or {}).items()
        }

    def _is_cut(self, src: int | None, dst: int) -> bool:
        link = self.proxies.get((src, dst)) if src is not None else None
        return link is not None and link._cut

    def route(self, dst: int) -> str:
        """The address other brokers dial for node `dst`'s inter-broker Kafka listener."""
        return self.routes[dst].address

    def address(self, src: int, dst: int) -> str:
        return self.proxies[(src, dst)].address

    def cut(self, a: int, b: int) -> None:
        """Cuts both directions between nodes a and b."""
        self.proxies[(a, b)].cut()
        self.proxies[(b, a)].cut()

    def isolate(self, node: int) -> None:
        for (i, j), p in self.proxies.items():
            if node in (i, j):
                p.cut()

    def heal_all(self) -> None:
        for p in self.proxies.values():
            p.heal()
        for r in self.routes.values():
            r.heal()

    def close(self) -> None:
        for p in self.proxies.values():
            p.close()
        for r in self.routes.values():
            r.close()
