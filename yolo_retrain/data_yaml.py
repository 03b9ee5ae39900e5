"""An Ultralytics data.yaml resolved as ``yolo train data=...`` resolves it, and the one reader of class names.

The project's classes are the base data.yaml's ``names``, in its order: every import maps its export's class names
onto them, and the champion's ``model.names`` must equal them.

Resolution, as Ultralytics' ``check_det_dataset``:
- ``names`` is a list or an ``{index: name}`` mapping (indices 0..n-1); without ``names``, ``nc`` gives
  ``class_0``..; with both, their counts must agree;
- ``path`` is the dataset root (default: the yaml's folder). A relative ``path`` is taken relative to the yaml's
  folder first (the same yaml means the same files from anywhere), then to the working directory (Ultralytics');
- ``train``/``val``/``test`` are each a folder of images (searched recursively), a ``.txt`` list of images
  (relative lines relative to the list's folder), or a list of these; a single ``../x`` that does not exist is
  taken as ``x`` under the root (Roboflow's exports rely on this fallback); ``validation`` is read as ``val``;
- an image's label file: the last ``/images/`` of its path replaced by ``/labels/``, suffix ``.txt``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from yolo_retrain.errors import InvalidInput
from yolo_retrain.files import read_text_bounded

# Ultralytics' image formats (ultralytics.data.utils.IMG_FORMATS, kept equal by a test): importing that module
# would pull in torch, ~1.5 s and ~500 MiB, in every process that builds a dataset.
IMG_FORMATS = frozenset(
    {"avif", "bmp", "dng", "heic", "heif", "jp2", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp"}
)
SPLIT_KEYS = ("train", "val", "test")
MAX_CONFIG_BYTES = 16 * 1024 * 1024  # a data.yaml, notes.json, classes.txt: text a person or a tool wrote
_IMAGES_PART, _LABELS_PART = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"


@dataclass(frozen=True)
class DataYaml:
    """A resolved data.yaml: its class names and, per split key present, the absolute paths it points to."""

    path: Path  # the yaml file, absolute
    root: Path  # the dataset root (``path`` key)
    names: list[str]
    named: bool  # False when only ``nc`` was given (names are class_0..: the ids are all there is)
    sources: dict[str, list[str]]  # split key -> folders or .txt lists, absolute, as Ultralytics resolves them
    raw: dict[str, Any]  # the yaml's own content
    what: str = "data.yaml"  # how messages name it ("base data.yaml", "export data.yaml")
    within: Path | None = None  # an extracted archive: every path the yaml names must stay inside it

    def images(self, key: str) -> list[str]:
        """Every image the split ``key`` lists (sorted, absolute paths); [] for a split the yaml has not."""
        return image_files(self.sources.get(key, []), f"{self.describe()}: '{key}'", self.within)

    def describe(self) -> str:
        return f"{self.what} {self.path}"


def class_names(raw: Any, source: str) -> list[str]:
    """Class names in index order from a list or an ``{index: name}`` mapping (indices 0..n-1, int or digit keys).

    The one reader of class names: data.yaml ``names``, ``obj.names``/``classes.txt`` lines, Label Studio's
    ``notes.json`` categories all come through here. Values are taken as text (Ultralytics ``str()``s them).
    """
    if isinstance(raw, dict):
        try:
            by_index = {int(k): v for k, v in raw.items()}
        except (TypeError, ValueError):
            raise InvalidInput(f"{source}: 'names' keys must be class indices, got {list(raw)!r}") from None
        if sorted(by_index) != list(range(len(by_index))):
            raise InvalidInput(
                f"{source}: 'names' keys must be the indices 0..{len(by_index) - 1}, got {sorted(by_index)}"
            )
        raw = [by_index[i] for i in range(len(by_index))]
    if not isinstance(raw, list) or not raw:
        raise InvalidInput(f"{source}: no class 'names' (expected a non-empty list or {{index: name}} mapping)")
    if not all(isinstance(n, (str, int, float)) and str(n).strip() for n in raw):
        raise InvalidInput(f"{source}: every class name must be a non-empty string")
    return [str(n).strip() for n in raw]


def read_yaml(path: Path, what: str = "data.yaml") -> dict[str, Any]:
    """The mapping in a yaml file; InvalidInput naming it if unreadable, not YAML, or not a mapping."""
    source = f"{what} {path}"
    try:
        text = read_text_bounded(path, MAX_CONFIG_BYTES, "dataset config")
    except InvalidInput as exc:
        if not os.path.lexists(path):
            raise InvalidInput(f"{source}: cannot read dataset config (file not found)") from exc
        raise InvalidInput(f"{source}: {str(exc).removeprefix(f'{path}: ')}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{source}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"{source}: must be a YAML mapping (no class 'names')")
    return data


def names_of(data: dict[str, Any], source: str) -> tuple[list[str], bool]:
    """(class names, whether the yaml named them) of a parsed data.yaml, ``nc`` checked against ``names``."""
    nc = data.get("nc")
    if nc is not None:
        try:
            if float(nc) != int(float(nc)) or int(float(nc)) < 1:
                raise ValueError
            nc = int(float(nc))
        except (TypeError, ValueError):
            raise InvalidInput(f"{source}: 'nc' must be a positive integer, got {data['nc']!r}") from None
    if data.get("names") is None:
        if nc is None:
            raise InvalidInput(f"{source}: no class 'names' (and no 'nc'): every data.yaml needs one of them")
        return [f"class_{i}" for i in range(nc)], False
    names = class_names(data["names"], source)
    if nc is not None and nc != len(names):
        raise InvalidInput(f"{source}: 'names' has {len(names)} classes but 'nc' is {nc}")
    return names, True


def read_class_names(data_yaml: Path, what: str = "base data.yaml") -> list[str]:
    """Class names of a data.yaml in index order (its ``names``, or ``class_0``.. from ``nc``)."""
    path = Path(os.path.abspath(data_yaml))
    return names_of(read_yaml(path, what), f"{what} {path}")[0]


def load_data_yaml(
    data_yaml: Path, what: str = "data.yaml", required: tuple[str, ...] = ("train", "val"), within: Path | None = None
) -> DataYaml:
    """Read and resolve a data.yaml; each key of ``required`` must be present. Images are listed by ``images()``.

    ``within``: the folder an archive was extracted into. A yaml that came in an archive names files of the
    archive only: any path it resolves to outside ``within`` (``path: /``, ``train: ../../x``, an absolute line
    in a list) is refused naming it, before anything there is listed or read.
    """
    path = Path(os.path.abspath(data_yaml))
    source = f"{what} {path}"
    data = read_yaml(path, what)
    if data.get("val") is None and data.get("validation") is not None:
        data = {**data, "val": data["validation"]}
    for key in required:
        if data.get(key) is None:
            raise InvalidInput(f"{source}: key '{key}' is missing")
    names, named = names_of(data, source)
    root = path.parent
    if data.get("path"):
        # Relative to the yaml's folder first; then, as Ultralytics takes it, to the working directory.
        candidates = [Path(os.path.normpath(path.parent / str(data["path"]))), Path(os.path.abspath(str(data["path"])))]
        if within is not None:  # never the working directory's: the archive's own folder or nothing
            candidates = candidates[:1]
            confine(str(candidates[0]), within, f"{source}: 'path' {data['path']}")
        root = next((c for c in candidates if c.is_dir()), candidates[0])
        if not root.is_dir():
            raise InvalidInput(f"{source}: 'path' {root} is not a folder")
    sources = {key: _resolve(data[key], root, source, key, within) for key in SPLIT_KEYS if data.get(key)}
    return DataYaml(path, root, names, named, sources, data, what, within)


def _resolve(value: Any, root: Path, source: str, key: str, within: Path | None = None) -> list[str]:
    """The absolute paths a split value names; a lone ``../x`` that does not exist (or, in an archive, is
    outside it) falls back to ``x``."""
    if isinstance(value, str):
        resolved = os.path.normpath(root / value)
        if value.startswith("../") and (not os.path.exists(resolved) or not _inside(resolved, within)):
            resolved = os.path.normpath(root / value[3:])
        paths = [resolved]
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        paths = [os.path.normpath(root / v) for v in value]
    else:
        raise InvalidInput(f"{source}: '{key}' must be a path or a list of paths")
    for path in paths:
        confine(path, within, f"{source}: '{key}' {path}")
    return paths


def confine(path: str, within: Path | None, what: str) -> None:
    """Refuse ``path`` (InvalidInput starting with ``what``) if it is outside the extracted archive ``within``."""
    if not _inside(path, within):
        raise InvalidInput(f"{what} points outside the archive ({within}): an export's files must be in it")


def _inside(path: str, within: Path | None) -> bool:
    if within is None:
        return True
    folder = os.path.realpath(within)
    return os.path.commonpath([os.path.realpath(path), folder]) == folder


def image_files(sources: list[str], source: str, within: Path | None = None) -> list[str]:
    """Absolute paths of the images the folders and ``.txt`` lists in ``sources`` hold (sorted, as Ultralytics);
    with ``within``, every image a list names must be inside it."""
    files: list[str] = []
    for path in sources:
        if os.path.isdir(path):
            files += _walk_files(path)
        elif os.path.isfile(path) and path.endswith(".txt"):
            listed = _listed_images(path)
            for line in listed:
                confine(line, within, f"{source} list {path} names {line}, which")
            missing = next((f for f in listed if is_image(f) and not os.path.isfile(f)), None)
            if missing:
                raise InvalidInput(f"{source} list {path} names missing image {missing}")
            files += listed
        else:
            raise InvalidInput(f"{source} path {path} is not a folder or a .txt list")
    return sorted(f for f in files if is_image(f))


def label_path(image: str) -> str:
    """The Ultralytics label file of an image: last ``/images/`` -> ``/labels/``, suffix -> ``.txt``."""
    return _LABELS_PART.join(image.rsplit(_IMAGES_PART, 1)).rsplit(".", 1)[0] + ".txt"


def is_image(path: str) -> bool:
    return path.rpartition(".")[-1].lower() in IMG_FORMATS


def _walk_files(folder: str) -> list[str]:
    """Every file under ``folder`` (following links to folders, as Ultralytics' glob does), hidden ones excepted.

    A folder that cannot be read (an I/O error) or a link back to a folder above it (walked until the system
    refuses: its images listed dozens of times, then the rest skipped) is refused naming it.
    """
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True, onerror=_unreadable_folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        here = os.path.realpath(dirpath)
        for d in dirnames:
            target = os.path.realpath(f"{dirpath}/{d}")
            if here == target or here.startswith(target.rstrip("/") + "/"):
                raise InvalidInput(f"{dirpath}/{d}: cannot read image folder (a link to a folder above it: a loop)")
        found += [f"{dirpath}/{f}" for f in filenames if not f.startswith(".")]
    return found


def _unreadable_folder(exc: OSError) -> None:
    raise InvalidInput(f"{exc.filename}: cannot read image folder ({exc.strerror or exc})") from exc


def _listed_images(list_file: str) -> list[str]:
    """Absolute image paths of a .txt image list; relative lines are taken relative to the list's folder."""
    with open(list_file, encoding="utf-8-sig") as f:
        lines = f.read().splitlines()
    folder = os.path.dirname(list_file)
    return [os.path.normpath(os.path.join(folder, line.strip())) for line in lines if line.strip()]
