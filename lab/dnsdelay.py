"""A delaying DNS forwarder on loopback: every query waits ``delay`` seconds, then goes upstream.

Stands in for a distant resolver where ``tc netem`` is not available: it listens on UDP and TCP
(``host``/``port``), holds each query for ``delay`` seconds, forwards it unchanged to the real
server (rbldnsd, knotd) over the same transport and relays the answer back. Every query is handled
concurrently, so N parallel queries cost one delay, N sequential queries cost N delays, as they
would against a resolver ``delay`` seconds away.

Use it in a thread (``with DelayingForwarder(upstream, 0.1) as fwd: fwd.nameserver``) or as a
process: ``python -m lab.dnsdelay --listen 127.0.0.1:53 --upstream 127.0.0.1:5300
--delay-ms 100``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import struct
import threading

from lab.process import free_port


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class _UDPFront(asyncio.DatagramProtocol):
    def __init__(self, forwarder: DelayingForwarder) -> None:
        self.forwarder = forwarder
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        asyncio.get_running_loop().create_task(self._answer(data, addr))

    async def _answer(self, query: bytes, addr: tuple[str, int]) -> None:
        self.forwarder.queries += 1
        await asyncio.sleep(self.forwarder.delay)
        answer = await self.forwarder.ask_udp(query)
        if answer is not None and self.transport is not None:
            self.transport.sendto(answer, addr)


class _UDPBack(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.answer.done():
            self.answer.set_result(data)


class DelayingForwarder:
    """Forward DNS queries from ``host:port`` to ``upstream`` ("IP:PORT"), each ``delay`` s late."""

    def __init__(self, upstream: str, delay: float, host: str = "127.0.0.1",
                 port: int | None = None, upstream_timeout: float = 5.0) -> None:
        self.upstream = _split(upstream)
        self.delay = delay
        self.host = host
        self.port = port or free_port(host)
        self.upstream_timeout = upstream_timeout
        self.queries = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def nameserver(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def ask_udp(self, query: bytes) -> bytes | None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.upstream[0] else socket.AF_INET
        transport, proto = await loop.create_datagram_endpoint(
            _UDPBack, remote_addr=self.upstream, family=family)
        try:
            transport.sendto(query)
            return await asyncio.wait_for(proto.answer, self.upstream_timeout)
        except TimeoutError:
            return None
        finally:
            transport.close()

    async def _tcp_client(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    size = struct.unpack("!H", await reader.readexactly(2))[0]
                    query = await reader.readexactly(size)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.queries += 1
                await asyncio.sleep(self.delay)
                answer = await self._ask_tcp(query)
                if answer is None:
                    return
                writer.write(struct.pack("!H", len(answer)) + answer)
                await writer.drain()
        finally:
            writer.close()

    async def _ask_tcp(self, query: bytes) -> bytes | None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(*self.upstream), self.upstream_timeout)
        except (TimeoutError, OSError):
            return None
        try:
            writer.write(struct.pack("!H", len(query)) + query)
            size = struct.unpack("!H", await asyncio.wait_for(
                reader.readexactly(2), self.upstream_timeout))[0]
            return await asyncio.wait_for(reader.readexactly(size), self.upstream_timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            return None
        finally:
            writer.close()

    async def serve(self) -> None:
        """Serve until :meth:`stop` (or forever when run as a process)."""
        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _UDPFront(self), local_addr=(self.host, self.port), family=family)
        tcp = await asyncio.start_server(self._tcp_client, self.host, self.port,
                                         family=family, reuse_address=True)
        self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            udp.close()
            tcp.close()

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self.serve())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    def start(self) -> DelayingForwarder:
        self._thread = threading.Thread(target=self._run, name="dnsdelay", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> DelayingForwarder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--listen", default="127.0.0.1:5353", help="HOST:PORT to serve on")
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the real server")
    parser.add_argument("--delay-ms", type=float, default=100.0, help="added per query")
    args = parser.parse_args(argv)
    host, port = _split(args.listen)
    forwarder = DelayingForwarder(args.upstream, args.delay_ms / 1000, host, port)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(forwarder.serve())


if __name__ == "__main__":
    main()
