"""#20: a retrain trains and judges the team's own model the way it was trained. Real tiny trainings: one champion
trained by plain Ultralytics with its own recipe, shared by the module; one retrain; recipe errors refused first."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import import_corrections, use_home
from yolo_retrain import tracking
from yolo_retrain.cli.refusals import HideRefusalTracebacks
from yolo_retrain.errors import InvalidInput, TransientError
from yolo_retrain.store import CorrectionStore
from yolo_retrain.synthetic import SyntheticDataset, make_dataset

# How the team trained its champion: nothing here is yolo-retrain's or Ultralytics' default.
CHAMPION_RECIPE = {"imgsz": 96, "batch": 4, "lr0": 0.003, "optimizer": "AdamW", "fliplr": 0.0, "mosaic": 0.5}
HARDWARE_SETTINGS = ("IMGSZ", "BATCH", "DEVICE", "WORKERS")  # the tests' session sets them: a team has none


@pytest.fixture(scope="module")
def own_champion(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticDataset, Path]:
    """Weights trained by plain Ultralytics (not through yolo-retrain) with :data:`CHAMPION_RECIPE`."""
    from ultralytics import YOLO
    from ultralytics.utils import SETTINGS

    SETTINGS.update({"mlflow": False})  # plain Ultralytics would log to an MLflow of its own
    root = tmp_path_factory.mktemp("own-champion")
    data = make_dataset(root / "data", train=8, val=4, size=96)
    model = YOLO("yolov8n.yaml")
    model.train(
        data=str(data.data_yaml), epochs=1, device="cpu", workers=0, plots=False, project=str(root / "runs"),
        name="champion", **CHAMPION_RECIPE,
    )  # fmt: skip
    return data, Path(model.trainer.best)


@pytest.fixture(scope="module")
def team_home(own_champion, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home after `init --weights <the team's best.pt>`, with the reviewers' corrections pending."""
    from yolo_retrain.cli import app

    data, best = own_champion
    home = tmp_path_factory.mktemp("team-home")
    with pytest.MonkeyPatch.context() as mp:
        for key in HARDWARE_SETTINGS:
            mp.delenv(f"YOLO_RETRAIN_{key}")
        settings = use_home(mp, home, base_data=data.data_yaml)
        result = CliRunner().invoke(app, ["init", "--weights", str(best)])
        assert result.exit_code == 0, result.output
        assert import_corrections(settings, data)
    return home


@pytest.fixture
def team(team_home: Path, own_champion, monkeypatch: pytest.MonkeyPatch):
    """The team's settings: no training setting at all (epochs 1 only, to keep the test short)."""
    for key in HARDWARE_SETTINGS:
        monkeypatch.delenv(f"YOLO_RETRAIN_{key}")
    return lambda **env: use_home(monkeypatch, team_home, base_data=own_champion[0].data_yaml, epochs=1, plots=False, **env)


def _state(settings) -> tuple[int, dict[str, int]]:
    client = tracking.client_for(settings)
    runs = client.search_runs([tracking.resolve_experiment(client, settings)], "tags.type = 'retraining'")
    with CorrectionStore.from_settings(settings) as store:
        return len(runs), store.stats()


@pytest.mark.parametrize(
    ("recipe", "refusal"),
    [
        ("lr: 0.02\n", "key 'lr': 'lr' is not a valid YOLO argument. Similar arguments are i.e. ['lrf=0.01', 'lr0=0.01']."),
        ("lr0: fast\n", "key 'lr0': 'lr0=fast' is of invalid type str. Valid 'lr0' types are int (i.e. 'lr0=0') or float"),
        ("lr0: 3\n", "key 'lr0': 'lr0=3' is an invalid value. Valid 'lr0' values are between 0.0 and 1.0."),
        ("data: /elsewhere/data.yaml\n", "key 'data': a path or run identity: the retrain sets it"),
        ("project: /tmp/runs\n", "key 'project': a path or run identity: the retrain sets it"),
        ("epochs: 300\n", "key 'epochs': the retrain's own setting: YOLO_RETRAIN_EPOCHS or the flow's epochs parameter"),
        ("fraction: 0.5\n", "key 'fraction': would leave images out: a retrain learns from every accepted correction"),
        ("optimizer: Adamm\n", "key 'optimizer': Optimizer 'Adamm' not found in list of available optimizers"),
        ("imgsz: 16\n", "key 'imgsz': 'imgsz=16' must be at least 32"),
        ("batch: 0\n", "key 'batch': 'batch=0' must be a whole number >= 1, -1 (AutoBatch) or a GPU memory fraction"),
        ("- lr0\n", "must be a mapping of Ultralytics train arguments"),
    ],
    ids=["unknown", "type", "range", "data", "project", "epochs", "fraction", "optimizer", "imgsz", "batch", "list"],
)
def test_a_recipe_error_names_the_file_the_key_and_the_reason(tmp_path, recipe, refusal):
    from yolo_retrain.config import Settings
    from yolo_retrain.recipe import read_recipe_file

    path = tmp_path / "recipe.yaml"
    path.write_text(recipe)
    with pytest.raises(InvalidInput) as refused:
        read_recipe_file(Settings(recipe=path))
    assert str(refused.value).startswith(f"recipe {path}: {refusal}")


def test_a_valid_recipe_is_read_as_ultralytics_checks_it(tmp_path):
    from yolo_retrain.config import Settings
    from yolo_retrain.recipe import read_recipe_file

    path = tmp_path / "recipe.yaml"
    path.write_text("lr0: 0.002\noptimizer: SGD\nimgsz: 640\nbatch: -1\nfreeze: 10\nclose_mosaic: 0\ncos_lr: true\n")
    assert read_recipe_file(Settings(recipe=path)) == {
        "lr0": 0.002, "optimizer": "SGD", "imgsz": 640, "batch": -1, "freeze": 10, "close_mosaic": 0, "cos_lr": True,
    }  # fmt: skip
    assert read_recipe_file(Settings(recipe=None)) == {}


def test_the_recipe_layers_later_wins(own_champion, tmp_path, monkeypatch):
    """Ultralytics' defaults -> the champion's recorded arguments -> continuation -> recipe file -> settings."""
    from yolo_retrain.config import Settings
    from yolo_retrain.recipe import resolve

    for key in HARDWARE_SETTINGS:
        monkeypatch.delenv(f"YOLO_RETRAIN_{key}")
    best = own_champion[1]
    inherited = resolve(Settings(home=tmp_path, epochs=10), {}, best)
    assert {k: (inherited.args[k], inherited.sources[k]) for k in ("imgsz", "optimizer", "lr0", "mosaic", "epochs", "workers")} == {
        "imgsz": (96, "champion"), "optimizer": ("AdamW", "champion"), "lr0": (0.003, "champion"),
        "mosaic": (0.5, "champion"), "epochs": (10, "setting"), "workers": (min(8, os.cpu_count() or 1), "ultralytics"),
    }  # fmt: skip
    # Shorter than the champion's warmup (3 epochs): a tenth of its learning rate.
    short = resolve(Settings(home=tmp_path, epochs=3), {}, best)
    assert (short.args["lr0"], short.sources["lr0"], short.args["warmup_epochs"]) == (0.0003, "continuation", 3.0)
    assert not {"data", "model", "project", "name", "save_dir", "resume"} & inherited.args.keys()  # never a path
    team = resolve(Settings(home=tmp_path, imgsz=128, device="cpu"), {"lr0": 0.003, "imgsz": 64}, best)
    assert {k: (team.args[k], team.sources[k]) for k in ("imgsz", "lr0", "device")} == {
        "imgsz": (128, "setting"), "lr0": (0.003, "recipe"), "device": ("cpu", "setting"),
    }  # fmt: skip
    scratch = resolve(Settings(home=tmp_path), {"mosaic": 0.2}, "yolov8n.yaml")  # a first model from a YAML
    assert {k: (scratch.args[k], scratch.sources[k]) for k in ("imgsz", "lr0", "mosaic")} == {
        "imgsz": (640, "ultralytics"), "lr0": (0.01, "ultralytics"), "mosaic": (0.2, "recipe"),
    }  # fmt: skip
    assert set(scratch.sources.values()) == {"ultralytics", "recipe", "setting"}


def test_doctor_checks_the_recipe_file(tmp_path):
    from yolo_retrain.config import Settings
    from yolo_retrain.doctor import check_recipe

    path = tmp_path / "recipe.yaml"
    path.write_text("lr0: 0.002\nmosaic: 2\n")
    result = check_recipe(Settings(recipe=path))
    assert (result.ok, result.detail) == (False, f"recipe {path}: key 'mosaic': 'mosaic=2' is an invalid value. Valid 'mosaic' values are between 0.0 and 1.0.")
    path.write_text("lr0: 0.002\n")
    assert check_recipe(Settings(recipe=path)).detail == f"{path}: lr0=0.002"
    assert check_recipe(Settings(recipe=None)).detail == "none set: retrains use the champion's own training arguments"


@pytest.mark.e2e
def test_a_recipe_error_is_refused_before_any_run_or_claim(prefect_server, team, tmp_path):
    from flows.retrain import retrain

    path = tmp_path / "recipe.yaml"
    path.write_text("lr: 0.02\n")  # a typo of lr0
    settings = team(recipe=path)
    before = _state(settings)
    with pytest.raises(InvalidInput, match=f"^recipe {path}: key 'lr': 'lr' is not a valid YOLO argument"):
        retrain(trigger="manual")
    assert _state(settings) == before  # no MLflow run, nothing claimed (every correction still pending)
    assert before[1]["pending"] > 0 and before[1]["claimed"] == 0


@pytest.mark.e2e
def test_a_retrain_trains_and_judges_with_the_champions_recipe(prefect_server, team, tmp_path, monkeypatch):
    from ultralytics.engine.model import Model

    from flows.retrain import retrain

    (tmp_path / "recipe.yaml").write_text("mosaic: 0.0\nbatch: 2\n")  # the team's recipe: over the champion's
    settings = team(recipe=tmp_path / "recipe.yaml")
    validations: list[tuple[int, int]] = []  # what Ultralytics is asked to validate at: (imgsz, batch), then it runs
    real_val = Model.val

    def val(model, validator=None, **kwargs):
        validations.append((kwargs.get("imgsz"), kwargs.get("batch")))
        return real_val(model, validator, **kwargs)

    monkeypatch.setattr(Model, "val", val)

    report = retrain(trigger="manual", batch=8)  # a flow parameter: over the recipe and the champion

    run = tracking.client_for(settings).get_run(report.run_id)
    trained = yaml.safe_load((settings.runs_dir / f"train-{report.run_id[:8]}" / "args.yaml").read_text())
    # The champion's own arguments, but: the recipe's mosaic, the parameter's batch, a tenth of the champion's lr0 (the
    # continuation default for a retrain shorter than its warmup), the retrain's epochs, Ultralytics' device.
    expected = {**CHAMPION_RECIPE, "mosaic": 0.0, "batch": 8, "lr0": 0.0003, "warmup_epochs": 3.0, "epochs": 1, "device": "cpu"}
    assert {k: trained[k] for k in expected} == expected  # Ultralytics' own record of the candidate's training
    assert {k: run.data.params[k] for k in expected} == {k: str(v) for k, v in expected.items()}
    logged = yaml.safe_load(Path(tracking.client_for(settings).download_artifacts(report.run_id, "recipe.yaml", str(tmp_path))).read_text())
    assert {k: logged["sources"][k] for k in expected} == {
        "imgsz": "champion", "lr0": "continuation", "optimizer": "champion", "fliplr": "champion", "mosaic": "recipe",
        "batch": "setting", "warmup_epochs": "champion", "epochs": "setting", "device": "ultralytics",
    }  # fmt: skip
    # Champion (pre) and candidate (post) judged at the champion's size with the retrain's batch; training's own at 96.
    assert report.pre is not None and report.post is not None
    assert validations == [(96, 8), (96, 8)]
    assert "| `imgsz` | 96 | champion |" in report.markdown()


def test_a_refusal_leaves_prefect_error_lines_off_the_terminal_a_crash_does_not():
    def record(message: str, error: BaseException | None = None, name: str = "prefect.flow_runs") -> logging.LogRecord:
        exc_info = (type(error), error, None) if error else None
        return logging.LogRecord(name, logging.ERROR, __file__, 1, message, None, exc_info)

    refusal = InvalidInput("base data.yaml /x/data.yaml: cannot read dataset config (file not found)")
    hide = HideRefusalTracebacks().filter
    # As Prefect 3 logs a failed task and flow (messages as they appeared above a one-line refusal, #20 item 6):
    task_line = f"Finished in state Failed('Task run encountered an exception InvalidInput: {refusal}')"
    assert not hide(record(task_line, name="prefect.task_runs"))
    assert not hide(record(f"Encountered exception during execution: InvalidInput('{refusal}')", refusal))
    crash = RuntimeError("CUDA out of memory")
    assert hide(record("Encountered exception during execution: RuntimeError('CUDA out of memory')", crash))
    assert hide(record("Finished in state Failed('Task run encountered an exception RuntimeError: boom')", name="prefect.task_runs"))
    busy = TransientError("database is locked")  # a fault that outlasted its retries is no refusal
    assert hide(record("Encountered exception during execution: TransientError('database is locked')", busy))
    assert hide(record("a line of our own", refusal, name="yolo_retrain.flow"))  # only Prefect's lines are left out
