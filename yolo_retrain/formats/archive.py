"""Safe extraction of a ``.zip`` export, as the tools download it.

Every entry is checked before anything is written: no absolute path, no ``..``, no link or other special file,
at most ``MAX_ENTRIES`` entries and ``max_bytes`` in all. The sizes an archive declares are not trusted: writing
stops as soon as an entry outgrows its declared size or the total its cap.
"""

from __future__ import annotations

import re
import stat
import zipfile
from pathlib import Path, PurePosixPath

from yolo_retrain.errors import InvalidInput
from yolo_retrain.files import check_regular

MAX_ARCHIVE_BYTES = 16 * 1024**3  # extracted, in all
MAX_ENTRIES = 1_000_000
_DRIVE = re.compile(r"^[A-Za-z]:")
_UNIX = 3  # ZipInfo.create_system of archives made on Unix: external_attr holds st_mode


def is_zip(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".zip"


def extract_zip(archive: Path, dest: Path, max_bytes: int = MAX_ARCHIVE_BYTES) -> None:
    """Extract ``archive`` into the empty folder ``dest``; InvalidInput naming the archive and entry if refused."""
    check_regular(archive, "zip archive")
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInput(f"{archive}: not a readable zip archive ({exc})") from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ENTRIES:
            raise InvalidInput(f"{archive}: {len(infos)} entries, over the limit of {MAX_ENTRIES}")
        targets = [(info, _target(archive, dest, info)) for info in infos]
        declared = sum(info.file_size for info in infos)
        if declared > max_bytes:
            raise InvalidInput(f"{archive}: {declared} bytes once extracted, over the limit of {max_bytes}")
        written = 0
        for info, target in targets:
            try:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a file and a folder of the same name
                raise InvalidInput(f"{archive}: entry {info.filename!r} cannot be extracted ({exc})") from exc
            written += _copy(zf, info, target, archive, max_bytes - written)


def _target(archive: Path, dest: Path, info: zipfile.ZipInfo) -> Path:
    """Where an entry goes under ``dest``; refuses names that would land elsewhere, and links or devices."""
    name = info.filename
    where = f"{archive}: entry {name!r}"
    posix = PurePosixPath(name.replace("\\", "/"))
    if not name or "\x00" in name or posix.is_absolute() or _DRIVE.match(name):
        raise InvalidInput(f"{where}: absolute or empty path, refusing to extract the archive")
    if ".." in posix.parts:
        raise InvalidInput(f"{where}: path escapes the archive ('..'), refusing to extract the archive")
    mode = info.external_attr >> 16
    if info.create_system == _UNIX and mode:
        if stat.S_ISLNK(mode):
            raise InvalidInput(f"{where}: a symbolic link, refusing to extract the archive")
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: permission bits only, a plain file
            raise InvalidInput(f"{where}: not a regular file or folder, refusing to extract the archive")
    return dest.joinpath(*[part for part in posix.parts if part not in ("", ".")])


def _copy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, archive: Path, room: int) -> int:
    """Write one entry, stopping past its declared size or the room left; returns the bytes written."""
    limit = min(info.file_size, room)
    written = 0
    try:
        with zf.open(info) as src, open(target, "xb") as out:
            while chunk := src.read(min(1 << 20, limit - written + 1)):
                written += len(chunk)
                if written > limit:
                    raise InvalidInput(
                        f"{archive}: entry {info.filename!r} is larger than it declares or than the room left "
                        f"({room} bytes of the extraction limit), refusing to extract the archive"
                    )
                out.write(chunk)
    except FileExistsError:
        raise InvalidInput(
            f"{archive}: entry {info.filename!r} appears twice, refusing to extract the archive"
        ) from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, OSError) as exc:
        raise InvalidInput(f"{archive}: entry {info.filename!r} cannot be extracted ({exc})") from exc
    return written


__all__ = ["MAX_ARCHIVE_BYTES", "extract_zip", "is_zip"]
