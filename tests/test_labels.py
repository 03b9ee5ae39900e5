"""Validation of label text, images, class names and file names."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from yolo_retrain import labels
from yolo_retrain.data_yaml import read_class_names
from yolo_retrain.errors import InvalidInput
from yolo_retrain.labels import check_image, format_labels, image_suffix, parse_labels, safe_filename


def encode(fmt: str, size: tuple[int, int] = (48, 32), seed: int = 0) -> bytes:
    """A noisy RGB image encoded as ``fmt`` (noise makes truncation hit real pixel data)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` and which has no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


# parse_labels ----------------------------------------------------------------------------------


def test_parse_valid_lines_blank_lines_and_edges() -> None:
    text = "0 0.5 0.5 0.2 0.3\n\n  \n1 0 1 1 0.000001\n"
    assert parse_labels(text, "a.txt", 2) == [(0, 0.5, 0.5, 0.2, 0.3), (1, 0.0, 1.0, 1.0, 0.000001)]


@pytest.mark.parametrize("text", ["", "\n\n", "   \n"])
def test_empty_label_file_means_no_objects(text: str) -> None:
    assert parse_labels(text, "a.txt", 2) == []


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("0 0.5 0.5 0.2", "expected 5 fields (class cx cy w h), got 4"),
        ("0 0.5 0.5 0.2 0.2 0.9", "expected 5 fields (class cx cy w h), got 6"),
        ("1.5 0.5 0.5 0.2 0.2", "class must be an integer, got '1.5'"),
        ("cat 0.5 0.5 0.2 0.2", "class must be an integer"),
        ("-1 0.5 0.5 0.2 0.2", "class -1 out of range"),
        ("2 0.5 0.5 0.2 0.2", "class 2 out of range"),
        ("0 x 0.5 0.2 0.2", "cx must be a number, got 'x'"),
        ("0 0.5 nan 0.2 0.2", "cy must be a normalised coordinate in [0, 1], got nan"),
        ("0 0.5 0.5 inf 0.2", "w must be a normalised coordinate"),
        ("0 0.5 0.5 0.2 -inf", "h must be a normalised coordinate"),
        ("0 1.01 0.5 0.2 0.2", "cx must be a normalised coordinate in [0, 1], got 1.01"),
        ("0 0.5 -0.1 0.2 0.2", "cy must be a normalised coordinate in [0, 1], got -0.1"),
        ("0 0.5 0.5 0 0.2", "positive width and height"),
        ("0 0.5 0.5 0.2 0.0", "positive width and height"),
    ],
)
def test_bad_line_names_source_line_and_reason(line: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_labels(f"0 0.5 0.5 0.2 0.2\n\n{line}\n", "labels/a.txt", 2)
    assert str(info.value).startswith("labels/a.txt:3: ")
    assert reason in str(info.value)


def test_format_labels_is_canonical() -> None:
    a = parse_labels("1 0.5 0.5 0.2 0.2\n0 .25 0.25 0.1 0.1", "a", 2)
    b = parse_labels("0 0.2500000 0.25 0.1 0.1\n\n1 0.5 0.5 0.2 0.2\n", "b", 2)
    expected = "0 0.250000 0.250000 0.100000 0.100000\n1 0.500000 0.500000 0.200000 0.200000\n"
    assert format_labels(a) == format_labels(b) == expected
    assert format_labels([]) == ""


# read_class_names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("names: [square, circle]\n", ["square", "circle"]),
        ("path: .\nnames:\n  0: square\n  1: circle\n", ["square", "circle"]),
        ("names:\n  1: circle\n  0: square\n", ["square", "circle"]),
    ],
)
def test_read_class_names(tmp_path: Path, content: str, expected: list[str]) -> None:
    (tmp_path / "data.yaml").write_text(content)
    assert read_class_names(tmp_path / "data.yaml") == expected


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("names: [a, b", "not valid YAML"),
        ("train: images\n", "no class 'names'"),
        ("names: []\n", "no class 'names'"),
        ("- a\n- b\n", "no class 'names'"),
        ("names:\n  0: a\n  2: b\n", "keys must be the indices 0..1"),
        ("names: [a, '']\n", "non-empty string"),
    ],
)
def test_read_class_names_refuses(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "data.yaml"
    path.write_text(content)
    with pytest.raises(InvalidInput, match=reason) as info:
        read_class_names(path)
    assert str(path) in str(info.value)


def test_read_class_names_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read"):
        read_class_names(tmp_path / "nope.yaml")


# check_image ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "suffix"), [("JPEG", ".jpg"), ("PNG", ".png"), ("BMP", ".bmp"), ("WEBP", ".webp"), ("TIFF", ".tiff")]
)
def test_check_image_accepts_allowed_formats(fmt: str, suffix: str) -> None:
    data = encode(fmt)
    assert check_image(data, "x") == (48, 32)
    assert image_suffix(data) == suffix


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "WEBP", "TIFF"])
def test_check_image_refuses_truncated(fmt: str) -> None:
    data = encode(fmt, (64, 64))
    with pytest.raises(InvalidInput, match="img.x: corrupt or truncated image"):
        check_image(data[: len(data) // 2], "img.x")


def test_check_image_refuses_corrupted_bytes() -> None:
    data = bytearray(encode("PNG"))
    data[60:80] = b"\x00" * 20  # clobbers the IDAT chunk: its CRC no longer matches
    with pytest.raises(InvalidInput, match="a.png: corrupt or truncated image"):
        check_image(bytes(data), "a.png")


@pytest.mark.parametrize("data", [b"", b"hello, not an image", b"%PDF-1.4\n" + b"0" * 200])
def test_check_image_refuses_non_images(data: bytes) -> None:
    with pytest.raises(InvalidInput, match="notes.txt: not an image, or not one of the accepted formats"):
        check_image(data, "notes.txt")


def test_check_image_refuses_other_formats() -> None:
    with pytest.raises(InvalidInput, match="a.gif: not an image, or not one of the accepted formats"):
        check_image(encode("GIF"), "a.gif")


def test_check_image_refuses_zero_size() -> None:
    with pytest.raises(InvalidInput, match="empty.png: corrupt PNG image"):
        check_image(png_header_only(0, 10), "empty.png")


def test_check_image_refuses_too_wide() -> None:
    buf = io.BytesIO()
    Image.new("L", (labels.MAX_IMAGE_SIDE + 1, 1)).save(buf, "PNG")
    with pytest.raises(InvalidInput, match="wide.png: image too large \\(20001x1"):
        check_image(buf.getvalue(), "wide.png")


def test_check_image_refuses_decompression_bomb_header() -> None:
    with pytest.raises(InvalidInput, match="bomb.png: image too large"):
        check_image(png_header_only(19_000, 19_000), "bomb.png")


def test_check_image_refuses_too_many_bytes() -> None:
    data = encode("BMP") + b"\0" * labels.MAX_IMAGE_BYTES
    with pytest.raises(InvalidInput, match="big.bmp: image too large"):
        check_image(data, "big.bmp")


def test_check_image_under_ultralytics_pil_patch() -> None:
    """Ultralytics replaces Image.open with one that installs a HEIF plugin on failure: refusals stay clean."""
    pytest.importorskip("ultralytics.utils.patches")
    assert check_image(encode("PNG"), "ok.png") == (48, 32)
    with pytest.raises(InvalidInput, match="notes.txt: not an image"):
        check_image(b"plain text", "notes.txt")
    with pytest.raises(InvalidInput, match="empty.png: corrupt PNG image"):
        check_image(png_header_only(0, 10), "empty.png")


# safe_filename ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.jpg", "a.jpg"), ("sub/dir/a.jpg", "a.jpg"), ("sub\\a.png", "a.png"), ("./a.jpg", "a.jpg")],
)
def test_safe_filename_returns_basename(name: str, expected: str) -> None:
    assert safe_filename(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        *("", "  ", ".", "..", "a\x00.jpg"),
        *("../a.jpg", "a/../../b.jpg", "..\\a.jpg"),
        *("/etc/passwd", "C:\\x.jpg", "\\\\srv\\s\\x.jpg"),
    ],
)
def test_safe_filename_refuses(name: str) -> None:
    with pytest.raises(InvalidInput):
        safe_filename(name)
