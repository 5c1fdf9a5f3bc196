"""A Maildir on this machine (``maildir:PATH``): new messages appear as files in new/ or cur/.

A message keeps the unique part of its file name (before ``:``) when a mail reader moves it
from new/ to cur/ or flags it, so that part is its reference.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from mailprobe.net.deadline import Deadline
from mailprobe.net.mailbox.base import MAX_READ, Mailbox, MailboxError
from mailprobe.net.mailbox.url import MailboxURL

SUBDIRS = ("new", "cur")


class MaildirMailbox(Mailbox):
    """Reads and deletes message files; the messages there at opening are never read."""

    def __init__(self, url: MailboxURL) -> None:
        super().__init__(url)
        self.path = Path(url.path)
        missing = [sub for sub in (*SUBDIRS, "tmp") if not (self.path / sub).is_dir()]
        if missing:
            what = "does not exist" if not self.path.exists() else (
                f"is not a Maildir (no {', '.join(d + '/' for d in missing)})")
            raise MailboxError(f"{url}: {self.path} {what}")
        self._seen = set(self._files())

    def _files(self) -> dict[str, Path]:
        """Unique name -> current path of every message."""
        files: dict[str, Path] = {}
        for sub in SUBDIRS:
            directory = self.path / sub
            try:
                with os.scandir(directory) as entries:
                    for entry in entries:
                        if not entry.name.startswith("."):
                            files[entry.name.split(":", 1)[0]] = Path(entry.path)
            except OSError as exc:
                raise MailboxError(f"{self.url}: cannot read {directory}: "
                                   f"{exc.strerror or exc}") from None
        return files

    def _new_messages(self, deadline: Deadline) -> Iterator[tuple[str, bytes]]:
        for name, path in self._files().items():
            if name in self._seen:
                continue
            try:
                with open(path, "rb") as handle:
                    raw = handle.read(MAX_READ)
            except FileNotFoundError:  # moved to cur/ meanwhile: read on the next look
                continue
            except OSError as exc:
                raise MailboxError(f"{self.url}: cannot read {path}: "
                                   f"{exc.strerror or exc}") from None
            self._seen.add(name)
            yield name, raw

    def _delete(self, references: list[str], deadline: Deadline) -> int:
        files = self._files()
        deleted = 0
        for name in references:
            path = files.get(name)
            if path is None:
                continue  # already gone (a mail reader deleted it)
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise MailboxError(f"{self.url}: cannot delete {path}: "
                                   f"{exc.strerror or exc}") from None
            deleted += 1
        return deleted

    def close(self) -> None:
        """Nothing to let go of."""
