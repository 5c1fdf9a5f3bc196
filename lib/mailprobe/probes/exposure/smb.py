"""Which SMB dialects a server on port 445 offers to anyone, read without credentials.

Two NEGOTIATE requests, each on its own connection (SMB over TCP: a 4-byte length header,
then the message, RFC 1002 session framing as used on port 445):

* an SMB1 NEGOTIATE offering only the dialect "NT LM 0.12". A server that chooses it speaks
  SMBv1 (the protocol of EternalBlue/WannaCry); a server that declines answers with dialect
  index 0xFFFF or an error, or (Windows with SMB1 removed) drops the connection;
* an SMB2 NEGOTIATE offering 2.0.2 to 3.1.1 (with the pre-authentication integrity context
  3.1.1 requires), whose reply names the dialect the server chose.

Nothing else is sent: no session set-up, no credentials. [MS-SMB] 2.2.4.52, [MS-SMB2] 2.2.3.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct

from mailprobe.net.deadline import BudgetExhausted, Deadline
from mailprobe.probes.exposure.model import Endpoint, SMBFacts

SMB1_MAGIC = b"\xffSMB"
SMB2_MAGIC = b"\xfeSMB"
SMB1_NEGOTIATE = 0x72
NT_LM_012 = b"NT LM 0.12"
NO_DIALECT = 0xFFFF
SMB2_DIALECTS = {0x0202: "2.0.2", 0x0210: "2.1", 0x0300: "3.0", 0x0302: "3.0.2",
                 0x0311: "3.1.1"}
MAX_MESSAGE = 64 * 1024
_PREAUTH_INTEGRITY = 0x0001
_SHA512 = 0x0001


class SMBTransportError(Exception):
    """No SMB reply could be read (connect failed, closed, timed out, not SMB).

    ``dropped`` when the server closed or reset the connection instead of replying.
    """

    def __init__(self, message: str, dropped: bool = False) -> None:
        super().__init__(message)
        self.dropped = dropped


def frame(message: bytes) -> bytes:
    """SMB over TCP: a zero byte and the 24-bit message length, then the message."""
    return b"\x00" + len(message).to_bytes(3, "big") + message


def smb1_negotiate() -> bytes:
    """An SMB1 NEGOTIATE request offering only "NT LM 0.12" (framed)."""
    header = struct.pack("<4sBIBHH8sHHHHH", SMB1_MAGIC, SMB1_NEGOTIATE, 0, 0x18, 0xC801, 0,
                         b"\0" * 8, 0, 0xFFFF, 0xFEFF, 0, 0)
    dialects = b"\x02" + NT_LM_012 + b"\x00"
    return frame(header + b"\x00" + struct.pack("<H", len(dialects)) + dialects)


def smb2_negotiate(client_guid: bytes | None = None, salt: bytes | None = None) -> bytes:
    """An SMB2 NEGOTIATE request offering 2.0.2 to 3.1.1 (framed)."""
    header = struct.pack("<4sHHIHHIIQIIQ16s", SMB2_MAGIC, 64, 0, 0, 0, 1, 0, 0, 0, 0xFEFF, 0,
                         0, b"\0" * 16)
    dialects = list(SMB2_DIALECTS)
    fixed = 36 + 2 * len(dialects)
    context_offset = 64 + fixed + (-(64 + fixed) % 8)
    body = struct.pack("<HHHHI16sIHH", 36, len(dialects), 1, 0, 0,
                       client_guid or os.urandom(16), context_offset, 1, 0)
    body += struct.pack(f"<{len(dialects)}H", *dialects)
    body += b"\0" * (context_offset - 64 - len(body))
    salt = salt or os.urandom(32)
    data = struct.pack("<HHH", 1, len(salt), _SHA512) + salt
    context = struct.pack("<HHI", _PREAUTH_INTEGRITY, len(data), 0) + data
    return frame(header + body + context)


def read_smb1_negotiate(message: bytes) -> tuple[bool | None, str]:
    """Whether the reply to :func:`smb1_negotiate` shows SMBv1 offered, and why (pure)."""
    if message.startswith(SMB2_MAGIC):
        return False, "answered the SMB1 negotiate in SMB2"
    if not message.startswith(SMB1_MAGIC) or len(message) < 33:
        return None, "the reply is not an SMB message"
    command, status = message[4], struct.unpack_from("<I", message, 5)[0]
    if command != SMB1_NEGOTIATE:
        return None, f"the reply is SMB1 command 0x{command:02x}, not NEGOTIATE"
    if status != 0:
        return False, f"declined with status 0x{status:08x}"
    word_count = message[32]
    if word_count < 1 or len(message) < 35:
        return None, "the SMB1 reply names no dialect"
    index = struct.unpack_from("<H", message, 33)[0]
    if index == 0:
        return True, ""
    if index == NO_DIALECT:
        return False, "declined NT LM 0.12 (dialect index 0xFFFF)"
    return None, f"chose dialect index {index}, which was not offered"


def read_smb2_negotiate(message: bytes) -> tuple[str, str]:
    """(dialect, "") from the reply to :func:`smb2_negotiate`, or ("", why not) (pure)."""
    if not message.startswith(SMB2_MAGIC) or len(message) < 64 + 6:
        if message.startswith(SMB1_MAGIC):
            return "", "answered in SMB1 only"
        return "", "the reply is not an SMB2 message"
    status, command = struct.unpack_from("<IH", message, 8)
    if command != 0:
        return "", f"the reply is SMB2 command {command}, not NEGOTIATE"
    if status != 0:
        return "", f"refused the negotiate with status 0x{status:08x}"
    revision = struct.unpack_from("<H", message, 68)[0]
    return SMB2_DIALECTS.get(revision, f"0x{revision:04x}"), ""


def exchange(endpoint: Endpoint, request: bytes, deadline: Deadline, *,
             source_address: str | None = None, step_timeout: float | None = None) -> bytes:
    """Send one framed request on a new connection; the reply message (without its frame)."""
    stage = f"speaking SMB to {endpoint}"
    family = socket.AF_INET6 if ":" in endpoint.address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            if source_address:
                sock.bind((source_address, 0))
            sock.settimeout(deadline.timeout(stage, step_timeout))
            sock.connect((endpoint.address, endpoint.port))
            sock.settimeout(deadline.timeout(stage, step_timeout))
            sock.sendall(request)
            header = _read(sock, 4, deadline, stage, step_timeout)
            length = int.from_bytes(header[1:], "big")
            if header[0] != 0 or length > MAX_MESSAGE:
                raise SMBTransportError("the reply is not SMB framing")
            return _read(sock, length, deadline, stage, step_timeout)
        except TimeoutError as exc:
            raise SMBTransportError("no reply in time") from exc
        except ConnectionResetError as exc:
            raise SMBTransportError("reset the connection without a reply", dropped=True) from exc
        except OSError as exc:
            raise SMBTransportError(str(exc.strerror or exc)) from exc


def _read(sock: socket.socket, count: int, deadline: Deadline, stage: str,
          step_timeout: float | None) -> bytes:
    data = b""
    while len(data) < count:
        sock.settimeout(deadline.timeout(stage, step_timeout))
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise SMBTransportError("closed the connection without a reply"
                                    if not data else "closed the connection mid-reply",
                                    dropped=not data)
        data += chunk
    return data


def probe_smb(endpoint: Endpoint, deadline: Deadline, *, source_address: str | None = None,
              step_timeout: float | None = None) -> SMBFacts:
    """The SMB1 and SMB2 negotiates against ``endpoint``; problems are described, not raised."""
    facts = SMBFacts()
    with contextlib.suppress(BudgetExhausted):
        try:
            reply = exchange(endpoint, smb1_negotiate(), deadline,
                             source_address=source_address, step_timeout=step_timeout)
            facts.smb1, facts.smb1_detail = read_smb1_negotiate(reply)
        except SMBTransportError as exc:
            if exc.dropped:  # what Windows without SMBv1 does
                facts.smb1 = False
            facts.smb1_detail = f"{exc} to the SMB1 negotiate"
        try:
            reply = exchange(endpoint, smb2_negotiate(), deadline,
                             source_address=source_address, step_timeout=step_timeout)
            facts.smb2_dialect, facts.smb2_detail = read_smb2_negotiate(reply)
        except SMBTransportError as exc:
            facts.smb2_detail = str(exc)
    if not facts.smb1_detail and facts.smb1 is None:
        facts.smb1_detail = "the time budget ran out"
    if not facts.smb2_dialect and not facts.smb2_detail:
        facts.smb2_detail = "the time budget ran out"
    return facts
