"""A counting, delaying TCP proxy for SMTP benchmarks (loopback only, no netem needed).

Each client connection gets its own upstream connection, bound to the client's own source
address (so a client speaking from 127.0.0.2 still looks "external" to Postfix). Every chunk the
server sends is held for ``delay`` seconds, so every reply the client waits for costs one
``delay`` - a round-trip time; the banner of a new connection is held for two (TCP handshake
plus banner), as it would be across a real network.

Counts, per proxy: ``connections``; ``commands`` (command lines the client sent); and
``round_trips``: how many times the client waited for the server: counted when a server chunk is
delivered to a client that has spoken since the previous delivery (or is waiting for its banner)
and has not closed its side - a client that sends QUIT and hangs up without reading the 221 did
not wait for it. Commands pipelined together count once, as they cost one RTT. With no added
delay a client's pipelined writes can interleave with the replies and be over-counted; the
figures with a delay are the reliable ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

from lab.process import free_port


class CountingProxy:
    def __init__(self, upstream: tuple[str, int], delay: float = 0.0,
                 host: str = "127.0.0.1", port: int | None = None) -> None:
        self.upstream = upstream
        self.delay = delay
        self.host = host
        self.port = port or free_port(host)
        self.connections = 0
        self.commands = 0
        self.round_trips = 0
        self.client_lines: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def reset(self) -> None:
        self.connections = self.commands = self.round_trips = 0
        self.client_lines = []

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        source = writer.get_extra_info("peername")[0]
        try:
            up_reader, up_writer = await asyncio.open_connection(
                *self.upstream, local_addr=(source, 0))
        except OSError:
            writer.close()
            return
        state = {"spoke": True, "eof": False, "first": True}  # waiting for the banner
        await asyncio.gather(self._to_server(reader, up_writer, state),
                             self._to_client(up_reader, writer, state),
                             return_exceptions=True)

    async def _to_server(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         state: dict) -> None:
        pending = b""
        try:
            while data := await reader.read(65536):
                state["spoke"] = True
                pending += data
                *lines, pending = pending.split(b"\n")
                self.commands += len(lines)
                self.client_lines.extend(line.decode("latin-1").rstrip("\r") for line in lines)
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            state["eof"] = True
            with contextlib.suppress(OSError):
                writer.close()

    async def _to_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         state: dict) -> None:
        """Server -> client: each chunk sent ``delay`` after it arrived (order kept)."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def pump() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    return
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if state["eof"]:
                    continue  # the client has hung up: nobody waits for this
                if state["spoke"]:
                    self.round_trips += 1
                    state["spoke"] = False
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(pump())
        try:
            while data := await reader.read(65536):
                extra = self.delay if state.pop("first", False) else 0.0
                queue.put_nowait((time.monotonic() + self.delay + extra, data))
        except OSError:
            pass
        finally:
            queue.put_nowait((0.0, b""))
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await sender
            with contextlib.suppress(OSError):
                writer.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._client, self.host, self.port,
                                            family=socket.AF_INET, reuse_address=True)
        self._ready.set()
        async with server:
            await self._stop.wait()

    def start(self) -> CountingProxy:
        def target() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._serve())
            self._loop.close()

        self._thread = threading.Thread(target=target, name="smtpproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
