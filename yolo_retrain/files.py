"""Bounded reads of files a person points us at: a device, a FIFO or a huge file must not hang or exhaust us.

A path that is not a regular file is refused before it is opened (opening a FIFO blocks, reading ``/dev/zero``
never ends); a regular file is read up to its limit plus one byte, so a file over the limit is refused without
reading the rest of it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from yolo_retrain.errors import InvalidInput

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
)
# Never wait on a FIFO swapped in after the check, never make a terminal ours, never leak the descriptor.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_regular(path: Path | str, what: str = "file") -> os.stat_result:
    """The stat of ``path`` if it is a regular file (links followed); InvalidInput naming it otherwise."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read {what} ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInput(f"{path}: {what} must be a regular file, this is {_kind(st.st_mode)}")
    return st


def read_bounded(path: Path | str, limit: int, what: str = "file") -> bytes:
    """The bytes of the regular file ``path``, refused (InvalidInput) if it holds more than ``limit`` bytes.

    Reads at most ``limit + 1`` bytes, whatever the file claims its size is.
    """
    check_regular(path, what)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read {what} ({exc.strerror or exc})") from exc
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):  # replaced between the check and the open
            raise InvalidInput(f"{path}: {what} must be a regular file, this is {_kind(mode)}")
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise InvalidInput(f"{path}: cannot read {what} ({exc.strerror or exc})") from exc
    if len(data) > limit:
        raise InvalidInput(f"{path}: {what} too large (over the limit of {limit} bytes)")
    return data


def read_text_bounded(path: Path | str, limit: int, what: str = "file") -> str:
    """``read_bounded`` decoded as UTF-8 (a leading BOM dropped); InvalidInput naming the byte if it is not."""
    return decode_text(read_bounded(path, limit, what), str(path))


def decode_text(data: bytes, source: str) -> str:
    """UTF-8 text (a leading BOM dropped), or InvalidInput naming ``source`` and the offending byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
