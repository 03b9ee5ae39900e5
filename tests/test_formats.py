"""Corrections from the tools teams label with, each export built as the tool writes it, with the tool's class order
(not the project's): the stored labels must carry the project's ids. Real files, a real SQLite store, no mocks."""

from __future__ import annotations

import io
import json
import os
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from yolo_retrain import intake
from yolo_retrain.cli import app
from yolo_retrain.config import Settings, get_settings
from yolo_retrain.data_yaml import load_data_yaml, read_class_names
from yolo_retrain.dataset import load_base_dataset
from yolo_retrain.errors import InvalidInput
from yolo_retrain.formats import read_export
from yolo_retrain.formats.archive import extract_zip
from yolo_retrain.formats.cvat_ultralytics import clean_labels
from yolo_retrain.store import CorrectionStore

PROJECT = ["square", "circle", "triangle"]
TOOL_ORDER = ["circle", "square", "triangle"]  # alphabetical, as Label Studio numbers them: 0 is not 'square'
# Each image: the class names of its boxes. Stored labels must say these names through the project's ids.
SHAPES = {"a": ["circle"], "b": ["square", "triangle"], "c": ["square"]}


def image_bytes(seed: int, fmt: str = "JPEG") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt)
    return buf.getvalue()


def label_text(names: list[str], order: list[str], extra: str = "") -> str:
    """YOLO lines for ``names`` numbered in ``order`` (the tool's), one box each at a distinct place."""
    return "".join(f"{order.index(n)} 0.{i + 2} 0.5 0.1 0.2{extra}\n" for i, n in enumerate(names))


def expected_text(names: list[str]) -> str:
    """The stored label text: the same boxes with the project's ids (canonical form, sorted)."""
    lines = (f"{PROJECT.index(n)} 0.{i + 2}00000 0.500000 0.100000 0.200000\n" for i, n in enumerate(names))
    return "".join(sorted(lines))


def write_images(folder: Path, suffix: str = ".jpg") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for seed, stem in enumerate(SHAPES):
        (folder / f"{stem}{suffix}").write_bytes(image_bytes(seed))


def write_labels(folder: Path, order: list[str], extra: str = "", prefix: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, names in SHAPES.items():
        (folder / f"{prefix}{stem}.txt").write_text(label_text(names, order, extra))


def zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder))
    return archive


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    base = tmp_path / "base"
    write_images(base / "images" / "train")
    write_images(base / "images" / "val")
    (base / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "val": "images/val", "names": PROJECT}))
    monkeypatch.setenv("YOLO_RETRAIN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("YOLO_RETRAIN_BASE_DATA", str(base / "data.yaml"))
    monkeypatch.delenv("YOLO_RETRAIN_CORRECTIONS_DB_URL", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def stored(settings: Settings) -> dict[str, str]:
    """Stored label text by image stem."""
    with CorrectionStore.from_settings(settings) as store:
        return {Path(c.original_name).stem.rpartition("-")[2]: c.label_text for c in store.list()}


def run_import(settings: Settings, path: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["corrections", "import", str(path), *args])
    assert result.exit_code == 0, result.output
    return result.output


def assert_project_ids(settings: Settings, expected: dict[str, list[str]] = SHAPES) -> None:
    assert stored(settings) == {stem: expected_text(names) for stem, names in expected.items()}


# One test per tool, the tree as the tool writes it -------------------------------------------------------------------


def test_plain_folder_keeps_its_ids_when_told_so(settings: Settings, tmp_path: Path) -> None:
    export = tmp_path / "export"
    write_images(export / "images")
    write_labels(export / "labels", PROJECT)  # no class names: nothing to check its ids against by name
    refused = CliRunner().invoke(app, ["corrections", "import", str(export)])
    assert refused.exit_code == 2 and stored(settings) == {}
    message = refused.stderr.strip().splitlines()[-1]
    assert str(export) in message and "names no classes" in message and "--format plain" in message
    assert "0 'square', 1 'circle', 2 'triangle'" in message  # what the ids would be taken as
    output = run_import(settings, export, "--format", "plain")  # the operator says the ids are the project's
    assert "(plain)" in output and "renumbered" not in output
    assert_project_ids(settings)


def test_label_studio_yolo_with_images(settings: Settings, tmp_path: Path) -> None:
    export = tmp_path / "project-1-at-2026-12-03"
    write_images(export / "images")
    write_labels(export / "labels", TOOL_ORDER)
    (export / "classes.txt").write_text("".join(f"{n}\n" for n in reversed(TOOL_ORDER)))  # stale: notes.json wins
    categories = [{"id": i, "name": n} for i, n in enumerate(TOOL_ORDER)]
    (export / "notes.json").write_text(json.dumps({"categories": categories, "info": {"contributor": "Label Studio"}}))
    output = run_import(settings, zip_folder(export, tmp_path / "project-1.zip"))  # the download, as it comes
    assert "(label-studio)" in output
    assert "0 'circle' -> 1 (renumbered)" in output and "1 'square' -> 0 (renumbered)" in output
    assert_project_ids(settings)


def test_label_studio_yolo_without_images_takes_them_from_images_dir(settings: Settings, tmp_path: Path) -> None:
    export = tmp_path / "ls"
    # Label Studio names an uploaded file <8 hex>-<name>; the label files keep that name
    write_labels(export / "labels", TOOL_ORDER, prefix="9b24222a-")
    (export / "classes.txt").write_text("\n".join(TOOL_ORDER) + "\n")
    photos = tmp_path / "photos"
    write_images(photos / "day1")
    refused = CliRunner().invoke(app, ["corrections", "import", str(export)])
    assert refused.exit_code == 2
    assert "3 label files have no image" in refused.stderr and "9b24222a-a.txt" in refused.stderr
    assert "--images" in refused.stderr and stored(settings) == {}

    (photos / "day1" / "c.jpg").unlink()
    refused = CliRunner().invoke(app, ["corrections", "import", str(export), "--images", str(photos)])
    assert refused.exit_code == 2 and "1 label files have no image" in refused.stderr
    assert "9b24222a-c.txt" in refused.stderr and stored(settings) == {}

    write_images(photos / "day2")
    (photos / "day2" / "a.jpg").unlink()
    (photos / "day2" / "b.jpg").unlink()
    run_import(settings, export, "--images", str(photos))
    assert_project_ids(settings)


def test_cvat_yolo_1_1(settings: Settings, tmp_path: Path) -> None:
    export = tmp_path / "cvat"
    write_images(export / "obj_train_data")
    write_labels(export / "obj_train_data", TOOL_ORDER)  # label files beside the images
    (export / "obj.names").write_text("\n".join(TOOL_ORDER) + "\n")
    (export / "obj.data").write_text("classes = 3\nnames = data/obj.names\ntrain = data/train.txt\nbackup = backup/\n")
    (export / "train.txt").write_text("".join(f"data/obj_train_data/{s}.jpg\n" for s in SHAPES))
    output = run_import(settings, zip_folder(export, tmp_path / "task_1-yolo 1.1.zip"))
    assert "(cvat-yolo)" in output
    assert_project_ids(settings)


def test_cvat_ultralytics_detection(settings: Settings, tmp_path: Path) -> None:
    export = tmp_path / "cvat-ul"
    write_images(export / "images" / "train")
    write_labels(export / "labels" / "train", TOOL_ORDER, extra=" 7")  # the track id, a 6th column
    (export / "labels" / "train" / "c.txt").unlink()  # an image without a label file: no objects
    (export / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 1.0000002 0.2 3\n")  # a hair outside: clipped
    (export / "train.txt").write_text("".join(f"images/train/{s}.jpg\n" for s in SHAPES))
    names = dict(enumerate(TOOL_ORDER))
    (export / "data.yaml").write_text(yaml.safe_dump({"path": "./", "train": "train.txt", "names": names}))
    output = run_import(settings, zip_folder(export, tmp_path / "task_2.zip"))
    assert "(cvat-ultralytics)" in output
    labels = stored(settings)
    assert labels["b"] == expected_text(SHAPES["b"]) and labels["c"] == ""
    assert labels["a"] == "1 0.500000 0.500000 1.000000 0.200000\n"  # circle: the box cut at the image edges


def test_cvat_ultralytics_refuses_a_box_well_outside(tmp_path: Path) -> None:
    assert clean_labels("0 1.2 0.5 0.2 0.2\n", "x.txt") == "0 1.2 0.5 0.2 0.2\n"  # left to validation: refused
    assert clean_labels("\n0 0.5 0.5 0.2 0.2 12\n", "x.txt") == "\n0 0.5 0.5 0.2 0.2\n"  # line numbers kept


def test_roboflow_export(settings: Settings, tmp_path: Path) -> None:
    export = tmp_path / "My-Project.v3i.yolov8"
    for subset in ("train", "valid"):
        write_images(export / subset / "images")
        write_labels(export / subset / "labels", TOOL_ORDER)
    (export / "valid" / "images" / "b.jpg").unlink()
    (export / "valid" / "labels" / "b.txt").unlink()
    for name in ("a", "c"):  # same files in valid as in train would be duplicates: other pixels
        (export / "valid" / "images" / f"{name}.jpg").write_bytes(image_bytes(ord(name)))
    (export / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\nnc: 3\n"
        f"names: {TOOL_ORDER}\n\nroboflow:\n  workspace: w\n  project: my-project\n  version: 3\n"
        "  license: CC BY 4.0\n  url: https://universe.roboflow.com/w/my-project/dataset/3\n"
    )
    output = run_import(settings, export / "data.yaml")
    assert "(roboflow)" in output and "imported 5 corrections" in output
    with CorrectionStore.from_settings(settings) as store:
        texts = sorted(c.label_text for c in store.list())
    assert texts == sorted([expected_text(SHAPES[s]) for s in ("a", "b", "c", "a", "c")])


def test_ultralytics_dataset_with_lists(settings: Settings, tmp_path: Path) -> None:
    export = tmp_path / "ds"
    write_images(export / "images" / "train")
    write_labels(export / "labels" / "train", TOOL_ORDER)
    (export / "train.txt").write_text("./images/train/a.jpg\nimages/train/b.jpg\n")
    (export / "labels" / "train" / "c.txt").unlink()
    (export / "data.yaml").write_text(
        yaml.safe_dump(
            {"path": ".", "train": ["train.txt"], "val": "images/train", "names": dict(enumerate(TOOL_ORDER))}
        )
    )
    output = run_import(settings, export)
    assert "(ultralytics)" in output
    assert_project_ids(settings, {"a": SHAPES["a"], "b": SHAPES["b"], "c": []})


# Refusals: nothing stored ----------------------------------------------------------------------------------------


def test_an_unknown_class_name_refuses_the_whole_import(settings: Settings, tmp_path: Path) -> None:
    export = tmp_path / "ls"
    write_images(export / "images")
    write_labels(export / "labels", TOOL_ORDER)
    (export / "classes.txt").write_text("circle\nsquare\nhexagon\n")  # the tool calls class 2 'hexagon'
    result = CliRunner().invoke(app, ["corrections", "import", str(export)])
    assert result.exit_code == 2
    message = result.stderr.strip().splitlines()[-1]
    assert "'hexagon'" in message and "'square', 'circle', 'triangle'" in message and "nothing was imported" in message
    assert stored(settings) == {}


def test_a_class_id_the_export_does_not_name_is_refused(settings: Settings, tmp_path: Path) -> None:
    export = tmp_path / "ls"
    write_images(export / "images")
    write_labels(export / "labels", TOOL_ORDER)
    (export / "classes.txt").write_text("circle\nsquare\n")  # 2 names; b.txt uses id 2
    with (
        CorrectionStore.from_settings(settings) as store,
        pytest.raises(InvalidInput, match=r"b\.txt:2: class 2 out of range"),
    ):
        intake.import_corrections(store, settings, export)
    assert stored(settings) == {}


def test_a_zip_with_an_entry_escaping_the_folder_is_refused(settings: Settings, tmp_path: Path) -> None:
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("images/a.jpg", image_bytes(1))
        zf.writestr("labels/a.txt", "0 0.5 0.5 0.1 0.1\n")
        zf.writestr("../../evil.txt", "owned")
    result = CliRunner().invoke(app, ["corrections", "import", str(archive)])
    assert result.exit_code == 2
    assert "'../../evil.txt': path escapes the archive" in result.stderr
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()
    assert stored(settings) == {}


def test_a_zip_with_a_link_or_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        link = zipfile.ZipInfo("images/a.jpg")
        link.create_system = 3
        link.external_attr = (0o120777 << 16)  # a symbolic link to /etc/passwd
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(InvalidInput, match="symbolic link"):
        extract_zip(archive, tmp_path / "out1")
    assert not (tmp_path / "out1").exists() or not any((tmp_path / "out1").rglob("*"))

    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("labels/a.txt", "0" * 100_000)  # compresses to a few hundred bytes
    (tmp_path / "out2").mkdir()
    with pytest.raises(InvalidInput, match="over the limit of 50000"):
        extract_zip(big, tmp_path / "out2", max_bytes=50_000)
    assert not any((tmp_path / "out2").rglob("*"))


def test_a_fifo_as_image_is_refused_without_blocking(settings: Settings, tmp_path: Path) -> None:
    fifo = tmp_path / "image.jpg"
    os.mkfifo(fifo)
    (tmp_path / "image.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    # if the FIFO were opened, this would wait for a writer forever: a watchdog writer unblocks it after 20 s
    watchdog = threading.Timer(20, lambda: open(fifo, "wb").close())
    watchdog.start()
    started = time.monotonic()
    try:
        result = CliRunner().invoke(app, ["corrections", "add", str(fifo), str(tmp_path / "image.txt")])
    finally:
        watchdog.cancel()
    assert time.monotonic() - started < 10
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {fifo}: image must be a regular file, this is a FIFO (named pipe)"
    assert stored(settings) == {}


def test_a_device_as_image_is_refused_before_reading(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("")
    result = CliRunner().invoke(app, ["corrections", "add", "/dev/zero", str(tmp_path / "labels.txt")])
    assert result.exit_code == 2
    assert "/dev/zero: image must be a regular file, this is a character device" in result.stderr


def test_a_label_file_over_its_limit_is_refused(settings: Settings, tmp_path: Path, monkeypatch) -> None:
    from yolo_retrain import labels

    monkeypatch.setattr(labels, "MAX_LABEL_BYTES", 64)
    export = tmp_path / "export"
    write_images(export / "images")
    write_labels(export / "labels", PROJECT)
    (export / "labels" / "b.txt").write_text("0 0.5 0.5 0.1 0.1\n" * 10)
    with (
        CorrectionStore.from_settings(settings) as store,
        pytest.raises(InvalidInput, match="b.txt: label file too large"),
    ):
        intake.import_corrections(store, settings, export)
    assert stored(settings) == {}


def test_format_named_and_images_only_where_it_means_something(settings: Settings, tmp_path: Path) -> None:
    export = tmp_path / "export"
    write_images(export / "images")
    write_labels(export / "labels", PROJECT)
    with pytest.raises(InvalidInput, match="unknown format"):
        read_export(export, "coco")
    with pytest.raises(InvalidInput, match="--images is for label-studio, cvat-yolo"):
        read_export(export, None, tmp_path)
    with pytest.raises(InvalidInput, match="not an export this tool knows"):
        read_export(tmp_path / "base" / "images")


# The base data.yaml, as Ultralytics resolves it -----------------------------------------------------------------


def test_a_roboflow_data_yaml_is_a_valid_base(tmp_path: Path) -> None:
    root = tmp_path / "rf"
    for subset in ("train", "valid"):
        write_images(root / subset / "images")
        write_labels(root / subset / "labels", PROJECT)
    (root / "data.yaml").write_text(
        f"train: ../train/images\nval: ../valid/images\ntest: ../test/images\nnc: 3\nnames: {PROJECT}\n"
        "roboflow:\n  workspace: w\n  project: p\n  version: 1\n"
    )
    base = load_base_dataset(root / "data.yaml")
    assert base.names == PROJECT and read_class_names(root / "data.yaml") == PROJECT
    assert sorted((i.split, Path(i.image).parent.parent.name, i.label is not None) for i in base.images) == (
        [("train", "train", True)] * 3 + [("val", "valid", True)] * 3
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("train: a\nval: a\nnc: 2\nnames: [x, y, z]\n", "'names' has 3 classes but 'nc' is 2"),
        ("train: a\nval: a\nnc: two\n", "'nc' must be a positive integer"),
        ("train: a\nval: a\n", "no class 'names' \\(and no 'nc'\\)"),
    ],
)
def test_names_and_nc_are_checked(tmp_path: Path, content: str, reason: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "data.yaml").write_text(content)
    with pytest.raises(InvalidInput, match=reason):
        load_data_yaml(tmp_path / "data.yaml")


def test_nc_without_names_and_validation_key(tmp_path: Path) -> None:
    write_images(tmp_path / "images" / "v")
    (tmp_path / "data.yaml").write_text("train: images/v\nvalidation: images/v\nnc: 2\n")
    data = load_data_yaml(tmp_path / "data.yaml")
    assert data.names == ["class_0", "class_1"] and not data.named and len(data.images("val")) == 3


# Weights against the class contract --------------------------------------------------------------------------------


def test_init_refuses_weights_of_other_classes(settings: Settings, tmp_path: Path) -> None:
    from yolo_retrain import tracking
    from yolo_retrain.model_classes import ClassMismatch, check_model_classes
    from yolo_retrain.synthetic import untrained_weights

    weights = untrained_weights(tmp_path / "pets.pt", ["cat", "dog", "bird"])
    result = CliRunner().invoke(app, ["init", "--weights", str(weights)])
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {weights}: the model's classes ['cat', 'dog', 'bird'] differ from the project's")
    assert str(PROJECT) in last
    assert tracking.client_for(settings).get_experiment_by_name(settings.experiment_name) is None  # nothing created

    reordered = untrained_weights(tmp_path / "reordered.pt", TOOL_ORDER)
    with pytest.raises(ClassMismatch, match="same names, another order"):
        check_model_classes(reordered, PROJECT, "base")
    assert check_model_classes(reordered, TOOL_ORDER, "base") == TOOL_ORDER  # (init --weights of the right classes:
    # test_bad_input.py and test_faults.py)


# Errors a person sees --------------------------------------------------------------------------------------------


def test_a_refused_retrain_prints_its_error_last(tmp_path: Path) -> None:
    """The real command, with Prefect's temporary server: the error is the last line, after anything Prefect prints."""
    import subprocess
    import sys

    bad = tmp_path / "data.yaml"
    bad.write_text("train: images/gone\nval: images/gone\nnames: [square, circle]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(YOLO_RETRAIN_HOME=str(tmp_path / "home"), YOLO_RETRAIN_BASE_DATA=str(bad))
    cli = Path(sys.executable).with_name("yolo-retrain")
    run = [str(cli), "run", "--force"]
    result = subprocess.run(run, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300, check=False)
    assert result.returncode == 2, result.stdout
    lines = result.stdout.strip().splitlines()
    # Prefect may log its temporary server's shutdown after the flow (shown with --verbose or a warning level):
    # whatever it prints, the reason is the last line
    assert lines[-1] == (
        f"error: base data.yaml {bad}: 'train' path {tmp_path / 'images' / 'gone'} is not a folder or a .txt list"
    )


def _outside_dataset(tmp_path: Path) -> Path:
    """A dataset outside any archive: what a zip's data.yaml must not reach."""
    outside = tmp_path / "outside"
    write_images(outside / "images")
    write_labels(outside / "labels", PROJECT)
    return outside


ESCAPES = {  # a zip's data.yaml (or obj.data) naming files outside the extracted archive
    "absolute path key": lambda out: {"data.yaml": yaml.safe_dump({"path": str(out), "train": "images", "names": PROJECT})},
    "relative path key": lambda out: {"data.yaml": yaml.safe_dump({"path": "../outside", "train": "images", "names": PROJECT})},
    "absolute split": lambda out: {"data.yaml": yaml.safe_dump({"train": str(out / "images"), "names": PROJECT})},
    "list naming outside images": lambda out: {
        "data.yaml": yaml.safe_dump({"train": "train.txt", "names": PROJECT}),
        "train.txt": "".join(f"{out}/images/{s}.jpg\n" for s in SHAPES),
    },
    "obj.data naming an outside names file": lambda out: {
        "obj.data": f"classes = 3\nnames = {out}/obj.names\n",
        "obj_train_data/a.jpg": image_bytes(0),
        "obj_train_data/a.txt": "0 0.5 0.5 0.1 0.1\n",
    },
}


@pytest.mark.parametrize("case", ESCAPES)
def test_a_zip_whose_config_points_outside_the_archive_is_refused(settings: Settings, tmp_path: Path, case: str) -> None:
    outside = _outside_dataset(tmp_path)
    (outside / "obj.names").write_text("\n".join(PROJECT) + "\n")
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, content in ESCAPES[case](outside).items():
            zf.writestr(name, content)
    with CorrectionStore.from_settings(settings) as store, pytest.raises(InvalidInput, match="outside the archive") as err:
        intake.import_corrections(store, settings, archive, format=None if case.startswith("obj") else "ultralytics")
    assert str(outside) in str(err.value) or "../outside" in str(err.value)
    assert stored(settings) == {}
    # the same yaml in a folder the operator points at may name files anywhere: it is theirs


def test_an_ultralytics_export_with_nc_but_no_names_is_refused_until_told(settings: Settings, tmp_path: Path) -> None:
    export = tmp_path / "ds"
    write_images(export / "images" / "train")
    write_labels(export / "labels" / "train", TOOL_ORDER)  # the tool's ids: taken on trust they would mislabel
    (export / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images/train", "nc": 3}))
    with CorrectionStore.from_settings(settings) as store, pytest.raises(InvalidInput, match="names no classes") as err:
        intake.import_corrections(store, settings, export)
    assert str(export / "data.yaml") in str(err.value) and "--format ultralytics" in str(err.value)
    assert stored(settings) == {}


@pytest.mark.parametrize("names", [["9b24222a-a.txt", "5e6f7a8b-a.txt"], ["a.txt", "9b24222a-a.txt"]])
def test_two_label_files_for_one_image_are_refused_naming_both(settings: Settings, tmp_path: Path, names) -> None:
    """Label Studio's upload prefix is stripped to find an image: two label files may then pair with one image,
    and the second would silently supersede the first."""
    export = tmp_path / "ls"
    (export / "labels").mkdir(parents=True)
    (export / "labels" / names[0]).write_text(label_text(["circle"], TOOL_ORDER))
    (export / "labels" / names[1]).write_text(label_text(["square"], TOOL_ORDER))
    (export / "classes.txt").write_text("\n".join(TOOL_ORDER) + "\n")
    photos = tmp_path / "photos"
    write_images(photos)
    with CorrectionStore.from_settings(settings) as store, pytest.raises(InvalidInput, match="both pair with") as err:
        intake.import_corrections(store, settings, export, images=photos)
    assert all(str(export / "labels" / n) in str(err.value) for n in names) and str(photos / "a.jpg") in str(err.value)
    assert stored(settings) == {}


def test_one_image_twice_with_different_labels_is_refused_naming_both(settings: Settings, tmp_path: Path) -> None:
    """The same picture under two names (identical bytes) labelled two ways: storing both, one would silently
    supersede the other. The same labels twice are no conflict."""
    export = tmp_path / "export"
    write_images(export / "images")
    write_labels(export / "labels", PROJECT)
    (export / "images" / "a-copy.jpg").write_bytes((export / "images" / "a.jpg").read_bytes())
    (export / "labels" / "a-copy.txt").write_text(label_text(["square"], PROJECT))  # a.txt says circle
    with CorrectionStore.from_settings(settings) as store, pytest.raises(InvalidInput, match="same image") as err:
        intake.import_corrections(store, settings, export, format="plain")
    assert str(export / "labels" / "a.txt") in str(err.value) and str(export / "labels" / "a-copy.txt") in str(err.value)
    assert stored(settings) == {}


@pytest.mark.parametrize("damage", ["a file", "a link to nothing", "a link loop"])
def test_a_labels_folder_that_cannot_be_read_is_not_read_as_images_without_objects(
    settings: Settings, tmp_path: Path, damage: str
) -> None:
    """Read as "no label file", every image would be stored as a correction saying it holds no objects."""
    export = tmp_path / "ds"
    write_images(export / "images" / "train")
    labels = export / "labels" / "train"
    labels.parent.mkdir(parents=True)
    if damage == "a file":
        labels.write_text("not a folder")
    elif damage == "a link to nothing":
        labels.symlink_to(tmp_path / "moved-away")
    else:
        labels.symlink_to(labels)
    (export / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images/train", "names": PROJECT}))
    with CorrectionStore.from_settings(settings) as store, pytest.raises(InvalidInput, match="cannot read") as err:
        intake.import_corrections(store, settings, export)
    assert str(labels) in str(err.value)
    assert stored(settings) == {}
