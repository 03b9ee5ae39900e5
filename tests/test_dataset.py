"""Tests of yolo_retrain.dataset on real files: small PNGs, label files and data.yaml in tmp_path."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from PIL import Image

from yolo_retrain.dataset import MANIFEST_FIELDS, BuiltDataset, build_dataset, load_base_dataset
from yolo_retrain.errors import InvalidInput
from yolo_retrain.hashing import file_sha256

T0 = datetime(2024, 1, 1, tzinfo=UTC)
BOX = "0 0.5 0.5 0.25 0.25\n"


@dataclass(frozen=True)
class Corr:
    """Stands in for yolo_retrain.store.Correction."""

    id: str
    image_sha256: str
    image_path: str
    label_text: str
    created_at: datetime


def make_png(path: Path, seed: int) -> Path:
    """A small PNG whose bytes are unique to ``seed``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (seed % 256, (seed * 7) % 256, (seed * 13) % 256)).save(path)
    return path


def make_base(root: Path, n_train: int = 4, n_val: int = 2) -> Path:
    """A base dataset with labelled train/val images (the last train image has no label file)."""
    for split, n, offset in (("train", n_train, 0), ("val", n_val, 100)):
        for i in range(n):
            make_png(root / "images" / split / f"img{i}.png", offset + i)
            if not (split == "train" and i == n - 1):
                label = root / "labels" / split / f"img{i}.txt"
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text(BOX * (i + 1))
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump({"train": "images/train", "val": "images/val", "names": {0: "cat", 1: "dog"}}))
    return data


def new_correction(blobs: Path, seed: int, cid: str, label: str = BOX, age: int = 0) -> Corr:
    """A correction of a new (non-base) image stored as a blob."""
    image = make_png(blobs / f"blob{seed}.png", 1000 + seed)
    return Corr(cid, file_sha256(image), str(image), label, T0 + timedelta(minutes=age))


def entries(built: BuiltDataset) -> dict[str, dict]:
    """Manifest entries by image sha256."""
    return {e["image_sha256"]: e for e in json.loads(built.manifest_path.read_text())}


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return make_base(tmp_path / "base")


def listed(built: BuiltDataset, split: str) -> list[Path]:
    """The image paths the dataset's train.txt / val.txt lists."""
    return [Path(line) for line in (built.root / f"{split}.txt").read_text().splitlines()]


def label_of(built: BuiltDataset, image_sha256: str) -> str:
    """The label text Ultralytics reads for an image of the dataset (found from its listed path, the Ultralytics way);
    "" for no label file (Ultralytics: a background image)."""
    from ultralytics.data.utils import img2label_paths

    (label,) = img2label_paths([str(built.root / entries(built)[image_sha256]["path"])])
    return Path(label).read_text() if Path(label).exists() else ""


def regular_image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` that are not symlinks: copied image bytes."""
    return [p for p in folder.rglob("*.png") if not p.is_symlink() and p.is_file()]


def test_layout_symlinks_and_data_yaml(base: Path, tmp_path: Path) -> None:
    built = build_dataset(base, [], tmp_path / "out")

    assert built.root == tmp_path / "out" / built.digest[:16]
    assert yaml.safe_load(built.data_yaml.read_text()) == {
        "path": str(built.root),
        "train": "train.txt",
        "val": "val.txt",
        "names": {0: "cat", 1: "dog"},
    }
    originals = {p.resolve() for p in (base.parent / "images").rglob("*.png")}
    linked = listed(built, "train") + listed(built, "val")
    assert len(linked) == 6 and all(p.is_relative_to(built.root) for p in linked)
    assert {p.resolve() for p in linked} == originals
    assert regular_image_files(tmp_path / "out") == []  # no image bytes copied
    for e in entries(built).values():
        source_label = Path(e["source_image"].replace("/images/", "/labels/")).with_suffix(".txt")
        assert label_of(built, e["image_sha256"]) == (source_label.read_text() if source_label.exists() else "")
        assert built.root / e["path"] in listed(built, e["split"])
    manifest = json.loads(built.manifest_path.read_text())
    assert manifest == sorted(manifest, key=lambda e: (e["split"], e["image_sha256"]))
    assert built.counts == {
        "train_images": 4,
        "val_images": 2,
        "corrected_images": 0,
        "new_images": 0,
        "overridden_base_images": 0,
        "duplicate_base_images": 0,
        "total_boxes": 1 + 2 + 3 + 1 + 2,
        "corrections_from_this_batch": 0,
        "corrections_from_earlier_retrains": 0,
        "corrections_held_rejected": 0,
    }
    assert json.loads(json.dumps(built.metadata()))["digest"] == built.digest


def test_ultralytics_image_formats_are_ours() -> None:
    from ultralytics.data.utils import IMG_FORMATS, img2label_paths

    from yolo_retrain.data_yaml import IMG_FORMATS as OURS
    from yolo_retrain.data_yaml import label_path

    assert OURS == IMG_FORMATS
    images = ["/d/images/train/a.b.png", "/d/images/x/images/c.JPG", "/d/other/e.png"]
    assert [label_path(i) for i in images] == img2label_paths(images)


def test_rebuild_writes_files_only_for_new_corrections(base: Path, tmp_path: Path) -> None:
    out, blobs = tmp_path / "out", tmp_path / "blobs"
    corrections = [new_correction(blobs, i, f"c{i}") for i in range(30, 70)]  # colours unlike the base images
    first = build_dataset(base, corrections, out)
    stored = set((out / "corrected").rglob("*.*"))
    # one link + one label per corrected image, except the one listed first in its split (it lives in 0/)
    assert first.corrected_written in (39, 40) and len(stored) == 2 * first.corrected_written

    again = build_dataset(base, list(reversed(corrections)), out)
    assert (again.root, again.reused, again.corrected_written) == (first.root, True, 0)

    second = build_dataset(base, [*corrections, new_correction(blobs, 99, "c99")], out)
    assert second.corrected_written in (1, 2)  # the new one, and the former first of its split if it was displaced
    assert len(listed(second, "train") + listed(second, "val")) == 6 + 41
    assert all(p.exists() for p in listed(first, "train") + listed(first, "val"))  # the first dataset is intact
    assert regular_image_files(out) == []


def test_manifest_lines_are_the_entries(tmp_path: Path) -> None:
    weird = tmp_path / 'base "q" \\ ünï' / "images" / "train" / 'a "b".png'
    make_png(weird, 77)
    data = make_base(tmp_path / 'base "q" \\ ünï', n_train=2, n_val=1)
    built = build_dataset(data, [new_correction(tmp_path / "blobs", 40, 'c"1')], tmp_path / "out")
    manifest = json.loads(built.manifest_path.read_text(encoding="utf-8"))
    assert len(built.manifest_path.read_text(encoding="utf-8").splitlines()) == len(manifest) + 2  # one per line
    assert all(tuple(e) == MANIFEST_FIELDS for e in manifest)  # the fields (and order) MLflow's dataset schema states
    by_name = {e["image"]: e for e in manifest}
    assert by_name['a "b".png']["source_image"] == str(weird)
    assert [e["correction_id"] for e in manifest if e["label_source"] == "correction"] == ['c"1']
    assert {e["path"] for e in manifest} == {str(p.relative_to(built.root)) for s in ("train", "val") for p in listed(built, s)}


def test_splits_are_stable_across_builds(base: Path, tmp_path: Path) -> None:
    out, blobs = tmp_path / "out", tmp_path / "blobs"
    first = build_dataset(base, [], out, holdout_fraction=0.5)
    news = [new_correction(blobs, i, f"c{i}") for i in range(8)]
    second = build_dataset(base, news[:6], out, holdout_fraction=0.5)
    third = build_dataset(base, news, out, holdout_fraction=0.5)

    for sha, e in entries(first).items():  # base images never change split
        assert entries(second)[sha]["split"] == entries(third)[sha]["split"] == e["split"]
    for c in news[:6]:  # a new image's split is fixed by its hash
        expected = "val" if int(c.image_sha256[:8], 16) / 2**32 < 0.5 else "train"
        assert entries(second)[c.image_sha256]["split"] == entries(third)[c.image_sha256]["split"] == expected
    assert third.counts["new_images"] == 8 and third.counts["overridden_base_images"] == 0
    assert {e["split"] for e in entries(third).values() if e["label_source"] == "correction"} == {"train", "val"}


def test_earlier_accepted_corrections_are_kept_and_the_newest_per_image_wins(base: Path, tmp_path: Path) -> None:
    blobs, out = tmp_path / "blobs", tmp_path / "out"
    val_image = base.parent / "images" / "val" / "img0.png"
    val_fix = Corr("e-val", file_sha256(val_image), str(val_image), "1 0.5 0.5 0.5 0.5\n", T0)
    earlier = [new_correction(blobs, i, f"e{i}", age=i) for i in range(4)] + [val_fix]
    newer_of_e0 = Corr("b0", earlier[0].image_sha256, earlier[0].image_path, "1 0.2 0.2 0.2 0.2\n", T0 + timedelta(days=1))
    batch = [newer_of_e0, new_correction(blobs, 9, "b1", age=9)]
    alone = build_dataset(base, earlier, out, holdout_fraction=0.5)
    built = build_dataset(base, batch, out, holdout_fraction=0.5, accepted=earlier, held_rejected=3)

    origins = {a["id"]: a["origin"] for a in built.corrections_applied}
    assert origins == {"e1": "earlier", "e2": "earlier", "e3": "earlier", "e-val": "earlier", "b0": "batch", "b1": "batch"}
    assert label_of(built, earlier[0].image_sha256) == newer_of_e0.label_text  # the batch's newer label wins
    assert label_of(built, val_fix.image_sha256) == val_fix.label_text  # an accepted holdout fix stays
    for sha, e in entries(alone).items():  # every image keeps its split: the holdout never leaks into train
        assert entries(built)[sha]["split"] == e["split"]
    assert entries(built)[val_fix.image_sha256]["split"] == "val"
    assert {k: built.counts[k] for k in built.counts if k.startswith("corrections_")} == {
        "corrections_from_this_batch": 2,
        "corrections_from_earlier_retrains": 4,
        "corrections_held_rejected": 3,
    }
    assert built.metadata()["counts"]["corrections_from_earlier_retrains"] == 4


def test_correction_of_base_image_replaces_its_labels(base: Path, tmp_path: Path) -> None:
    image = base.parent / "images" / "train" / "img0.png"
    sha = file_sha256(image)
    fixed = "1 0.1 0.2 0.3 0.4\n1 0.6 0.6 0.2 0.2\n"
    blob = tmp_path / "blobs" / f"{sha}.png"
    blob.parent.mkdir()
    shutil.copyfile(image, blob)
    built = build_dataset(base, [Corr("c1", sha, str(blob), fixed, T0)], tmp_path / "out")

    e = entries(built)[sha]
    assert (e["split"], e["label_source"], e["correction_id"]) == ("train", "correction", "c1")
    assert label_of(built, sha) == fixed
    assert built.corrections_applied == [
        {"id": "c1", "image_sha256": sha, "split": "train", "replaced_base": True, "origin": "batch"}
    ]
    assert built.counts["overridden_base_images"] == 1 and built.counts["train_images"] == 4


def test_digest_tracks_content_only(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = build_dataset(base, [], out)
    again = build_dataset(base, [], out)
    assert (again.digest, again.root, again.reused, first.reused) == (first.digest, first.root, True, False)

    moved = tmp_path / "elsewhere" / "renamed"
    shutil.copytree(base.parent, moved)
    from_copy = build_dataset(moved / "data.yaml", [], out)
    assert from_copy.digest == first.digest and from_copy.reused
    assert all(p.resolve().is_relative_to(moved) for p in listed(from_copy, "train") + listed(from_copy, "val"))

    (base.parent / "labels" / "val" / "img0.txt").write_text("1 0.5 0.5 0.1 0.1\n")
    changed = build_dataset(base, [], out)
    assert changed.digest != first.digest and changed.root != first.root and not changed.reused
    assert (first.root / "data.yaml").is_file()  # the old dataset is left as it was


def test_newest_correction_of_an_image_wins(base: Path, tmp_path: Path) -> None:
    old = new_correction(tmp_path / "blobs", 1, "old", label="0 0.1 0.1 0.1 0.1\n", age=0)
    new = Corr("new", old.image_sha256, old.image_path, "1 0.9 0.9 0.1 0.1\n", T0 + timedelta(hours=1))
    built = build_dataset(base, [new, old], tmp_path / "out")

    e = entries(built)[old.image_sha256]
    assert e["correction_id"] == "new"
    assert label_of(built, old.image_sha256) == new.label_text
    assert built.superseded_corrections == ["old"]
    assert [a["id"] for a in built.corrections_applied] == ["new"]


def test_hash_cache_rehashes_only_changed_files(base: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    calls: list[tuple[int, int]] = []
    assert build_dataset(base, [], out, progress=lambda d, t: calls.append((d, t))).hashed_files == 6
    assert calls[0] == (0, 6) and calls[-1] == (6, 6)

    correction = new_correction(tmp_path / "blobs", 1, "c1")
    assert build_dataset(base, [correction], out).hashed_files == 0  # correction hashes are trusted

    image = base.parent / "images" / "val" / "img1.png"
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    calls.clear()
    assert build_dataset(base, [correction], out, progress=lambda d, t: calls.append((d, t))).hashed_files == 1
    assert calls == [(5, 6), (6, 6)]


def test_same_image_in_both_splits_stays_in_val(tmp_path: Path) -> None:
    data = make_base(tmp_path / "base")
    shutil.copyfile(tmp_path / "base" / "images" / "val" / "img0.png", tmp_path / "base" / "images" / "train" / "x.png")
    built = build_dataset(data, [], tmp_path / "out")
    assert built.counts["duplicate_base_images"] == 1 and built.counts["train_images"] == 4


def test_txt_image_list_and_path_key(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    data = make_base(root)
    (root / "train.txt").write_text("./images/train/img0.png\nimages/train/img1.png\n")
    data.write_text(yaml.safe_dump({"path": "..", "train": "ds/train.txt", "val": ["ds/images/val"], "names": ["a"]}))
    base = load_base_dataset(data)
    assert [(i.split, os.path.basename(i.image), i.label is not None) for i in base.images] == [
        ("train", "img0.png", True),
        ("train", "img1.png", True),
        ("val", "img0.png", True),
        ("val", "img1.png", True),
    ]
    assert base.names == ["a"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "not found"),
        ("train: [unclosed", "not valid YAML"),
        ("- a list", "mapping"),
        ("train: images/train\nnames: [a]\n", "'val'"),
        ("train: images/train\nval: images/val\n", "'names'"),
        ("train: images/nowhere\nval: images/val\nnames: [a]\n", "images/nowhere"),
        ("train: images/train\nval: images/val\nnames: {1: a}\n", "'names'"),
    ],
)
def test_invalid_data_yaml(tmp_path: Path, content: str | None, reason: str) -> None:
    data = make_base(tmp_path / "base")
    if content is None:
        data.unlink()
    else:
        data.write_text(content)
    with pytest.raises(InvalidInput, match=reason) as err:
        build_dataset(data, [], tmp_path / "out")
    assert str(data) in str(err.value)


def test_ultralytics_reads_corrected_labels(base: Path, tmp_path: Path) -> None:
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    def train_labels(built: BuiltDataset) -> dict[Path, list[int]]:
        data = check_det_dataset(str(built.data_yaml))
        assert data["nc"] == 2 and data["names"] == {0: "cat", 1: "dog"}
        dataset = YOLODataset(img_path=data["train"], data=data, augment=False, imgsz=32)
        assert (built.root / "0" / "labels" / "train.cache").is_file()  # Ultralytics' label cache: this dataset's own
        return {Path(lb["im_file"]).resolve(): lb["cls"].ravel().tolist() for lb in dataset.labels}

    out = tmp_path / "out"
    image = base.parent / "images" / "train" / "img0.png"
    sha = file_sha256(image)
    assert train_labels(build_dataset(base, [], out))[image] == [0]
    fixed = "1 0.25 0.25 0.1 0.1\n1 0.75 0.75 0.1 0.1\n"
    labels = train_labels(build_dataset(base, [Corr("c1", sha, str(image), fixed, T0)], out))
    assert labels[image] == [1, 1] and len(labels) == 4


def test_a_base_label_file_over_the_limit_is_refused_naming_it(base: Path, tmp_path: Path) -> None:
    from yolo_retrain.labels import MAX_LABEL_BYTES

    huge = base.parent / "labels" / "train" / "img1.txt"
    with open(huge, "r+b") as f:
        f.truncate(MAX_LABEL_BYTES + 1)  # sparse: refused from its size, never read
    with pytest.raises(InvalidInput, match="base label file too large") as err:
        build_dataset(base, [], tmp_path / "out")
    assert str(huge) in str(err.value)
    assert not [p for p in (tmp_path / "out").iterdir() if p.is_dir()]  # no dataset folder, nothing placed


def _labels_folder_is_a_file(folder: Path) -> Path:
    shutil.rmtree(folder)
    folder.write_text("not a folder")
    return folder


def _labels_folder_is_a_dangling_link(folder: Path) -> Path:
    shutil.rmtree(folder)
    folder.symlink_to(folder.parent / "moved-away")
    return folder


def _labels_folder_is_a_link_loop(folder: Path) -> Path:
    shutil.rmtree(folder)
    folder.symlink_to(folder)  # ELOOP on every open
    return folder


def _a_label_entry_is_a_link_loop(folder: Path) -> Path:
    label = folder / "img0.txt"
    label.unlink()
    label.symlink_to(label)
    return label


def _a_label_entry_is_a_dangling_link(folder: Path) -> Path:
    label = folder / "img1.txt"
    label.unlink()
    label.symlink_to(folder / "gone.txt")
    return label


@pytest.mark.parametrize(
    "damage",
    [
        _labels_folder_is_a_file,
        _labels_folder_is_a_dangling_link,
        _labels_folder_is_a_link_loop,
        _a_label_entry_is_a_link_loop,
        _a_label_entry_is_a_dangling_link,
    ],
)
def test_a_label_folder_or_file_that_cannot_be_read_stops_the_build_naming_it(base: Path, tmp_path: Path, damage) -> None:
    """A read error is not "no objects": read as an empty folder, every image in it would train as background."""
    broken = damage(base.parent / "labels" / "train")
    with pytest.raises(InvalidInput, match="cannot read") as err:
        build_dataset(base, [], tmp_path / "out")
    assert str(broken) in str(err.value)
    assert not (tmp_path / "out").exists() or not [p for p in (tmp_path / "out").iterdir() if p.is_dir()]


def test_a_missing_labels_folder_still_means_background_images(base: Path, tmp_path: Path) -> None:
    shutil.rmtree(base.parent / "labels" / "train")  # as Ultralytics reads it: no label files, no objects
    images = load_base_dataset(base).images
    assert [i.label for i in images if i.split == "train"] == [None] * 4
    assert all(i.label for i in images if i.split == "val")


def test_an_image_folder_that_cannot_be_read_stops_the_build_naming_it(base: Path, tmp_path: Path) -> None:
    """A link back to its own folder: walked until the system refuses (ELOOP); the images below would be listed
    dozens of times over, then the rest silently skipped."""
    (base.parent / "images" / "train" / "loop").symlink_to(".")
    with pytest.raises(InvalidInput, match="cannot read image folder") as err:
        build_dataset(base, [], tmp_path / "out")
    assert str(base.parent / "images" / "train" / "loop") in str(err.value)
