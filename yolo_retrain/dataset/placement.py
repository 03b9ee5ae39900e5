"""Where a dataset's files go: base images listed in place, corrected ones in a shared content-addressed store,
the dataset folder written beside its final place and renamed into it."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from json.encoder import encode_basestring
from pathlib import Path
from typing import NamedTuple

from yolo_retrain.data_yaml import label_path
from yolo_retrain.dataset.assembly import Entry

CORRECTED_DIR = "corrected"
# The fields of each manifest entry, in order (``manifest_text``); all strings, correction_id null for base labels,
# except metadata: an object of strings (camera, site...), {} when the image has none.
MANIFEST_FIELDS = (
    "split", "image", "source_image", "image_sha256", "label_sha256", "label_source", "correction_id", "path", "metadata",
)  # fmt: skip


class Placement(NamedTuple):
    """Where each image of a dataset is listed, and what its folder holds besides lists and manifest."""

    listed: list[str]  # per entry of ``ordered``, relative to the dataset folder
    links: dict[str, str]  # symlinks in the dataset folder: relative path -> target
    files: dict[str, bytes]  # the anchors' label files: relative path -> content
    corrected: dict[str, Entry]  # corrected images by their path in the corrected store, relative to it


def place(ordered: list[Entry], corrected_root: Path) -> Placement:
    """List base images in place, corrected ones from the corrected store, the first of each split from ``0/``.

    Ultralytics sorts the listed paths and keeps its label cache beside the first one's label: ``0/`` sorts before
    ``b/`` and ``c/``, so each dataset has its own cache, and a cache can never hold another dataset's labels.
    """
    anchors = {e.split: e for e in reversed(ordered)}
    links = {"c": str(corrected_root)}
    base_folders: dict[str, str] = {}
    files: dict[str, bytes] = {}
    corrected: dict[str, Entry] = {}
    listed: list[str] = []
    for e in ordered:
        if anchors[e.split] is e:
            listed.append(f"0/images/{e.split}/{e.name}")
            links[listed[-1]] = e.source
            files[f"0/labels/{e.split}/{e.name.rpartition('.')[0]}.txt"] = e.label_bytes()
        elif e.label_source == "correction":
            # Named by image, label and location: a changed label is a new path, the same one is never rewritten.
            key = hashlib.sha256(f"{e.image_sha256}\t{e.label_sha256}\t{e.source}".encode()).hexdigest()[:32]
            path = f"{key[:2]}/images/{key}.{e.name.rpartition('.')[-1]}"
            corrected[path] = e
            listed.append(f"c/{path}")
        else:
            folder = e.source.rpartition("/")[0]
            if folder not in base_folders:
                base_folders[folder] = f"b/{len(base_folders)}"
                links[f"{base_folders[folder]}/images"] = folder
                links[f"{base_folders[folder]}/labels"] = label_path(e.source).rpartition("/")[0]
            listed.append(f"{base_folders[folder]}/images/{e.name}")
    return Placement(listed, links, files, corrected)


def write_corrected(corrected_root: Path, corrected: dict[str, Entry]) -> int:
    """Write the corrected images not in the store yet (label file, then image link); returns how many."""
    missing = [(path, e) for path, e in corrected.items() if not os.path.lexists(f"{corrected_root}/{path}")]
    for folder in {path.partition("/")[0] for path, _ in missing}:
        os.makedirs(corrected_root / folder / "images", exist_ok=True)
        os.makedirs(corrected_root / folder / "labels", exist_ok=True)
    chunks = [missing[i : i + 256] for i in range(0, len(missing), 256)]
    with ThreadPoolExecutor(4) as pool:  # file creation waits on the filesystem more than on the GIL
        list(pool.map(lambda chunk: [_write_pair(str(corrected_root / path), e) for path, e in chunk], chunks))
    return len(missing)


def _write_pair(image: str, e: Entry) -> None:
    """The image link exists only once its label is complete: a pair is whole or written again. (Builds into one
    folder never overlap: the flow builds under the retrain lock, ``recovery.retrain_lock``.)"""
    with open(label_path(image), "wb") as f:
        f.write(e.label_bytes())
    try:
        os.symlink(e.source, image)
    except FileExistsError:
        pass  # another build wrote the same pair: same name, same content


def image_list(root: Path, listed: list[str]) -> bytes:
    """``train.txt`` / ``val.txt``: absolute paths, one per line, as Ultralytics reads image lists."""
    return "".join(f"{root}/{path}\n" for path in listed).encode()


def manifest_text(ordered: list[Entry], listed: list[str]) -> str:
    """The manifest as JSON, one entry per line: split, image (the file name as listed), source_image, image_sha256,
    label_sha256, label_source (base or correction), correction_id, path (as listed, relative to the folder),
    metadata (the image's camera, site...: an object, already canonical JSON).

    Written line by line with the json module's own string escaping: 2-3 times faster than encoding dicts, which
    counts at 100 000 images; a test checks that ``json.loads`` reads back every entry."""
    q = encode_basestring
    return (
        "[\n"
        + ",\n".join(
            f'{{"split": "{e.split}", "image": {q(e.name)}, "source_image": {q(e.source)},'
            f' "image_sha256": "{e.image_sha256}", "label_sha256": "{e.label_sha256}",'
            f' "label_source": "{e.label_source}",'
            f' "correction_id": {"null" if e.correction_id is None else q(e.correction_id)}, "path": {q(path)},'
            f' "metadata": {e.metadata or "{}"}}}'
            for e, path in zip(ordered, listed, strict=True)
        )
        + "\n]\n"
    )


def write_dataset_folder(root: Path, files: dict[str, bytes], links: dict[str, str]) -> None:
    """Write the dataset folder into a temporary sibling, then rename it to ``root`` in one step; ``data.yaml``
    (which marks a complete folder) is among ``files``."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for name, target in links.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, tmp / name)
        for name, content in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(content)
        if root.exists() and not (root / "data.yaml").exists():
            shutil.rmtree(root)  # left by something else: complete folders only ever appear by rename
        try:
            os.replace(tmp, root)
        except OSError:
            if not (root / "data.yaml").is_file():
                raise
            # another build of the same content won the race: its folder is identical
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def refresh(root: Path, files: dict[str, bytes], links: dict[str, str]) -> None:
    """Bring a reused folder up to date (images moved, a new correction id for the same labels): each link and
    file that differs is replaced atomically."""
    for name, target in links.items():
        path = root / name
        if not path.is_symlink() or os.readlink(path) != target:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            os.symlink(target, tmp)
            os.replace(tmp, path)
    for name, content in files.items():
        path = root / name
        try:
            current = path.read_bytes()
        except FileNotFoundError:
            current = None
        if current != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(content)
            os.replace(tmp, path)
