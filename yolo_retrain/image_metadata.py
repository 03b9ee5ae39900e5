"""Image metadata (``camera``, ``site``, ...): the columns the gate slices the holdout by.

An image's metadata is a small mapping of names to strings. It comes from a sidecar CSV (the base data's
``metadata.csv`` beside its data.yaml, or an import's), the intake's ``metadata`` form field, ``corrections add
--meta``, or the Label Studio task data fields named in ``YOLO_RETRAIN_LABEL_STUDIO_METADATA_FIELDS``. Whatever the
source, it is checked here, before anything is stored: names like identifiers, values strings, bounded in number
and length (each value becomes a metric name of every retrain). Bad metadata is refused naming the input.

A sidecar CSV has a header row whose first column is ``image``: the image's path relative to the CSV's folder (or
its file name); every other column is one metadata name. An empty cell means "no value" for that image::

    image,camera,site
    images/val/img_0001.png,cam1,north
    images/val/img_0002.png,cam2,
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from yolo_retrain.errors import InvalidInput
from yolo_retrain.files import read_text_bounded

Metadata = dict[str, str]

SIDECAR_NAME = "metadata.csv"
MAX_COLUMNS = 16  # each column multiplies the gate's slices and the run's metrics
MAX_NAME_LENGTH = 64
MAX_VALUE_LENGTH = 128  # a value is part of a metric name (MLflow: at most 250 characters)
MAX_SIDECAR_BYTES = 256 * 1024 * 1024
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_BAD_VALUE = re.compile(r"[\x00-\x1f\x7f]")  # control characters: no line breaks in a metric name or a summary


def check_metadata(value: Any, source: str) -> Metadata:
    """``value`` as image metadata (a mapping of names to strings), or InvalidInput naming ``source`` and the reason."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{source}: metadata must be an object of names to strings, not {type(value).__name__}")
    if len(value) > MAX_COLUMNS:
        raise InvalidInput(f"{source}: {len(value)} metadata columns, at most {MAX_COLUMNS}")
    out: Metadata = {}
    for name, item in value.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
            raise InvalidInput(
                f"{source}: metadata name {name!r}: must start with a letter and hold only letters, digits, '_', '.', "
                f"'-' (at most {MAX_NAME_LENGTH} characters)"
            )
        if not isinstance(item, str):
            raise InvalidInput(f"{source}: metadata {name!r}: the value must be a string, not {type(item).__name__} {item!r}")
        if len(item) > MAX_VALUE_LENGTH:
            raise InvalidInput(f"{source}: metadata {name!r}: the value is {len(item)} characters long, at most {MAX_VALUE_LENGTH}")
        if _BAD_VALUE.search(item):
            raise InvalidInput(f"{source}: metadata {name!r}: the value holds a control character (a line break?)")
        if item.strip():
            out[name] = item.strip()
    return out


def parse_pairs(pairs: Iterable[str], source: str) -> Metadata:
    """``NAME=VALUE`` strings (``corrections add --meta``) as metadata; a name given twice is refused."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise InvalidInput(f"{source} {pair!r}: expected NAME=VALUE")
        if name in out:
            raise InvalidInput(f"{source} {pair!r}: {name!r} given twice")
        out[name] = value
    return check_metadata(out, source)


def parse_json(text: str | None, source: str) -> Metadata:
    """A JSON object (the intake's ``metadata`` form field) as metadata."""
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"{source}: not JSON ({exc}); expected an object such as {{\"camera\": \"cam1\"}}") from exc
    return check_metadata(value, source)


def to_json(metadata: Metadata) -> str | None:
    """How the store and the manifest keep it: canonical JSON (sorted names), None when empty."""
    return json.dumps(metadata, sort_keys=True, ensure_ascii=False) if metadata else None


def from_json(text: str | None) -> Metadata:
    return json.loads(text) if text else {}


def merged(base: Metadata, override: Metadata) -> Metadata:
    """A correction's metadata over its base image's: the correction's values win, name by name."""
    return {**base, **override} if override else dict(base)


def read_sidecar(path: Path, images: Iterable[str], what: str) -> dict[str, Metadata]:
    """The metadata of ``images`` (absolute paths) from the CSV at ``path``, by image path.

    A row's ``image`` is a path relative to the CSV's folder, or an absolute one, or a file name that names exactly
    one of ``images``. A row that names no image of ``images``, or an image twice, is refused naming its line (a
    slice silently missing its images would gate on the wrong ones).
    """
    text = read_text_bounded(path, MAX_SIDECAR_BYTES, f"{what} metadata file")
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise InvalidInput(f"{path}: not a CSV file ({exc})") from exc
    if not rows:
        return {}
    header = [h.strip() for h in rows[0]]
    if not header or header[0].lstrip("\ufeff") != "image":
        raise InvalidInput(f"{path}: line 1: the first column must be 'image' (the image's path), found {header[:1]}")
    names = header[1:]
    if len(set(names)) != len(names):
        raise InvalidInput(f"{path}: line 1: a column name repeats ({', '.join(names)})")
    check_metadata(dict.fromkeys(names, ""), f"{path}: line 1")
    folder = path.parent
    by_path = {os.path.abspath(i): i for i in images}
    by_name: dict[str, list[str]] = {}
    for image in by_path.values():
        by_name.setdefault(os.path.basename(image), []).append(image)
    out: dict[str, Metadata] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path}: line {number}"
        if len(row) != len(header):
            raise InvalidInput(f"{where}: {len(row)} cells, the header has {len(header)}")
        image = _match(row[0].strip(), folder, by_path, by_name, where, what)
        if image in out:
            raise InvalidInput(f"{where}: {row[0].strip()!r} is named twice")
        out[image] = check_metadata(dict(zip(names, row[1:])), where)
    return out


def _match(name: str, folder: Path, by_path: dict[str, str], by_name: dict[str, list[str]], where: str, what: str) -> str:
    found = by_path.get(os.path.abspath(os.path.join(folder, name)))
    if found is not None:
        return found
    if "/" not in name and len(by_name.get(name, [])) == 1:
        return by_name[name][0]
    if len(by_name.get(name, [])) > 1:
        raise InvalidInput(f"{where}: {name!r} names {len(by_name[name])} images of the {what}; give its path")
    raise InvalidInput(f"{where}: {name!r} is no image of the {what} (paths are relative to {folder})")


def task_metadata(data: Any, fields: str, source: str) -> Metadata:
    """The metadata of a labelling task: its ``data`` fields named in ``fields`` (comma-separated, e.g. the setting
    ``label_studio_metadata_fields``) that it has; a field that is not a string is refused, naming it."""
    wanted = [f.strip() for f in fields.split(",") if f.strip()]
    if not wanted or not isinstance(data, dict):
        return {}
    return check_metadata({f: data[f] for f in wanted if f in data and data[f] is not None}, f"{source}: task data")


def sidecar_beside(path: Path) -> Path | None:
    """``metadata.csv`` in ``path``'s folder (``path`` a file) or in ``path`` (a folder), if there is one."""
    folder = path if path.is_dir() else path.parent
    candidate = folder / SIDECAR_NAME
    return candidate if candidate.is_file() else None
