"""The champion where production runs it (#24): the pyfunc loaded from the registry, and MLflow's own scoring server
on the registry alias answering image bytes; the champion's ONNX export, checked against its .pt on the holdout and
recorded with the version; the local champion folder following promotion and rollback. Real MLflow (SQLite,
`mlflow models serve`), real Ultralytics and ONNX Runtime; weights that detect without training, a 64 px holdout."""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import pytest
from conftest import TINY, use_home
from mlflow.exceptions import MlflowException
from PIL import Image
from typer.testing import CliRunner
from ultralytics import YOLO

from yolo_retrain import labels, processes, pyfunc_model, registry, retention, tracking
from yolo_retrain.cli import app
from yolo_retrain.exports.agreement import Boxes, compare_boxes
from yolo_retrain.exports.champion_folder import champion_folder_version
from yolo_retrain.exports.verify import export_and_verify
from yolo_retrain.synthetic import make_dataset, untrained_weights

pytestmark = pytest.mark.filterwarnings("ignore")


def detecting_weights(path: Path) -> Path:
    """YOLO weights that detect without any training: class 0's score bias is so high that every image gets
    class-0 boxes at the default confidence (an untrained model, like a 1-epoch one, detects nothing)."""
    model = YOLO(str(untrained_weights(path)))  # the project's classes: init refuses others
    for branch in model.model.model[-1].cv3:  # the detection head's class-score convolutions, one per scale
        branch[-1].bias.data[0] = 10.0
    model.save(path)
    return path


@pytest.fixture(scope="module")
def champion_home(tmp_path_factory):
    """``init --weights`` with ONNX exports on: champion v1, exported and checked on the base data's holdout."""
    root = tmp_path_factory.mktemp("serve")
    with pytest.MonkeyPatch.context() as mp:
        settings = use_home(mp, root / "home", **TINY, export_formats="onnx")
        data = make_dataset(settings.home / "demo", train=2, val=4, size=64)
        result = CliRunner().invoke(app, ["init", "--weights", str(detecting_weights(root / "champion.pt"))])
        assert result.exit_code == 0, result.output
        yield settings, data, result.output


@pytest.fixture
def in_champion_home(champion_home, monkeypatch):
    settings, data, output = champion_home
    use_home(monkeypatch, settings.home, **TINY, export_formats="onnx")
    return settings, data, output


def holdout_images(data) -> list[Path]:
    return sorted((data.data_yaml.parent / "images" / "val").glob("*.png"))


@functools.lru_cache(maxsize=4)
def _loaded(path: str, modified_ns: int) -> YOLO:
    return YOLO(path, task="detect")


def direct_boxes(weights: Path, image: Path, imgsz: int = 64) -> pd.DataFrame:
    """What the weights themselves find on the image, at the pyfunc's documented confidence."""
    model = _loaded(str(weights), weights.stat().st_mtime_ns)  # loaded once per file as it is now
    result = model.predict(str(image), imgsz=imgsz, conf=0.25, verbose=False)[0]
    return pd.DataFrame(
        {"class_id": result.boxes.cls.int().tolist(), "confidence": result.boxes.conf.tolist(), **{
            k: result.boxes.xyxy[:, i].tolist() for i, k in enumerate(("x1", "y1", "x2", "y2"))
        }}
    )


def test_champion_loads_as_pyfunc_and_predicts_boxes_from_paths_and_bytes(in_champion_home):
    settings, data, _ = in_champion_home
    mlflow.set_tracking_uri(settings.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@champion")
    images = holdout_images(data)[:2]
    by_path = model.predict(pd.DataFrame({"image": [str(p) for p in images]}))
    by_bytes = model.predict(pd.DataFrame({"image_bytes": [p.read_bytes() for p in images]}))

    assert list(by_path.columns) == pyfunc_model.COLUMNS
    pd.testing.assert_frame_equal(by_path, by_bytes)  # the same image, however it is sent
    assert sorted(set(by_path["image"])) == [0, 1]  # boxes on each image, rows numbered by input row
    for index, image in enumerate(images):  # exactly the boxes the champion's own weights detect there
        direct = direct_boxes(settings.champion_weights, image)
        rows = by_path[by_path["image"] == index]
        assert len(rows) == len(direct) > 0
        assert rows["class_id"].tolist() == direct["class_id"].tolist()
        assert set(rows["class_name"]) == {"square"}
        assert rows[["x1", "y1", "x2", "y2"]].to_numpy() == pytest.approx(direct[["x1", "y1", "x2", "y2"]].to_numpy(), abs=1e-3)
        assert rows["confidence"].to_numpy() == pytest.approx(direct["confidence"].to_numpy(), abs=1e-4)


def test_init_exports_the_champion_to_onnx_checked_against_its_pt(in_champion_home):
    settings, data, output = in_champion_home
    client = tracking.client_for(settings)
    version = client.get_model_version(settings.model_name, "1")

    assert version.tags["deployable_onnx"] == "true", version.tags.get("export_onnx")
    assert version.tags["export_onnx"].startswith("passed: boxes ")
    assert "export onnx: passed" in output
    exported = settings.champion_exports / "onnx" / "model.onnx"
    assert exported.is_file() and settings.champion_exports.is_symlink()
    manifest = json.loads((settings.champion_exports / "exports.json").read_text())
    assert manifest["version"] == "1" and manifest["weights_sha256"] == version.tags["weights_sha256"]
    figures = manifest["formats"]["onnx"]["agreement"]

    # The figures are what the two models find, counted here directly: the .pt's boxes and the ONNX model's.
    images = holdout_images(data)
    pt_boxes = sum(len(direct_boxes(settings.champion_weights, image)) for image in images)
    onnx_boxes = sum(len(direct_boxes(exported, image)) for image in images)
    assert figures["images"] == len(images) == 4
    assert figures["reference_boxes"] == pt_boxes > 0
    assert figures["export_boxes"] == onnx_boxes
    assert figures["matched"] == pt_boxes  # the export finds every box the .pt finds, of the same class
    # The export and the manifest are the run's artifacts too, under the version.
    logged = {a.path for a in client.list_artifacts(version.run_id, "exports/v1")}
    assert logged == {"exports/v1/onnx", "exports/v1/exports.json"}


def test_verify_checks_the_versions_exports_and_the_champion_folder(in_champion_home):
    from yolo_retrain.verify import _Target, check_exports

    settings, _, _ = in_champion_home
    client = tracking.client_for(settings)
    version = client.get_model_version(settings.model_name, "1")
    target = _Target(settings, client, client.get_run(version.run_id), version)
    assert check_exports(target).detail == "v1: onnx deployable"

    link = settings.champion_exports
    os.replace(link, link.with_name("champion-moved"))  # the champion's folder gone missing
    try:
        result = check_exports(target)
        assert not result.ok and "v1 is the champion but" in result.detail and "rollback --to 1" in result.fix
    finally:
        os.replace(link.with_name("champion-moved"), link)


def test_a_format_that_cannot_export_is_reported_and_not_deployable_and_nothing_is_installed(in_champion_home, monkeypatch):
    settings, data, _ = in_champion_home
    settings = use_home(monkeypatch, settings.home, **TINY, export_formats="openvino")  # its package is not installed
    client = tracking.client_for(settings)
    version = client.get_model_version(settings.model_name, "1")

    report = export_and_verify(settings, client, version, settings.champion_weights, data.data_yaml, 64)

    (outcome,) = report.outcomes
    assert not outcome.deployable and "openvino" in outcome.detail.lower()
    tags = client.get_model_version(settings.model_name, "1").tags
    assert tags["deployable_openvino"] == "false" and tags["export_openvino"].startswith("failed: ")
    assert tags["deployable_onnx"] == "true"  # the other format's record stands
    assert not any((settings.exports_dir / "v1").glob("openvino*"))
    import importlib.util

    assert importlib.util.find_spec("openvino") is None  # the exporter did not pip-install it


def test_agreement_counts_a_box_of_another_class_as_unmatched():
    import numpy as np

    box = np.array([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    reference = Boxes(box, np.array([0, 1]), np.array([0.9, 0.8]))
    shifted = Boxes(box + 1.0, np.array([0, 0]), np.array([0.9, 0.8]))  # IoU 0.68 each; the second relabelled
    agreement = compare_boxes("onnx", [reference], [shifted], map_reference=0.5, map_export=0.49)
    assert (agreement.matched, agreement.overlapping, agreement.same_class) == (1, 2, 1)
    assert agreement.box_agreement == 0.5 and agreement.class_agreement == 0.5
    assert agreement.problem(0.95, 0.01) == "box agreement 0.500 < 0.95"
    assert compare_boxes("onnx", [reference], [reference], 0.5, 0.489).problem(0.95, 0.01).startswith("mAP50-95 differs")
    assert compare_boxes("onnx", [reference], [reference], 0.5, 0.495).problem(0.95, 0.01) is None


def test_champion_folder_follows_promotion_and_rollback(in_champion_home, tmp_path):
    settings, data, _ = in_champion_home
    client = tracking.client_for(settings)
    experiment_id = tracking.resolve_experiment(client, settings)
    try:
        other = YOLO(str(detecting_weights(tmp_path / "other.pt")))
        other.model.model[-1].cv3[0][-1].bias.data[1] = 5.0  # other bytes, same classes
        other.save(tmp_path / "other.pt")
        other = tmp_path / "other.pt"
        second = registry.register_initial_champion(client, settings, experiment_id, other)
        assert champion_folder_version(settings) == str(second.version)  # promoted: the folder is the new champion's
        assert json.loads((settings.champion_exports / "exports.json").read_text())["formats"] == {}  # none made for it

        shutil.rmtree(settings.exports_dir / "v1")  # retired locally: the rollback fetches v1's from its run
        CliRunner().invoke(app, ["rollback"], catch_exceptions=False)
        assert champion_folder_version(settings) == "1"
        assert (settings.champion_exports / "onnx" / "model.onnx").is_file()
        assert os.readlink(settings.champion_exports) == os.path.join("exports", "v1")

        # Retention: a version's exports go with its weights (v2: neither champion, nor replaced by it, nor newest 0)
        planned = retention.plan(settings.model_copy(update={"keep_local_weights": 0}), client)
        retired = {str(r.path.relative_to(settings.models_dir)) for r in planned}
        assert {"exports/v2", "retrained_v2.pt"} <= retired and not {"exports/v1", "retrained_v1.pt"} & retired
    finally:  # the module's server serves the alias: v1 again whatever happened here
        registry.rollback(client, settings, "1")


def test_pyfunc_refuses_bad_images_naming_the_row():
    assert (pyfunc_model.MAX_IMAGE_BYTES, pyfunc_model.MAX_IMAGE_SIDE) == (labels.MAX_IMAGE_BYTES, labels.MAX_IMAGE_SIDE)
    refusals = {
        b"not an image at all": "row 0 (image_bytes): not an image",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40: "row 0 (image_bytes): corrupt or truncated PNG image",
    }
    for data, message in refusals.items():
        with pytest.raises(MlflowException, match=message.replace("(", r"\(").replace(")", r"\)")):
            pyfunc_model.YoloDetector().predict(None, pd.DataFrame({"image_bytes": [data]}))
    with pytest.raises(MlflowException, match=r"row 0 \(image\): /: not a regular file"):
        pyfunc_model.YoloDetector().predict(None, pd.DataFrame({"image": ["/"]}))
    with pytest.raises(MlflowException, match="only paths and file:// URIs"):
        pyfunc_model.YoloDetector().predict(None, pd.DataFrame({"image": ["http://example.com/a.png"]}))
    with pytest.raises(MlflowException, match="no column 'image_bytes'"):
        pyfunc_model.YoloDetector().predict(None, pd.DataFrame({"picture": ["a.png"]}))


@pytest.fixture(scope="module")
def scoring_server(champion_home):
    """`mlflow models serve` on the registry alias, as a new user starts it (no virtualenv built: --env-manager local)."""
    settings, _, _ = champion_home
    port = processes.free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": settings.tracking_uri, "YOLO_RETRAIN_HOME": str(settings.home)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # it execs `uvicorn`: the venv's
    command = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{settings.model_name}@champion",
        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1",
    ]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert server.poll() is None, server.stdout.read()
            try:
                if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow models serve did not answer /ping within 120 s")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_scoring_server_answers_image_bytes_with_the_champions_boxes(champion_home, scoring_server):
    settings, data, _ = champion_home
    images = holdout_images(data)[:2]
    encoded = [base64.b64encode(p.read_bytes()).decode() for p in images]
    body = {"dataframe_split": {"columns": ["image_bytes"], "data": [[e] for e in encoded]}}

    response = httpx.post(f"{scoring_server}/invocations", json=body, timeout=60)

    assert response.status_code == 200, response.text
    boxes = pd.DataFrame(response.json()["predictions"])
    assert list(boxes.columns) == pyfunc_model.COLUMNS
    for index, image in enumerate(images):  # exactly what the champion's own weights find on that image
        direct = direct_boxes(settings.champion_weights, image)
        rows = boxes[boxes["image"] == index]
        assert len(rows) == len(direct) > 0
        assert rows["class_id"].tolist() == direct["class_id"].tolist()
        assert rows[["x1", "y1", "x2", "y2"]].to_numpy() == pytest.approx(direct[["x1", "y1", "x2", "y2"]].to_numpy(), abs=1e-3)
        assert set(rows["class_name"]) == {"square"}


def test_scoring_server_refuses_a_non_image_with_400_naming_it(scoring_server):
    body = {"dataframe_split": {"columns": ["image_bytes"], "data": [[base64.b64encode(b"%PDF-1.7 not an image").decode()]]}}
    response = httpx.post(f"{scoring_server}/invocations", json=body, timeout=60)
    assert response.status_code == 400
    assert "row 0 (image_bytes): not an image" in response.json()["message"]


def test_logged_model_declares_its_signature_and_input_example(champion_home):
    settings, _, _ = champion_home
    mlflow.set_tracking_uri(settings.tracking_uri)
    info = mlflow.models.get_model_info(f"models:/{settings.model_name}@champion")
    assert [c["name"] for c in info.signature.inputs.to_dict()] == ["image_bytes", "image"]
    assert [c["name"] for c in info.signature.outputs.to_dict()] == pyfunc_model.COLUMNS
    example = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@champion").input_example
    assert Image.open(io.BytesIO(example["image_bytes"][0])).format == "PNG"
