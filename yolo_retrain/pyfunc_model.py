"""MLflow models-from-code definition: a pyfunc that wraps Ultralytics weights and predicts boxes.

MLflow executes this file when the model is loaded (``mlflow.pyfunc.load_model("models:/<name>@champion")``, or
``mlflow models serve``), so it imports nothing from yolo_retrain: a serving host needs only the model's pip
requirements. Its limits are the intake's (``yolo_retrain/labels.py``: the same values, checked by a test).

Input: a DataFrame, one image per row, in one of two columns:

- ``image_bytes``: the encoded image itself (JPEG, PNG, BMP, WebP, TIFF). Over HTTP (MLflow's scoring server) it is
  sent base64-encoded, as MLflow sends binary columns: ``{"dataframe_split": {"columns": ["image_bytes"],
  "data": [["<base64>"]]}}``;
- ``image``: a path on the serving host, or a ``file://`` URI.

Each image is checked before it is decoded (size in bytes, format from its first bytes, size in pixels from its
header); a refused row fails the request naming the row and the reason (HTTP 400 from the scoring server).
Output: one row per box: ``image`` (row index of the input), ``class_id``, ``class_name``, ``confidence``,
``x1 y1 x2 y2`` in pixels of the input image; at the model's trained image size, boxes from confidence 0.25
(params ``conf`` and ``imgsz`` override them per request).
"""

from __future__ import annotations

import io
import os
import stat
from urllib.parse import unquote, urlparse

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

COLUMNS = ["image", "class_id", "class_name", "confidence", "x1", "y1", "x2", "y2"]
BYTES_COLUMN, PATH_COLUMN = "image_bytes", "image"
DEFAULT_CONFIDENCE = 0.25
# The intake's limits (yolo_retrain/labels.py), repeated here because a serving host has no yolo_retrain.
MAX_IMAGE_BYTES = 100 * 1024 * 1024
MAX_IMAGE_SIDE = 20_000
MAX_ROWS = 64  # images in one request: each is decoded and predicted before the answer goes back
_SIGNATURES = {
    "JPEG": (b"\xff\xd8\xff",),
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "BMP": (b"BM",),
    "TIFF": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
}


class YoloDetector(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from ultralytics import YOLO

        self.model = YOLO(context.artifacts["weights"])
        self.config = dict(context.model_config or {})

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        images = [_decode(source, f"row {i} ({column})") for i, (column, source) in enumerate(_sources(model_input))]
        options = {"imgsz": self.config.get("imgsz", 640), "conf": self.config.get("conf", DEFAULT_CONFIDENCE)}
        options |= {k: v for k, v in (params or {}).items() if k in options and v is not None}
        rows = []
        for index, picture in enumerate(images):
            result = self.model.predict(picture, verbose=False, **options)[0]
            for cls, conf, xyxy in zip(result.boxes.cls.tolist(), result.boxes.conf.tolist(), result.boxes.xyxy.tolist()):
                rows.append([index, int(cls), result.names[int(cls)], float(conf), *xyxy])
        return pd.DataFrame(rows, columns=COLUMNS)


def _refuse(message: str) -> MlflowException:
    """A refused input: the scoring server answers it with HTTP 400 and this message."""
    return MlflowException.invalid_parameter_value(message)


def _sources(model_input) -> list[tuple[str, object]]:
    """(column, value) per input row: the image's bytes, else its path; a list is a list of paths."""
    if not isinstance(model_input, pd.DataFrame):
        model_input = pd.DataFrame({PATH_COLUMN: list(model_input)})
    if BYTES_COLUMN not in model_input.columns and PATH_COLUMN not in model_input.columns:
        raise _refuse(f"input has no column {BYTES_COLUMN!r} (the image's bytes) or {PATH_COLUMN!r} (a path); it has {list(model_input.columns)}")
    if len(model_input) > MAX_ROWS:
        raise _refuse(f"input has {len(model_input)} images; at most {MAX_ROWS} per request")
    found = []
    for i, row in enumerate(model_input.to_dict("records")):
        given = [c for c in (BYTES_COLUMN, PATH_COLUMN) if c in row and row[c] is not None and not _is_missing(row[c])]
        if len(given) != 1:
            raise _refuse(f"row {i}: give the image in exactly one of {BYTES_COLUMN!r} or {PATH_COLUMN!r} (found {len(given)})")
        found.append((given[0], row[given[0]]))
    return found


def _is_missing(value) -> bool:
    return isinstance(value, float) and value != value  # NaN: pandas' empty cell


def _decode(source, what: str):
    """The RGB pixels of one input (bytes, or a path read bounded), checked before anything is decoded."""
    from PIL import Image

    data = _read_path(source, what) if isinstance(source, str) else source
    if not isinstance(data, (bytes, bytearray)):
        raise _refuse(f"{what}: expected the image's bytes or a path, got {type(data).__name__}")
    if len(data) > MAX_IMAGE_BYTES:
        raise _refuse(f"{what}: image too large ({len(data)} bytes, limit {MAX_IMAGE_BYTES})")
    fmt = _format(data)
    if fmt is None:
        raise _refuse(f"{what}: not an image, or not one of the accepted formats (JPEG, PNG, BMP, WEBP, TIFF)")
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as img:  # that decoder alone: no plugin search
            width, height = img.size
            if width <= 0 or height <= 0 or max(width, height) > MAX_IMAGE_SIDE:
                raise _refuse(f"{what}: image size {width}x{height} outside 1..{MAX_IMAGE_SIDE} px a side")
            return img.convert("RGB")
    except MlflowException:
        raise
    except Image.DecompressionBombError as exc:
        raise _refuse(f"{what}: image too large ({exc})") from exc
    except Exception as exc:  # PIL raises many types on corrupt data
        raise _refuse(f"{what}: corrupt or truncated {fmt} image ({type(exc).__name__}: {exc})") from None


def _format(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for fmt, starts in _SIGNATURES.items() if bytes(data).startswith(starts)), None)


def _read_path(value: str, what: str) -> bytes:
    """A regular file on the serving host (a path or a ``file://`` URI), read up to the limit plus one byte."""
    parsed = urlparse(value)
    if parsed.scheme == "file":
        path = unquote(parsed.path)
    elif parsed.scheme and len(parsed.scheme) > 1:  # one letter: a Windows drive
        raise _refuse(f"{what}: {value!r}: only paths and file:// URIs are read; send other images as {BYTES_COLUMN!r}")
    else:
        path = value
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise _refuse(f"{what}: {path}: cannot open ({exc.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a folder, a device, a pipe: never read
        os.close(fd)
        raise _refuse(f"{what}: {path}: not a regular file")
    with os.fdopen(fd, "rb") as handle:
        return handle.read(MAX_IMAGE_BYTES + 1)


mlflow.models.set_model(YoloDetector())
