"""A scripted SMB responder on loopback: answers NEGOTIATE requests and nothing else.

Running Samba is out of scope for the lab (it needs its own users, shares and a dozen daemons
for what check_port_exposure asks: one NEGOTIATE). This server answers exactly that request as
the servers the plugin meets would:

* ``SMBBehaviour(smb1=True)`` (the default): an old server with SMBv1 on. An SMB1 NEGOTIATE
  offering "NT LM 0.12" gets the SMB1 reply that chooses it (word count 17, extended
  security), as Samba with ``server min protocol = NT1`` or Windows with SMB1 on answer;
* ``SMBBehaviour(smb1=False)``: SMB1 switched off. The SMB1 NEGOTIATE is answered by dropping
  the connection (what Windows without SMB1 does), or with ``decline_smb1=True`` by an SMB1
  reply with dialect index 0xFFFF (what Samba answers when no offered dialect is allowed);
* both answer an SMB2 NEGOTIATE with the highest offered dialect of ``dialects`` (or
  STATUS_NOT_SUPPORTED when there is none in common); the reply carries no negotiate contexts
  and no security blob (a real server adds them; the plugin reads only the dialect);
* ``SMBBehaviour(silent=True)``: accepts connections and never says a word.

Usage::

    with ScriptedSMBServer(SMBBehaviour(smb1=True), host="127.77.0.9", port=445) as smb:
        run_plugin(..., "--netbios")
        assert smb.requests == ["SMB1 NEGOTIATE", "SMB2 NEGOTIATE"]
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass

from lab.process import LabServer

POLL = 0.05
SMB1_MAGIC = b"\xffSMB"
SMB2_MAGIC = b"\xfeSMB"
STATUS_NOT_SUPPORTED = 0xC00000BB
ALL_DIALECTS = (0x0202, 0x0210, 0x0300, 0x0302, 0x0311)


@dataclass(frozen=True)
class SMBBehaviour:
    smb1: bool = True  # chooses "NT LM 0.12" when offered
    decline_smb1: bool = False  # with smb1=False: reply 0xFFFF instead of dropping the line
    dialects: tuple[int, ...] = ALL_DIALECTS  # SMB2 dialects it speaks
    silent: bool = False  # never answers anything


def _frame(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(3, "big") + message


def smb1_dialects(message: bytes) -> list[bytes]:
    """The dialect names of an SMB1 NEGOTIATE request (after its 32-byte header)."""
    if len(message) < 35:
        return []
    word_count = message[32]
    start = 33 + 2 * word_count
    count = struct.unpack_from("<H", message, start)[0]
    data = message[start + 2:start + 2 + count]
    return [part[1:] for part in data.split(b"\x00") if part.startswith(b"\x02")]


def smb1_reply(request: bytes, index: int) -> bytes:
    """An SMB1 NEGOTIATE reply choosing dialect ``index`` (0xFFFF: none)."""
    mid = request[30:32] if len(request) >= 32 else b"\0\0"
    pid = request[26:28] if len(request) >= 28 else b"\0\0"
    header = (SMB1_MAGIC + bytes([0x72]) + b"\0" * 4 + bytes([0x98]) + struct.pack("<H", 0xC801)
              + b"\0" * 12 + b"\xff\xff" + pid + b"\0\0" + mid)
    if index == 0xFFFF:
        return header + b"\x01" + struct.pack("<H", index) + b"\0\0"
    words = struct.pack("<HBHHIIIIQhB", index, 0x03, 50, 1, 16644, 65536, 0, 0x8000F3FD,
                        int(time.time() + 11644473600) * 10_000_000, 0, 0)
    guid = b"mailprobe-lab-sm"
    return header + bytes([len(words) // 2]) + words + struct.pack("<H", len(guid)) + guid


def smb2_offered(message: bytes) -> list[int]:
    if len(message) < 64 + 36:
        return []
    count = struct.unpack_from("<H", message, 66)[0]
    return list(struct.unpack_from(f"<{count}H", message, 100)) if count <= 64 else []


def smb2_reply(request: bytes, dialect: int | None) -> bytes:
    """An SMB2 NEGOTIATE reply choosing ``dialect`` (None: STATUS_NOT_SUPPORTED)."""
    message_id = request[24:32] if len(request) >= 32 else b"\0" * 8
    status = 0 if dialect is not None else STATUS_NOT_SUPPORTED
    header = (SMB2_MAGIC + struct.pack("<HHIHHII", 64, 0, status, 0, 1, 1, 0) + message_id
              + struct.pack("<IIQ", 0xFEFF, 0, 0) + b"\0" * 16)
    if dialect is None:
        return header + struct.pack("<HBBI", 9, 0, 0, 0) + b"\0"
    now = int(time.time() + 11644473600) * 10_000_000
    body = struct.pack("<HHHH16sIIIIQQHHI", 65, 1, dialect, 0, b"mailprobe-lab-sm", 0x2F,
                       8 * 1024 * 1024, 8 * 1024 * 1024, 8 * 1024 * 1024, now, 0, 128, 0, 0)
    return header + body


class ScriptedSMBServer(LabServer):
    """A threaded responder; ``requests`` lists what it was asked, in order."""

    def __init__(self, behaviour: SMBBehaviour | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.behaviour = behaviour or SMBBehaviour()
        self.host = host
        self.port = port
        self.requests: list[str] = []
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> ScriptedSMBServer:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        listener.settimeout(POLL)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._spawn(self._accept_loop)
        return self

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(POLL)
            with self._lock:
                self._conns.append(conn)
            self._spawn(self._serve, conn)

    def _read(self, conn: socket.socket, count: int) -> bytes | None:
        data = b""
        while len(data) < count and not self._stopping.is_set():
            try:
                chunk = conn.recv(count - len(data))
            except TimeoutError:
                continue
            except OSError:
                return None
            if not chunk:
                return None
            data += chunk
        return data if len(data) == count else None

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            while not self._stopping.is_set():
                header = self._read(conn, 4)
                if header is None:
                    return
                message = self._read(conn, int.from_bytes(header[1:], "big"))
                if message is None:
                    return
                if self.behaviour.silent:
                    self.requests.append("ignored")
                    continue
                reply = self._answer(message)
                if reply is None:
                    return  # drop the connection
                conn.settimeout(5)
                conn.sendall(_frame(reply))
                conn.settimeout(POLL)

    def _answer(self, message: bytes) -> bytes | None:
        behaviour = self.behaviour
        if message.startswith(SMB1_MAGIC) and len(message) > 4 and message[4] == 0x72:
            self.requests.append("SMB1 NEGOTIATE")
            dialects = smb1_dialects(message)
            if behaviour.smb1 and b"NT LM 0.12" in dialects:
                return smb1_reply(message, dialects.index(b"NT LM 0.12"))
            return smb1_reply(message, 0xFFFF) if behaviour.decline_smb1 else None
        if message.startswith(SMB2_MAGIC) and len(message) >= 64 \
                and struct.unpack_from("<H", message, 12)[0] == 0:
            self.requests.append("SMB2 NEGOTIATE")
            common = [d for d in smb2_offered(message) if d in behaviour.dialects]
            return smb2_reply(message, max(common) if common else None)
        self.requests.append("other")
        return None

    def stop(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        until = time.monotonic() + 5
        for thread in threads:
            thread.join(max(0.0, until - time.monotonic()))
