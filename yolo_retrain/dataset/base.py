"""The base dataset: a validated data.yaml (read by ``yolo_retrain.data_yaml``) and every image with its label file."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from yolo_retrain.data_yaml import label_path, load_data_yaml
from yolo_retrain.errors import InvalidInput
from yolo_retrain.image_metadata import Metadata, read_sidecar, sidecar_beside

SPLITS = ("train", "val")


class BaseImage(NamedTuple):
    """One image of the base dataset (absolute paths); ``label`` is None when it has no label file (no objects)."""

    split: str
    image: str
    name: str  # the image's file name
    label: str | None


@dataclass(frozen=True)
class BaseDataset:
    """A validated base data.yaml: class names and every train/val image with its label file."""

    data_yaml: Path
    names: list[str]
    images: list[BaseImage]
    metadata: dict[str, Metadata] = field(default_factory=dict)  # image path -> camera, site... (metadata.csv)


def load_base_dataset(base_data: Path) -> BaseDataset:
    """Read and validate a detection data.yaml (resolved as Ultralytics does: ``yolo_retrain.data_yaml``); list its
    train and val images with their label files (the Ultralytics way: last ``/images/`` -> ``/labels/``, .txt).

    A ``metadata.csv`` beside the data.yaml gives images metadata (``image_metadata``: the gate's slices).

    Raises InvalidInput naming the data.yaml and the offending key or path (or the metadata file and its line).
    """
    data = load_data_yaml(base_data, "base data.yaml")
    # image folder -> (label folder, its file names, its entries that could not be read: name -> why)
    label_files: dict[str, tuple[str, frozenset[str], dict[str, str]]] = {}
    images: list[BaseImage] = []
    for split in SPLITS:
        files = data.images(split)
        if not files:
            raise InvalidInput(f"{data.describe()}: '{split}' holds no images")
        for image in files:
            folder, _, name = image.rpartition("/")
            labels = label_files.get(folder)
            if labels is None:  # one listing per folder, not one stat per image
                label_folder = label_path(image).rpartition("/")[0]
                labels = label_files[folder] = (f"{label_folder}/", *_files_in(label_folder))
            label = f"{name.rpartition('.')[0]}.txt"
            if label in labels[2]:  # an unreadable label is not "no objects"
                raise InvalidInput(f"{labels[0]}{label}: cannot read base label file ({labels[2][label]})")
            images.append(BaseImage(split, image, name, labels[0] + label if label in labels[1] else None))
    sidecar = sidecar_beside(Path(data.path))
    metadata = read_sidecar(sidecar, [i.image for i in images], "base data") if sidecar else {}
    return BaseDataset(data.path, data.names, images, metadata)


def _files_in(folder: str) -> tuple[frozenset[str], dict[str, str]]:
    """Names of the files in ``folder`` (none if there is no such folder: no label files, as Ultralytics reads it),
    and the entries that could not be read (name -> why: a link loop, a link to nothing).

    Any other failure to list it (a file or a dangling link in its place, a link loop, an I/O error) raises
    InvalidInput naming it: read as "no label files", every image in it would train as a background image.
    """
    files: list[str] = []
    unreadable: dict[str, str] = {}
    try:
        with os.scandir(folder) as it:
            for entry in it:
                try:
                    if entry.is_file():
                        files.append(entry.name)
                    elif entry.is_symlink() and not entry.is_dir():
                        unreadable[entry.name] = "a link to something that does not exist"
                except OSError as exc:
                    unreadable[entry.name] = exc.strerror or str(exc)
    except FileNotFoundError as exc:
        if os.path.lexists(folder):
            why = "a link to something that does not exist"
            raise InvalidInput(f"{folder}: cannot read base labels folder ({why})") from exc
        return frozenset(), {}
    except OSError as exc:
        raise InvalidInput(f"{folder}: cannot read base labels folder ({exc.strerror or exc})") from exc
    return frozenset(files), unreadable
