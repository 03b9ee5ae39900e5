"""Validation of the inputs a correction is made of: YOLO label text, image bytes, file names; their bounded reads.

Every refusal raises :class:`~yolo_retrain.errors.InvalidInput` whose message names the input and the reason.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath, PureWindowsPath

from PIL import Image

from yolo_retrain.errors import InvalidInput
from yolo_retrain.files import decode_text, read_bounded, read_text_bounded

Box = tuple[int, float, float, float, float]
"""One YOLO detection box: class index, then centre x, centre y, width, height, all normalised to [0, 1]."""

IMAGE_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tiff"}
"""Accepted PIL image formats and the file suffix each is stored under."""

_SIGNATURES = {  # leading bytes of each accepted format but WebP (RIFF....WEBP)
    "JPEG": (b"\xff\xd8\xff",),
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "BMP": (b"BM",),
    "TIFF": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
}

SIGNATURE_BYTES = 12  # enough of an image's first bytes for image_format to tell its format
MAX_IMAGE_SIDE = 20_000
MAX_IMAGE_BYTES = 100 * 1024 * 1024
MAX_LABEL_BYTES = 16 * 1024 * 1024  # ~300 000 boxes: far more than any image holds


def read_label_file(path: Path | str) -> str:
    """The text of a YOLO label file: a regular file (refused before opening otherwise), at most
    ``MAX_LABEL_BYTES``, UTF-8."""
    return read_text_bounded(path, MAX_LABEL_BYTES, "label file")


def decode_labels(data: bytes, source: str) -> str:
    """Label text from bytes received elsewhere (an upload): at most ``MAX_LABEL_BYTES``, UTF-8."""
    if len(data) > MAX_LABEL_BYTES:
        raise InvalidInput(f"{source}: label file too large (over the limit of {MAX_LABEL_BYTES} bytes)")
    return decode_text(data, source)


def read_image_file(path: Path | str) -> bytes:
    """The bytes of an image file: a regular file (refused before opening otherwise), at most ``MAX_IMAGE_BYTES``."""
    return read_bounded(path, MAX_IMAGE_BYTES, "image")


def parse_labels(text: str, source: str, num_classes: int) -> list[Box]:
    """Parse YOLO detection label text: one ``class cx cy w h`` line per box, coordinates normalised to [0, 1].

    Blank lines are ignored. An empty text is legitimate: it labels an image that contains no objects, and
    gives an empty list. A bad line raises InvalidInput as ``"{source}:{lineno}: {reason}"``.
    """
    boxes: list[Box] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if fields:
            boxes.append(_parse_line(fields, f"{source}:{lineno}", num_classes))
    return boxes


def _parse_line(fields: list[str], where: str, num_classes: int) -> Box:
    if len(fields) != 5:
        raise InvalidInput(f"{where}: expected 5 fields (class cx cy w h), got {len(fields)}")
    try:
        cls = int(fields[0])
    except ValueError:
        raise InvalidInput(f"{where}: class must be an integer, got {fields[0]!r}") from None
    if not 0 <= cls < num_classes:
        raise InvalidInput(f"{where}: class {cls} out of range (expected 0..{num_classes - 1}, {num_classes} classes)")
    coords: list[float] = []
    for name, raw in zip(("cx", "cy", "w", "h"), fields[1:]):
        try:
            value = float(raw)
        except ValueError:
            raise InvalidInput(f"{where}: {name} must be a number, got {raw!r}") from None
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise InvalidInput(f"{where}: {name} must be a normalised coordinate in [0, 1], got {raw}")
        coords.append(value)
    cx, cy, w, h = coords
    if w <= 0.0 or h <= 0.0:
        raise InvalidInput(f"{where}: box must have positive width and height, got w={fields[3]} h={fields[4]}")
    return cls, cx, cy, w, h


def format_labels(boxes: list[Box]) -> str:
    """Canonical label text: sorted lines, six decimals, trailing newline (empty string for no boxes)."""
    return "".join(sorted(f"{c} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n" for c, cx, cy, w, h in boxes))


def check_image(data: bytes, source: str) -> tuple[int, int]:
    """Return ``(width, height)`` of an encoded image after decoding it fully.

    Refuses anything that is not a complete JPEG, PNG, BMP, WebP or TIFF image, empty images, and images over
    ``MAX_IMAGE_SIDE`` pixels a side, over ``MAX_IMAGE_BYTES`` bytes, or that PIL deems a decompression
    bomb (over twice ``Image.MAX_IMAGE_PIXELS``, about 179 megapixels).
    """
    fmt = _checked_format(data, source)
    with _decoding(source, fmt):
        with _open_checked(data, source, fmt) as img:
            width, height = img.size
            img.verify()
        with Image.open(io.BytesIO(data), formats=[fmt]) as img:
            img.load()
    return width, height


def decode_image(data: bytes, source: str) -> Image.Image:
    """The RGB pixels of image bytes from elsewhere (a task's image), checked as :func:`check_image` checks them
    before anything is decoded: size in bytes, format from its first bytes (the one decoder PIL may try: none that
    reaches the network or installs a plugin), width and height from the header."""
    fmt = _checked_format(data, source)
    with _decoding(source, fmt), _open_checked(data, source, fmt) as img:
        return img.convert("RGB")


def _checked_format(data: bytes, source: str) -> str:
    """The accepted format of ``data``, from its size and first bytes only; InvalidInput naming ``source`` if none."""
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidInput(f"{source}: image too large ({len(data)} bytes, limit {MAX_IMAGE_BYTES})")
    fmt = image_format(data)
    if fmt is None:
        raise InvalidInput(f"{source}: not an image, or not one of the accepted formats ({', '.join(IMAGE_SUFFIXES)})")
    return fmt


@contextmanager
def _open_checked(data: bytes, source: str, fmt: str) -> Iterator[Image.Image]:
    """The image opened by ``fmt``'s decoder alone, its size read from the header and checked; pixels not decoded."""
    with Image.open(io.BytesIO(data), formats=[fmt]) as img:
        width, height = img.size
        if width <= 0 or height <= 0:
            raise InvalidInput(f"{source}: image has zero size ({width}x{height})")
        if max(width, height) > MAX_IMAGE_SIDE:
            raise InvalidInput(f"{source}: image too large ({width}x{height}, limit {MAX_IMAGE_SIDE} px a side)")
        yield img


@contextmanager
def _decoding(source: str, fmt: str) -> Iterator[None]:
    """PIL's many errors on bad data as one InvalidInput naming ``source``."""
    try:
        yield
    except InvalidInput:
        raise
    except Image.DecompressionBombError as exc:
        raise InvalidInput(f"{source}: image too large ({exc})") from exc
    except (Image.UnidentifiedImageError, ImportError):
        # ImportError: Ultralytics patches Image.open to load a HEIF plugin after an UnidentifiedImageError.
        raise InvalidInput(f"{source}: corrupt {fmt} image (unreadable header)") from None
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, ValueError...) on corrupt data
        raise InvalidInput(f"{source}: corrupt or truncated image ({exc})") from exc


def image_suffix(data: bytes) -> str:
    """File suffix (``.jpg``, ``.png``...) for image bytes that already passed :func:`check_image`."""
    fmt = image_format(data)
    assert fmt is not None, "image_suffix() needs bytes that passed check_image()"
    return IMAGE_SUFFIXES[fmt]


def image_format(data: bytes) -> str | None:
    """The accepted format whose signature ``data`` starts with: the only one PIL is then allowed to try.

    Sniffing first keeps other data away from PIL's full plugin search, which Ultralytics patches to install
    and load a HEIF plugin on failure.
    """
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for fmt, starts in _SIGNATURES.items() if data.startswith(starts)), None)


def safe_filename(name: str) -> str:
    """Return the base name of ``name``, refusing empty names, absolute paths and any ``..`` component."""
    if not name or not name.strip() or "\x00" in name:
        raise InvalidInput(f"{name!r}: empty or invalid file name")
    posix, windows = PurePosixPath(name.replace("\\", "/")), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or windows.root:
        raise InvalidInput(f"{name!r}: absolute paths are not allowed as file names")
    if ".." in posix.parts:
        raise InvalidInput(f"{name!r}: path traversal ('..') is not allowed in file names")
    base = posix.name
    if not base or base == ".":
        raise InvalidInput(f"{name!r}: no file name")
    return base
