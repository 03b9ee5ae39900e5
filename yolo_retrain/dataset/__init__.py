"""Assemble a retraining dataset from a base Ultralytics dataset plus reviewers' corrections.

Layout under ``out_root``::

    <digest[:16]>/                  one dataset, named by the digest of its content
        data.yaml                     path: <this folder>, train: train.txt, val: val.txt, names
        train.txt, val.txt            every image's path, all inside this folder (Ultralytics reads image lists)
        manifest.json                 one entry per image (split, name, hashes, where image and label came from)
        b/<n>/{images,labels}         links to the base dataset's folders: unchanged base images are read in place
        c -> ../corrected             corrected and new images
        0/{images,labels}/<split>/    the first image of each split (see below)
    corrected/<xx>/{images,labels}/   one image link + label file per corrected image, named by the hash of image,
                                      label and location: written once, shared by every dataset that has it
    hash_cache.sqlite                 path -> size, mtime_ns, sha256: only new or changed files are read again

No image byte is copied, and a build writes files only for corrected images it has not seen before: a rebuild
after 100 new corrections writes 200 small files, two lists and the manifest. A changed label always gets a new
path. Ultralytics keeps its label cache beside the label of the first listed image (in sorted order); ``0/``
sorts first, so every dataset has a cache of its own, and a changed label is never served from a stale one.

Rules: a correction of a base image (same sha256) replaces its labels and keeps its split; any other correction image
is new and goes to val when ``int(sha[:8], 16) / 2**32 < holdout_fraction``, so no image ever changes split between
builds. The digest covers class names and each image's split, name, image hash and label hash, not file locations:
the same content always lands in the same dataset folder (its links re-pointed if the base moved). Base files are
read where they are: a base file changed in place gets a new hash (size or mtime changed) and so a new dataset.

One job a file: ``base`` reads the base data.yaml and lists its images, ``hash_cache`` hashes them (only what
changed), ``assembly`` decides each image's split and labels, ``placement`` writes the files, ``build`` runs the
four in order.
"""

from yolo_retrain.dataset.assembly import CorrectionLike
from yolo_retrain.dataset.base import SPLITS, BaseDataset, BaseImage, load_base_dataset
from yolo_retrain.dataset.build import BuiltDataset, build_dataset
from yolo_retrain.dataset.hash_cache import HASH_CACHE_NAME
from yolo_retrain.dataset.placement import CORRECTED_DIR, MANIFEST_FIELDS

__all__ = [
    "CORRECTED_DIR",
    "HASH_CACHE_NAME",
    "MANIFEST_FIELDS",
    "SPLITS",
    "BaseDataset",
    "BaseImage",
    "BuiltDataset",
    "CorrectionLike",
    "build_dataset",
    "load_base_dataset",
]
