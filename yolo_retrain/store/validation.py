"""Reading and checking a submitted correction before anything is written: the image (decoded fully) and its labels."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from yolo_retrain.image_metadata import check_metadata, to_json
from yolo_retrain.labels import (
    check_image,
    format_labels,
    image_suffix,
    parse_labels,
    read_image_file,
    read_label_file,
    safe_filename,
)


@dataclass(frozen=True)
class Submission:
    """One correction to store: an image (path or bytes) and its YOLO label text (text or a ``.txt`` path).

    ``labels_source`` names text labels in messages (e.g. the export's label file they were mapped from).
    """

    image: Path | bytes
    labels: str | Path
    image_name: str | None = None
    labels_source: str | None = None
    metadata: dict[str, str] | None = None  # camera, site...: checked by image_metadata.check_metadata


@dataclass(frozen=True)
class Candidate:
    """A fully validated correction not yet stored."""

    data: bytes
    sha256: str
    suffix: str
    name: str
    label_text: str
    num_boxes: int
    width: int
    height: int
    metadata: str | None = None  # canonical JSON, None when there is none


def validate(
    image: Path | bytes,
    labels: str | Path,
    image_name: str | None,
    labels_source: str | None,
    class_count: int,
    metadata: dict[str, str] | None = None,
) -> Candidate:
    """Read and check one image and its labels (class ids below ``class_count``); InvalidInput naming the bad file
    (and line). Nothing is written."""
    if isinstance(image, bytes):
        data, source = image, image_name or "<image bytes>"
    else:
        data, source = read_image_file(Path(image)), str(image)
    width, height = check_image(data, source)
    sha = hashlib.sha256(data).hexdigest()
    suffix = image_suffix(data)
    default_name = f"{sha}{suffix}" if isinstance(image, bytes) else Path(image).name
    name = safe_filename(image_name if image_name is not None else default_name)
    if isinstance(labels, Path):
        text, label_source = read_label_file(labels), str(labels)
    else:
        text, label_source = labels, labels_source or f"labels of {source}"
    boxes = parse_labels(text, label_source, class_count)
    meta = to_json(check_metadata(metadata, f"metadata of {source}"))
    return Candidate(data, sha, suffix, name, format_labels(boxes), len(boxes), width, height, meta)
