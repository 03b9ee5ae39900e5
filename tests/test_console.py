"""The terminal: a bar per stage and the summary; the libraries' own output in train.log, live only with --verbose."""

from __future__ import annotations

import gc
import logging
import os
import sys

import pytest
from conftest import TINY, use_home
from typer.testing import CliRunner

from yolo_retrain import console, tracking
from yolo_retrain.cli import app

CHATTER = "engine/trainer: agnostic_nms=False, amp=True"  # the kind of line Ultralytics prints

pytestmark = pytest.mark.e2e  # the shared world: a Prefect server


def _library_speaks() -> None:
    """What Ultralytics does: print, log through its logger, write a bar to stderr."""
    print(CHATTER)
    logging.getLogger("ultralytics").info("YOLOv8n summary: 129 layers")
    sys.stderr.write("  1/1 0.5G 1.2 batch bar\n")


def test_quiet_terminal_shows_the_bar_and_train_log_gets_the_libraries(tmp_path, capsys):
    log = tmp_path / "train.log"
    with console.session("quiet"):
        assert os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] == "WARNING"
        with console.stage("training", total=2) as bar, console.library_output(log):
            _library_speaks()
            bar.update(completed=2, info="epoch 2/2  loss 1.234")
    out, err = capsys.readouterr()
    assert CHATTER not in out + err and "batch bar" not in out + err
    assert "training" in err and "epoch 2/2  loss 1.234" in err and "100%" in err
    text = log.read_text()
    assert CHATTER in text and "batch bar" in text
    # the session is over: the process is as it was
    assert console.mode() == "plain" and "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL" not in os.environ


def test_plain_and_verbose_terminals_show_the_libraries_and_train_log_gets_them_too(tmp_path, capsys):
    for mode in ("plain", "verbose"):
        log = tmp_path / f"{mode}.log"
        with console.session(mode):
            with console.stage("training", total=1) as bar, console.library_output(log):
                _library_speaks()
                bar.update(completed=1)
        out, err = capsys.readouterr()
        assert CHATTER in out and "batch bar" in err, mode
        assert "100%" not in err  # no bars of ours around the libraries' own
        assert CHATTER in log.read_text()


def test_run_prints_a_bar_per_stage_and_the_summary_on_one_screen(world_copy, tmp_path):
    """`yolo-retrain run` on a copy of the trained world: no Ultralytics or Prefect lines, a few bars, the summary."""
    result = CliRunner().invoke(app, ["run", "--force"])
    gc.unfreeze()  # the command freezes the heap for a quick exit; this process goes on
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    summary = next(i for i, line in enumerate(lines) if line.startswith("Retrain "))
    stages = [line.split()[0] for line in lines[:summary]]
    # the champion's evaluation is skipped when its recorded figures apply (same holdout)
    assert stages in (["dataset", "training", "evaluation"], ["dataset", "evaluation", "training", "evaluation"]), lines
    assert "epoch 1/1  loss" in result.output and "mAP50-95" in result.output
    assert "engine/trainer" not in result.output and "Task run" not in result.output
    assert len(lines) < 25  # bars and summary: one screen
    client = tracking.client_for(world_copy)
    experiment_id = tracking.resolve_experiment(client, world_copy)
    (latest,) = client.search_runs([experiment_id], order_by=["attributes.start_time DESC"], max_results=1)
    log = tmp_path / "log"
    text = open(client.download_artifacts(latest.info.run_id, "train.log", str(log))).read()
    assert "engine/trainer:" in text  # what the terminal did not show is in the run's train.log


def test_init_on_an_existing_experiment_tags_its_kind(monkeypatch, tmp_path):
    settings = use_home(monkeypatch, tmp_path, **TINY)
    client = tracking.client_for(settings)
    experiment_id = client.create_experiment(settings.experiment_name, artifact_location=settings.artifact_location)
    result = CliRunner().invoke(app, ["init", "--no-train-baseline"])
    assert result.exit_code == 0, result.output
    assert client.get_experiment(experiment_id).tags[tracking.EXPERIMENT_KIND_TAG] == tracking.CUSTOM_MODEL_KIND
