"""Captures real Produce request frames from confluent-kafka (librdkafka) for the decode/validate
fuzz target (broker/tests/fuzz_records.rs): starts the broker with its advertised listener on a
small recording proxy, produces a few keyed records with headers under each codec, and writes
each codec's first Produce frame (size prefix stripped) to produce-frames/<codec>.bin.

    FJORD_BROKER_BIN=$PWD/target/debug/fjord-broker .venv/bin/python broker/tests/data/capture_produce_frames.py
"""

import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Producer

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def main() -> None:
    broker_port, proxy_port, http_port = free_port(), free_port(), free_port()
    data = tempfile.mkdtemp(prefix="fjord-capture-")
    proc = subprocess.Popen([os.environ["FJORD_BROKER_BIN"], "--listen", f"127.0.0.1:{broker_port}",
                             "--advertised-listener", f"127.0.0.1:{proxy_port}", "--data-dir", data,
                             "--http-listen", f"127.0.0.1:{http_port}", "--set", "admin.listen=127.0.0.1:0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    frames: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", proxy_port))

    def pump_client(client, upstream):
        while True:
            head = recv_exact(client, 4)
            if head is None:
                break
            body = recv_exact(client, struct.unpack(">i", head)[0])
            if body is None:
                break
            if struct.unpack(">h", body[:2])[0] == 0:
                frames.append(body)
            upstream.sendall(head + body)
        upstream.close()

    def pump_back(upstream, client):
        while chunk := upstream.recv(65536):
            client.sendall(chunk)
        client.close()

    def accept():
        while True:
            client, _ = listener.accept()
            upstream = socket.create_connection(("127.0.0.1", broker_port))
            threading.Thread(target=pump_client, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pump_back, args=(upstream, client), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    time.sleep(1.5)
    try:
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
            frames.clear()
            p = Producer({"bootstrap.servers": f"127.0.0.1:{proxy_port}", "compression.type": codec,
                          "linger.ms": 50, "enable.idempotence": codec == "zstd"})
            for i in range(20):
                p.produce(f"capture-{codec}", key=f"key-{i}".encode(), value=(f"value-{i}-" * (i + 1)).encode(),
                          headers=[("h", f"{i}".encode())], timestamp=1_700_000_000_000 + i)
            assert p.flush(20) == 0, codec
            assert frames, codec
            (HERE / "produce-frames" / f"{codec}.bin").write_bytes(frames[0])
            print(codec, len(frames[0]), "bytes")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    sys.exit(main())
