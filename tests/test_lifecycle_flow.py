"""Corrections accumulate across real retrains (real Prefect, real MLflow, real tiny Ultralytics trainings):
every retrain learns from every accepted correction; corrections held as suspicious stay out until a person
requeues them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import TINY, use_home
from mlflow import MlflowClient
from typer.testing import CliRunner
from webhook_receiver import WebhookReceiver

from flows.retrain import retrain
from yolo_retrain import registry, tracking
from yolo_retrain.cli import app
from yolo_retrain.config import Settings
from yolo_retrain.hashing import file_sha256
from yolo_retrain.store import Correction, CorrectionStore
from yolo_retrain.summary import RetrainReport
from yolo_retrain.synthetic import make_dataset
from yolo_retrain.verify import verify_run

ALWAYS_PROMOTE = {"gate_margin": 1.0, "gate_max_class_drop": 1.0}  # mAP is in [0, 1]: any candidate passes
# No class may drop at all: a tiny model's per-class interval always reaches 0, so the gate refuses the candidate for
# its classes' drop, and holds the batch's corrections that relabel boxes into or out of them (#19, item 2).
NO_CLASS_MAY_DROP = {"gate_margin": 1.0, "gate_max_class_drop": 0.0}

pytestmark = pytest.mark.e2e  # the shared world: a Prefect server


@dataclass
class History:
    """A home after: good batch A promoted (v1, the first model) → poisoned batch P (classes swapped) rejected for
    its classes' drop, P held as suspicious (v2) → good batch B promoted (v3). Three tiny trainings."""

    settings: Settings
    base_labels: Path
    a: list[Correction]
    p: list[Correction]
    b: list[Correction]
    first: RetrainReport
    poisoned: RetrainReport
    third: RetrainReport

    @property
    def client(self) -> MlflowClient:
        return tracking.client_for(self.settings)

    def artifact(self, report: RetrainReport, name: str):
        local = self.client.download_artifacts(report.run_id, f"dataset/{name}", str(self.settings.home / "downloads" / report.run_id))
        return json.loads(Path(local).read_text())


def _add(settings: Settings, items: list[tuple[Path, str]]) -> list[Correction]:
    with CorrectionStore.from_settings(settings) as store:
        return [store.add(image, labels, author="test") for image, labels in items]


def _swap_classes(labels: str) -> str:
    return "".join(f"{1 - int(line.split()[0])} {line.split(' ', 1)[1]}\n" for line in labels.splitlines() if line.strip())


@pytest.fixture(scope="module")
def webhook(prefect_server) -> Iterator[WebhookReceiver]:
    """A team's webhook, wired with `yolo-retrain notify` to every retrain of the history (#23 item 3)."""
    from prefect import get_client

    receiver = WebhookReceiver()
    wired = CliRunner().invoke(app, ["notify", "--webhook", receiver.url])
    assert wired.exit_code == 0 and "automation 'yolo-retrain-notify'" in wired.output, wired.output
    yield receiver
    with get_client(sync_client=True) as client:  # later tests' retrains tell nobody
        for automation in client.read_automations_by_name(name="yolo-retrain-notify"):
            client.delete_automation(automation.id)
    receiver.close()


@pytest.fixture(scope="module")
def history(prefect_server, webhook, tmp_path_factory) -> History:
    home = tmp_path_factory.mktemp("lifecycle")
    with pytest.MonkeyPatch.context() as mp:
        settings = use_home(mp, home, **TINY, **ALWAYS_PROMOTE)
        data = make_dataset(home / "demo", train=10, val=4, size=64, seed=3)
        root = data.data_yaml.parent
        fixes = sorted((data.corrections_dir / "images").glob("*.png"))
        right = sorted(p for p in (root / "images" / "train").glob("*.png") if p.name not in {f.name for f in fixes})
        assert len(fixes) >= 2 and len(right) >= 2, "the synthetic dataset needs wrong and right training images"
        assert CliRunner().invoke(app, ["init", "--no-train-baseline"]).exit_code == 0
        half = len(fixes) // 2
        fix = lambda image: (image, (data.corrections_dir / "labels" / f"{image.stem}.txt").read_text())
        a = _add(settings, [fix(image) for image in fixes[:half]])
        first = retrain(trigger="baseline")  # the first model, trained with batch A

        poison = [(image, _swap_classes((root / "labels" / "train" / f"{image.stem}.txt").read_text())) for image in right[:2]]
        p = _add(settings, poison)
        settings = use_home(mp, home, **TINY, **NO_CLASS_MAY_DROP)
        poisoned = retrain(trigger="manual")

        settings = use_home(mp, home, **TINY, **ALWAYS_PROMOTE)
        b = _add(settings, [fix(image) for image in fixes[half:]])
        third = retrain(trigger="manual")
    return History(settings, root / "labels" / "train", a, p, b, first, poisoned, third)


@pytest.fixture
def lived(history: History, monkeypatch: pytest.MonkeyPatch) -> History:
    use_home(monkeypatch, history.settings.home, **TINY)
    return history


def _ids(corrections: list[Correction]) -> set[str]:
    return {c.id for c in corrections}


def test_a_rejected_retrain_and_its_suspicious_batch_reach_the_teams_webhook(lived, webhook):
    """The Prefect events of each outcome, forwarded by the automation `yolo-retrain notify` made, arrive at the
    webhook (a real Prefect server's trigger and action services, a Custom Webhook block)."""
    rejected = webhook.wait_for("yolo-retrain.retrain.rejected")
    assert f"registered version {lived.poisoned.version}" in rejected["text"] and lived.poisoned.message in rejected["text"]
    held = webhook.wait_for("yolo-retrain.corrections.suspicious")
    assert "held as suspicious" in held["text"] and lived.poisoned.batch_id in held["text"]
    promoted = webhook.wait_for("yolo-retrain.retrain.promoted")
    assert f"registered version {lived.first.version}" in promoted["text"] or f"registered version {lived.third.version}" in promoted["text"]


def test_notify_refuses_what_it_cannot_wire(prefect_server):
    runner = CliRunner()
    for args, said in (
        (["notify"], "give either --webhook URL or --block TYPE/NAME"),
        (["notify", "--webhook", "ftp://example.org/x"], "--webhook 'ftp://example.org/x': not an http(s) URL"),
        (["notify", "--block", "custom-webhook/no-such-block"], "--block 'custom-webhook/no-such-block': no such block"),
    ):
        result = runner.invoke(app, args)
        last = result.output.strip().splitlines()[-1]
        assert result.exit_code == 2 and last.startswith("error: ") and said in last, result.output


def test_the_next_retrain_keeps_the_earlier_batch_labels(lived):
    assert (lived.first.outcome, lived.poisoned.outcome, lived.third.outcome) == ("promoted", "rejected", "promoted")
    applied = lived.artifact(lived.poisoned, "corrections_applied.json")
    assert {a["id"] for a in applied if a["origin"] == "earlier"} == _ids(lived.a)  # A's labels, a retrain later
    manifest = lived.artifact(lived.poisoned, "manifest.json")
    in_manifest = {e["correction_id"]: e for e in manifest if e["label_source"] == "correction"}
    for c in lived.a:
        assert in_manifest[c.id]["label_sha256"] == hashlib.sha256(c.label_text.encode()).hexdigest()


def test_relabels_into_a_class_that_dropped_are_held_with_the_version_and_reason(lived):
    with CorrectionStore.from_settings(lived.settings) as store:
        held = [store.get(c.id) for c in lived.p]
        accepted = store.list(status="accepted")
    assert "AP50-95 of class" in lived.poisoned.message and "reaches below -0.0" in lived.poisoned.message
    assert {(c.status, c.applied_version, c.batch_id) for c in held} == {("suspicious", lived.poisoned.version, lived.poisoned.batch_id)}
    assert {c.status_reason for c in held} == {
        f"screening v{lived.poisoned.version}: relabels boxes into or out of 'square', 'circle', whose AP dropped: held for review"
    }
    assert _ids(accepted) == _ids(lived.a) | _ids(lived.b)
    assert str(registry.version_by_alias(lived.client, lived.settings.model_name, "challenger").version) == lived.poisoned.version


def test_the_poisoned_labels_are_absent_from_the_next_dataset(lived):
    applied = lived.artifact(lived.third, "corrections_applied.json")
    assert {a["id"] for a in applied} == _ids(lived.a) | _ids(lived.b)
    assert {a["id"] for a in applied if a["origin"] == "batch"} == _ids(lived.b)
    manifest = {e["image_sha256"]: e for e in lived.artifact(lived.third, "manifest.json")}
    for c in lived.p:  # the poisoned images are back to their (right) base labels
        entry = manifest[c.image_sha256]
        assert (entry["label_source"], entry["correction_id"]) == ("base", None)
        assert entry["label_sha256"] == file_sha256(lived.base_labels / f"{Path(entry['source_image']).stem}.txt")


def test_counts_are_recorded_in_metadata_params_and_summary(lived):
    metadata = lived.artifact(lived.third, "retraining_dataset_metadata.json")
    counts = {k: v for k, v in metadata["counts"].items() if k.startswith("corrections_")}
    expected = {
        "corrections_from_this_batch": len(lived.b),
        "corrections_from_earlier_retrains": len(lived.a),
        "corrections_held_rejected": len(lived.p),
    }
    assert counts == expected
    params = lived.client.get_run(lived.third.run_id).data.params
    assert {k: params[f"dataset_{k}"] for k in expected} == {k: str(v) for k, v in expected.items()}
    assert f"corrections: {len(lived.b)} from this batch, {len(lived.a)} from earlier retrains, {len(lived.p)} held for review" in lived.third.markdown()
    assert f"corrections requeue --batch {lived.poisoned.batch_id}" in lived.poisoned.markdown()


def test_verify_agrees_with_the_store(lived):
    for report in (lived.poisoned, lived.third):
        (check,) = [r for r in verify_run(lived.settings, report.run_id) if r.name == "corrections applied"]
        assert check.ok, check.detail


def test_requeue_brings_the_held_batch_back(lived):
    runner = CliRunner()
    result = runner.invoke(app, ["corrections", "list", "--status", "suspicious"])
    assert len(result.output.splitlines()) == 1 + len(lived.p) and "whose AP dropped" in result.output
    result = runner.invoke(app, ["corrections", "requeue", "--batch", lived.poisoned.batch_id[:8], "--by", "ann"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["corrections", "list", "--status", "suspicious"]).output.strip() == "no corrections"
    with CorrectionStore.from_settings(lived.settings) as store:
        assert store.pending_count() == len(lived.p)
        assert _ids(store.claim("next-retrain")) == _ids(lived.p)  # the next retrain takes them
        store.release("next-retrain")
