"""A small TCP proxy on 127.0.0.1 for network faults: pass bytes, black-hole them, or reset connections.

Threads, not the test's event loop: it keeps forwarding while the test's loop is blocked, and under
asyncio and trio alike. A black hole holds the bytes (as a partitioned network does: TCP retransmits them
when it heals) and answers nothing; ``heal()`` delivers what was held.
"""

from __future__ import annotations

import select
import socket
import threading
from typing import List, Optional, Tuple

__all__ = ("TcpProxy", "proxy_url")


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``upstream``; ``black_hole()``, ``heal()``, ``reset_all()``."""

    def __init__(self, upstream: Tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._pairs: List[Tuple[socket.socket, socket.socket, threading.Event]] = []
        self._frozen_new = False  # black-hole connections made from now on too
        self._closed = threading.Event()
        self.reads_from_clients = 0  # chunks read from clients: at least one per client write, merged at most
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url_netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    def black_hole(self, *, new_connections: bool = True) -> None:
        """Stop forwarding on every connection (bytes are held, nothing is answered); with
        ``new_connections`` False, connections made from now on still pass."""
        with self._lock:
            self._frozen_new = new_connections
            for _, _, flowing in self._pairs:
                flowing.clear()

    def heal(self) -> None:
        """Forward again, held bytes first."""
        with self._lock:
            self._frozen_new = False
            for _, _, flowing in self._pairs:
                flowing.set()

    def reset_all(self) -> None:
        """Reset every connection (RST to both sides)."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b, flowing in pairs:
            for sock in (a, b):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    sock.close()
                except OSError:
                    pass
            flowing.set()

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self.reset_all()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            flowing = threading.Event()
            with self._lock:
                if not self._frozen_new:
                    flowing.set()
                self._pairs.append((client, server, flowing))
            threading.Thread(target=self._pump, args=(client, server, flowing), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket, flowing: threading.Event) -> None:
        peer = {a: b, b: a}
        try:
            while not self._closed.is_set():
                if not flowing.wait(0.05):
                    continue
                readable, _, _ = select.select([a, b], [], [], 0.05)
                if not flowing.is_set():
                    continue  # frozen meanwhile: what arrived stays in the kernel's buffers
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is a:
                        self.reads_from_clients += 1
                    peer[sock].sendall(data)
        except OSError:
            pass
        finally:
            for sock in (a, b):
                try:
                    sock.close()
                except OSError:
                    pass
            with self._lock:
                self._pairs = [p for p in self._pairs if p[0] is not a]


def proxy_url(proxy: TcpProxy, db: int = 0, auth: Optional[str] = None) -> str:
    """A redis:// URL through ``proxy``."""
    return f"redis://{auth + '@' if auth else ''}{proxy.url_netloc}/{db}"
