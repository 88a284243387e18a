"""A small TCP proxy for fault injection (latency, stalls, resets, refusals) in tests.

Runs an asyncio loop in a daemon thread, listens on 127.0.0.1 and forwards every connection
to the one target it was given. Knobs can be changed at any time from the test's thread:

    with TcpProxy("127.0.0.1", db_port) as proxy:
        proxy.latency_s = 0.05      # one way, per chunk; a round trip gains 2x
        proxy.stall(); proxy.unstall()
        proxy.reset_all()           # RST every open connection
        proxy.reset_after_bytes(200)  # next connection: RST once 200 bytes went client->server
        proxy.refuse = True         # accept, then RST at once
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_EOF, _RESET = object(), object()
C2S, S2C = "c2s", "s2c"


@dataclass(eq=False)
class _Conn:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    budget: int | None  # client->server bytes left before an RST; None = unlimited
    last_dir: str | None = None


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with RST rather than FIN: SO_LINGER (on, 0 s), then close."""
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


class TcpProxy:
    """Forward 127.0.0.1:`port` to target_host:target_port, with runtime fault knobs."""

    def __init__(self, target_host: str, target_port: int, listen_port: int = 0,
                 latency_s: float = 0.0, timeout: float = 10.0) -> None:
        self.target = (target_host, target_port)
        self.port = listen_port
        self.latency_s = latency_s
        self.refuse = False
        self.timeout = timeout
        self._reset_after: int | None = None
        self._reset_left = 0
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy",
                                        daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._closed = False
        self.reset_counters()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> TcpProxy:
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(self.timeout)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop listening, drop every connection, stop the loop and join its thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(self.timeout)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(self.timeout)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- knobs -------------------------------------------------------------------------------
    def stall(self) -> None:
        """Stop forwarding in both directions; sockets stay open, bytes are held (not lost)."""
        self._call(self._flowing.clear)

    def unstall(self) -> None:
        self._call(self._flowing.set)

    def reset_all(self) -> None:
        """Abort every open connection with RST (both the client and the server side)."""
        self._call(lambda: [self._reset(c) for c in list(self._conns)])

    def reset_after_bytes(self, n: int | None, connections: int = 1,
                          existing: bool = False) -> None:
        """RST each of the next `connections` connections once n bytes went client->server
        (the bytes up to n are forwarded). existing=True also arms the open connections,
        counting from now. n=None disarms."""
        def arm() -> None:
            self._reset_after, self._reset_left = n, (connections if n is not None else 0)
            for c in self._conns:
                if n is None or existing:
                    c.budget = n
        self._call(arm)

    def reset_counters(self) -> None:
        self.connections_accepted = 0
        self.bytes_client_to_server = 0
        self.bytes_server_to_client = 0
        self.round_trips = 0  # client->server chunks that follow a server->client chunk

    @property
    def active_connections(self) -> int:
        return len(self._conns)

    # -- loop side ---------------------------------------------------------------------------
    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run fn on the loop thread and wait, so a knob has taken effect when this returns."""
        async def run() -> Any:
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(self.timeout)

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        self._server.close()
        for c in list(self._conns):
            c.client.transport.abort()
            c.server.transport.abort()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        self.connections_accepted += 1
        conn = None
        try:
            if self.refuse:
                _rst(writer)
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*self.target), self.timeout)
            except (TimeoutError, OSError):
                _rst(writer)  # the client sees what a dead server looks like
                return
            budget = None
            if self._reset_left > 0:
                budget, self._reset_left = self._reset_after, self._reset_left - 1
            conn = _Conn(writer, up_writer, budget)
            self._conns.add(conn)
            await asyncio.gather(self._pump(conn, reader, up_writer, C2S),
                                 self._pump(conn, up_reader, writer, S2C))
        except asyncio.CancelledError:
            pass  # close(); on 3.11 a cancelled handler task makes asyncio log a spurious error
        finally:
            if conn is not None:
                self._conns.discard(conn)
                conn.server.transport.abort()
            writer.transport.abort()
            self._tasks.discard(task)

    async def _pump(self, conn: _Conn, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    direction: str) -> None:
        # Reader and writer are separate tasks so that each chunk is delivered at
        # arrival + latency: throughput is not throttled to one chunk per delay.
        queue: asyncio.Queue = asyncio.Queue()
        deliver = asyncio.create_task(self._deliver(conn, queue, dst, direction))
        try:
            await self._read(conn, src, queue, direction)
            await deliver
        finally:
            deliver.cancel()  # when cancelled by close() while reading

    async def _read(self, conn: _Conn, src: asyncio.StreamReader, queue: asyncio.Queue,
                    direction: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    queue.put_nowait((loop.time(), _EOF))
                    break
                if direction == C2S:
                    if conn.last_dir == S2C:
                        self.round_trips += 1
                    if conn.budget is not None and len(data) >= conn.budget:
                        queue.put_nowait((loop.time(), data[:conn.budget]))
                        queue.put_nowait((loop.time(), _RESET))
                        break
                    if conn.budget is not None:
                        conn.budget -= len(data)
                conn.last_dir = direction
                queue.put_nowait((loop.time(), data))
        except OSError:  # the source reset: pass the reset on
            queue.put_nowait((loop.time(), _RESET))

    async def _deliver(self, conn: _Conn, queue: asyncio.Queue, dst: asyncio.StreamWriter,
                       direction: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                arrived, item = await queue.get()
                # Re-read latency_s while waiting so that lowering it takes effect promptly.
                while (wait := arrived + self.latency_s - loop.time()) > 0:
                    await asyncio.sleep(min(wait, 0.05))
                await self._flowing.wait()
                if item is _RESET:
                    return self._reset(conn)
                if item is _EOF:
                    if dst.can_write_eof() and not dst.is_closing():
                        dst.write_eof()
                    return
                dst.write(item)
                if direction == C2S:
                    self.bytes_client_to_server += len(item)
                else:
                    self.bytes_server_to_client += len(item)
                await dst.drain()
        except OSError:
            self._reset(conn)

    def _reset(self, conn: _Conn) -> None:
        _rst(conn.client)
        _rst(conn.server)
