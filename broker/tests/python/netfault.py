"""Cut links between broker processes on loopback: a TCP proxy per directed link (broker i
calling broker j), which the test can cut and heal. A cut link is a black hole, as a network
partition is: connections are accepted but no byte passes either way, so callers see timeouts,
not refusals; healing resets the connections held during the cut and lets new ones through."""

from __future__ import annotations

import selectors
import socket
import threading
import time


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


class Links:
    """Every directed link of an N-node cluster: links[(i, j)] carries broker i's calls to j."""

    def __init__(self, target_ports: dict[int, int]):
        self.proxies: dict[tuple[int, int], LinkProxy] = {}
        for i in target_ports:
            for j, port in target_ports.items():
                if i != j:
                    self.proxies[(i, j)] = LinkProxy(port, f"{i}->{j}")

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

    def close(self) -> None:
        for p in self.proxies.values():
            p.close()
