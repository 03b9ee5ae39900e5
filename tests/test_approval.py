"""A person's approval (#23 item 2): a candidate that passes the gate is held for a person; approve, refuse, a timeout,
a newer candidate and a crash in between each end with the aliases, the local champion file, the run and the
corrections consistent. No training: a real checkpoint (untrained) through the real task bodies (register, save, gate,
finish) in a copy of the shared world's home: its real MLflow registry and correction store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import TINY, use_home
from mlflow import MlflowClient
from typer.testing import CliRunner

from flows.review import review_candidate
from tasks.finish import finish_retrain
from tasks.promote import promotion_gate
from tasks.register_model import register_model
from tasks.save_model import save_model
from yolo_retrain import approval, registry, tracking
from yolo_retrain.approval_view import candidate_summary
from yolo_retrain.cli import app
from yolo_retrain.config import Settings
from yolo_retrain.errors import InvalidInput
from yolo_retrain.forgetting import Retention
from yolo_retrain.hashing import file_sha256
from yolo_retrain.metrics import EvalMetrics
from yolo_retrain.recovery import end_abandoned_retrain, recover_orphans, retrain_lock
from yolo_retrain.screen_batch import BatchCheck
from yolo_retrain.screening import ScreeningResult
from yolo_retrain.store import CorrectionStore
from yolo_retrain.synthetic import untrained_weights

PRE = EvalMetrics(map50=0.1, map50_95=0.1, precision=0.1, recall=0.1, per_class_ap={"square": 0.1, "circle": 0.1})
POST = EvalMetrics(map50=0.5, map50_95=0.4, precision=0.5, recall=0.5, per_class_ap={"square": 0.4, "circle": 0.4})  # better
pytestmark = pytest.mark.e2e  # the shared world: a Prefect server (these tests themselves use none)

NOTHING_SUSPICIOUS = BatchCheck(ScreeningResult(), Retention(), Retention())  # screening found nothing against the batch


@dataclass
class Home:
    settings: Settings
    client: MlflowClient
    experiment_id: str
    images: list[Path]
    weights: Path  # every candidate's (a version per run): not the champion's
    tmp: Path
    used: int = 0

    def champion(self) -> tuple[str, str]:
        """(champion version, sha256 of the local champion file)."""
        version = registry.version_by_alias(self.client, self.settings.model_name, "champion")
        return str(version.version), file_sha256(self.settings.champion_weights)

    def version(self, number) -> object:
        return self.client.get_model_version(self.settings.model_name, str(number))

    def held(self, finish: bool = True):
        """A retrain through its gate with approval required: one correction claimed, a candidate registered from
        the current champion, the gate passes it (held), then (``finish``) its corrections recorded and the run ended."""
        name = f"batch-{self.used}"
        image = self.images[self.used]
        self.used += 1
        with CorrectionStore.from_settings(self.settings) as store:
            correction = store.add(image, image.parent.parent.parent / "labels" / "train" / f"{image.stem}.txt")
            store.claim(name)
        run_id = tracking.start_retrain_run(self.client, self.experiment_id, name, {"type": "retraining"}, {"dataset_digest": name})
        run = tracking.RetrainRun(run_id, self.experiment_id, name)
        parent = self.champion()[0]
        weights = self.weights
        version = register_model.fn(self.settings, run, str(weights), {"dataset_digest": "d" * 64, "parent_version": parent}, POST, PRE)
        local = save_model.fn(self.settings, run, version, str(weights))
        decision = promotion_gate.fn(self.settings, run, version, local, POST, PRE, None, NOTHING_SUSPICIOUS)
        if finish:
            finish_retrain.fn(self.settings, run, str(version.version), decision, NOTHING_SUSPICIOUS)
        return self.version(version.version), decision, correction, run


@pytest.fixture(scope="module")
def candidate_weights(tmp_path_factory) -> Path:
    """A real checkpoint (untrained: no training needed) whose bytes differ from the world's champion."""
    return untrained_weights(tmp_path_factory.mktemp("approval") / "candidate.pt")


@pytest.fixture
def at_home(world_copy: Settings, candidate_weights: Path, monkeypatch, tmp_path) -> Home:
    """A copy of the shared world (a champion, earlier retrains) with approval required."""
    settings = use_home(monkeypatch, world_copy.home, **TINY, artifact_location=world_copy.artifact_location, approval="required")
    client = tracking.client_for(settings)
    images = sorted((settings.base_data.parent / "images" / "train").glob("*.png"))
    return Home(settings, client, tracking.resolve_experiment(client, settings), images, candidate_weights, tmp_path)


def _status(settings: Settings, correction) -> tuple[str, str | None]:
    with CorrectionStore.from_settings(settings) as store:
        found = store.get(correction.id)
    return found.status, found.applied_version


def test_a_held_candidate_waits_and_an_approval_makes_it_champion_with_who_and_when(at_home):
    h = at_home
    before = h.champion()
    version, decision, correction, run = h.held()
    number = str(version.version)
    # Held: the gate passed it, nothing installed, the retrain ended; its correction accepted on its own merit.
    assert decision.label == "awaiting-approval" and "awaiting a person's approval" in decision.reason
    assert version.tags["gate_decision"] == "awaiting-approval" and "awaiting-approval" in version.aliases
    assert datetime.fromisoformat(version.tags["approval_deadline"]) > datetime.now(timezone.utc) + timedelta(hours=71)
    assert h.champion() == before
    assert h.client.get_run(run.run_id).info.status == "FINISHED"
    assert _status(h.settings, correction) == ("accepted", number)
    shown = CliRunner().invoke(app, ["candidate"])  # what a person reads before deciding
    assert shown.exit_code == 0 and candidate_summary(h.client, version) in shown.output, shown.output
    assert f"Candidate version {number}: awaiting approval until" in shown.output
    assert "mAP50-95                  0.1000     0.4000  +0.3000" in shown.output  # champion, candidate, delta
    assert f"yolo-retrain approve {number}" in shown.output

    with retrain_lock(h.settings):  # a retrain is running: its gate may hold or promote a newer candidate meanwhile
        while_running = CliRunner().invoke(app, ["approve", number, "--by", "ana"])
    assert while_running.exit_code == 2, while_running.output
    assert while_running.output.strip().splitlines()[-1].startswith(f"error: a retrain is running on {h.settings.home}")
    assert h.champion() == before and "approval" not in h.version(number).tags  # nothing decided, nothing moved

    approved = approval.approve(h.client, h.settings, number, by="ana", note="checked the night camera")
    assert h.champion() == (number, version.tags["weights_sha256"])
    assert approved.tags["approval"] == "approved" and approved.tags["approval_by"] == "ana" and approved.tags["approval_at"]
    assert approved.tags["approval_reason"] == "checked the night camera" and approved.tags["replaced_champion"] == before[0]
    assert approved.tags["gate_decision"] == "promoted" and "awaiting-approval" not in approved.aliases
    assert h.client.get_run(run.run_id).data.tags["gate_decision"] == "promoted"
    assert _status(h.settings, correction) == ("accepted", number)  # approval decides the model only
    with pytest.raises(InvalidInput, match=rf"version {number}: not awaiting approval \(approved by ana"):
        approval.approve(h.client, h.settings, number, by="bob")


def test_a_refusal_from_the_review_flow_keeps_the_champion_and_needs_a_reason(at_home):
    h = at_home
    before = h.champion()
    version, _, correction, run = h.held()
    number = str(version.version)
    with pytest.raises(InvalidInput, match="a reason is required"):
        approval.refuse(h.client, h.settings, number, reason=" ", by="ana")
    said = review_candidate(version=number, decision="refuse", by="ana", reason="misses small boxes on site B")  # the UI's way
    refused = h.version(number)
    assert said == approval.describe(refused) and said.startswith("refused by ana at ")
    assert h.champion() == before
    assert refused.tags["approval"] == "refused" and refused.tags["approval_reason"] == "misses small boxes on site B"
    assert refused.tags["gate_decision"] == "rejected" and "challenger" in refused.aliases and "awaiting-approval" not in refused.aliases
    assert h.client.get_run(run.run_id).data.tags["gate_decision"] == "rejected"
    assert _status(h.settings, correction) == ("accepted", number)  # accepted on its own merit, whatever the model's fate
    result = CliRunner().invoke(app, ["approve", number, "--by", "bob"])
    assert result.exit_code == 2 and result.output.strip().splitlines()[-1].startswith(f"error: version {number}: not awaiting approval")


def test_past_its_deadline_a_candidate_counts_as_refused_by_the_next_recovery_or_approval(at_home, monkeypatch):
    """The approve command checks the deadline before anything changes; so does each retrain's recovery (the same
    reconcile, carried out in the crash test below)."""
    h = at_home
    before = h.champion()
    h.settings = use_home(
        monkeypatch, h.settings.home, **TINY, artifact_location=h.settings.artifact_location, approval="required",
        approval_timeout_hours=1e-9,  # 3.6 µs: past by the time anyone asks
    )
    version, _, correction, _ = h.held()
    number = str(version.version)
    with pytest.raises(InvalidInput, match=rf"version {number}: not awaiting approval \(timed-out by yolo-retrain"):
        approval.approve(h.client, h.settings, number, by="ana")
    timed_out = h.version(number)
    assert timed_out.tags["approval"] == "timed-out" and "nobody approved it by its deadline" in timed_out.tags["approval_reason"]
    assert timed_out.tags["gate_decision"] == "rejected" and "challenger" in timed_out.aliases
    assert h.champion() == before and _status(h.settings, correction) == ("accepted", number)


def test_a_newer_candidate_or_another_champion_supersedes_the_held_one(at_home):
    h = at_home
    older, _, _, _ = h.held()
    newer, _, _, _ = h.held()
    assert h.version(older.version).tags["approval"] == "superseded" and h.version(older.version).tags["gate_decision"] == "rejected"
    assert f"v{newer.version} passed the gate after it" in h.version(older.version).tags["approval_reason"]
    assert approval.awaiting(h.client, h.settings).version == newer.version
    registry.rollback(h.client, h.settings, to_version=str(older.version))  # the champion it was compared with is gone
    assert approval.reconcile(h.client, h.settings) == [f"version {newer.version}: {approval.describe(h.version(newer.version))}"]
    superseded = h.version(newer.version)
    assert superseded.tags["approval"] == "superseded" and f"the champion is now v{older.version}" in superseded.tags["approval_reason"]
    assert approval.awaiting(h.client, h.settings) is None and h.champion()[0] == str(older.version)


def test_a_decision_cut_short_is_carried_out_by_the_next_recovery(at_home):
    """Crash windows: (a) approved on record, the champion file replaced, the alias not moved yet: the recovery
    finishes it; (b) the gate tagged the candidate but died before moving the alias: never held, never approvable."""
    h = at_home
    before = h.champion()
    version, _, _, _ = h.held()
    number = str(version.version)
    approval._decide(h.client, version, "approved", "ana", "")  # step 2 of approve: the decision on record
    registry.install_champion(h.settings, registry.verified_weights(h.settings, h.client, version))  # then killed
    assert h.champion() == (before[0], version.tags["weights_sha256"])  # inconsistent until recovered
    assert recover_orphans(h.settings, None, by="test").approvals == [f"version {number}: {approval.describe(h.version(number))}"]
    done = h.version(number)
    assert h.champion() == (number, version.tags["weights_sha256"])
    assert done.tags["gate_decision"] == "promoted" and "awaiting-approval" not in done.aliases

    before = h.champion()
    version, _, correction, run = h.held(finish=False)  # (b): tags written, then the alias move fails
    h.client.delete_registered_model_alias(h.settings.model_name, "awaiting-approval")
    cleanup = end_abandoned_retrain(h.settings, run.flow_run_id, run.run_id, "FAILED", "MlflowException: x", registered=True)
    assert cleanup.settled is None and _status(h.settings, correction) == ("pending", None)
    assert approval.reconcile(h.client, h.settings) == [] and h.champion() == before
    with pytest.raises(InvalidInput, match="not awaiting approval \\(its retrain failed"):
        approval.approve(h.client, h.settings, str(version.version), by="ana")
