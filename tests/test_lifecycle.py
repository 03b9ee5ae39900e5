"""The corrections lifecycle in the store and the CLI: accepted / rejected by the gate, a person's review, and the
upgrade of a store from before the lifecycle (its applied rows sorted by MLflow's registry). No training here."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import seed_mlflow_database
from mlflow import MlflowClient
from test_migrations import _old_store, _revision
from test_store import BOX, PROMOTED, REJECTED, add_at, image_bytes
from typer.testing import CliRunner

from yolo_retrain import migrations
from yolo_retrain.cli import corrections as cli
from yolo_retrain.config import Settings, get_settings
from yolo_retrain.errors import InvalidInput
from yolo_retrain.store import CorrectionStore

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path: Path) -> CorrectionStore:
    s = CorrectionStore(f"sqlite:///{tmp_path / 'corrections.db'}", tmp_path / "blobs", ["square", "circle"])
    yield s
    s.close()


def _retrain(store: CorrectionStore, batch: str, version: str, decision) -> list[str]:
    """What a retrain does to the store: claim, then record the gate's decision; the batch's ids."""
    ids = [c.id for c in store.claim(batch)]
    store.record_gate_decision(batch, version, decision)
    return ids


def test_a_rejected_batch_is_held_out_of_pending_and_of_the_next_training_data(store):
    good = [add_at(store, i, T0 + timedelta(hours=i)) for i in range(2)]
    _retrain(store, "run-1", "2", PROMOTED)
    poisoned = [add_at(store, 10 + i, T0 + timedelta(days=1, hours=i)) for i in range(3)]
    _retrain(store, "run-2", "3", REJECTED)

    rejected = store.list(status="rejected")
    assert sorted(c.id for c in rejected) == sorted(poisoned)
    assert {(c.applied_version, c.batch_id, c.status_reason) for c in rejected} == {("3", "run-2", "gate rejected v3: worse")}
    assert store.pending_count() == 0

    fresh = add_at(store, 20, T0 + timedelta(days=2))
    store.claim("run-3")
    training = store.training_corrections("run-3")
    assert [c.id for c in training.batch] == [fresh]
    assert sorted(c.id for c in training.accepted) == sorted(good)  # every earlier accepted one, none rejected
    assert training.held_rejected == 3


def test_a_newer_accepted_correction_supersedes_the_older_accepted_one_of_its_image(store):
    data = image_bytes(1)
    old = store.add(data, BOX, image_name="a.png", created_at=T0)
    _retrain(store, "run-1", "2", PROMOTED)
    new = store.add(data, "1 0.5 0.5 0.3 0.3", image_name="a.png", created_at=T0 + timedelta(days=1))
    assert store.get(old.id).status == "accepted"  # until the new one is accepted itself
    _retrain(store, "run-2", "3", PROMOTED)
    assert (store.get(old.id).status, store.get(new.id).status) == ("superseded", "accepted")
    assert [c.id for c in store.training_corrections("run-4").accepted] == [new.id]  # one per image


def test_a_newer_correction_supersedes_a_rejected_one(store):
    data = image_bytes(1)
    rejected = store.add(data, BOX, image_name="a.png", created_at=T0)
    _retrain(store, "run-1", "2", REJECTED)
    newer = store.add(data, "1 0.5 0.5 0.3 0.3", image_name="a.png", created_at=T0 + timedelta(hours=1))
    assert store.get(rejected.id).status == "superseded"
    assert store.get(rejected.id).status_reason == f"superseded by correction {newer.id}"
    assert newer.status == "pending"


def test_requeue_a_batch_by_prefix_then_it_is_claimed_again(store):
    ids = [add_at(store, i, T0 + timedelta(hours=i)) for i in range(3)]
    _retrain(store, "flow-run-aaaa", "2", REJECTED)
    back = store.requeue(batch="flow-run-a", by="ann")
    assert sorted(c.id for c in back) == sorted(ids)
    assert {(c.status, c.batch_id, c.applied_version, c.reviewed_by) for c in back} == {("pending", None, None, "ann")}
    assert back[0].status_reason == "requeued by ann (was gate rejected v2: worse)"
    assert sorted(c.id for c in store.claim("run-2")) == sorted(ids)


def test_accept_and_drop_by_id_prefix(store):
    a, b = (add_at(store, i, T0 + timedelta(hours=i)) for i in range(2))
    _retrain(store, "run-1", "2", REJECTED)
    (accepted,) = store.accept([a[:12]], by="ann")
    assert (accepted.id, accepted.status) == (a, "accepted")
    (dropped,) = store.drop([b[:12]])
    assert dropped.status == "dropped" and dropped.status_reason.startswith("dropped by a person (was gate rejected v2")
    assert [c.id for c in store.training_corrections("run-2").accepted] == [a]
    assert store.stats()["dropped"] == 1 and store.get(b).num_boxes == 1  # kept as a record


def test_review_of_unknown_or_wrong_status_ids_changes_nothing(store):
    pending = add_at(store, 1, T0)
    rejected = add_at(store, 2, T0 + timedelta(hours=1))
    store.claim("run-1", limit=1)
    store.release("run-1")
    store.claim("run-2")  # both claimed
    store.record_gate_decision("run-2", "2", REJECTED)
    store.requeue([pending])  # now pending again
    before = store.list()
    with pytest.raises(InvalidInput) as error:
        store.requeue([rejected, pending, "ffff"])
    message = str(error.value)
    assert f"{pending}: is pending, not rejected or suspicious" in message and "ffff: no correction has this id" in message
    assert "nothing was changed" in message
    with pytest.raises(InvalidInput, match="batch nope: no batch with rejected or suspicious corrections"):
        store.requeue(batch="nope")
    with pytest.raises(InvalidInput, match="give correction ids or a batch id"):
        store.drop()
    assert store.list() == before


# the upgrade of a store from before the lifecycle ---------------------------------------------------------------


@pytest.fixture(scope="module")
def registry_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real MLflow registry where v1 and v2 were promoted by the gate and v3 rejected (made once, on a copy of
    the migrated empty store: MLflow creates a database in seconds, not milliseconds)."""
    path = seed_mlflow_database(tmp_path_factory.mktemp("registry") / "mlflow.db")
    client = MlflowClient(tracking_uri=f"sqlite:///{path}", registry_uri=f"sqlite:///{path}")
    client.create_registered_model(Settings().model_name)
    for decision, reason in (("promoted", "no champion yet"), ("promoted", "better"), ("rejected", "mAP50-95 0.1 < 0.5")):
        client.create_model_version(Settings().model_name, str(path.parent), tags={"gate_decision": decision, "gate_reason": reason})
    return path


@pytest.fixture
def old_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry_db: Path) -> Settings:
    """A home whose correction store was written by the release before the lifecycle (rows applied with v2 and
    v3), beside a copy of that registry."""
    home = tmp_path / "home"
    home.mkdir()
    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text("path: .\ntrain: images\nval: images\nnames: [square, circle]\n")
    monkeypatch.setenv("YOLO_RETRAIN_HOME", str(home))
    monkeypatch.setenv("YOLO_RETRAIN_BASE_DATA", str(data_yaml))
    monkeypatch.delenv("YOLO_RETRAIN_CORRECTIONS_DB_URL", raising=False)
    get_settings.cache_clear()
    _old_store(home / "corrections.db")
    shutil.copyfile(registry_db, home / "mlflow.db")
    return get_settings()


def test_an_old_store_opens_with_its_applied_rows_sorted_by_the_registry(old_home):
    db = old_home.home / "corrections.db"
    before = sqlite3.connect(db).execute("SELECT id, status, label_text, applied_version FROM corrections ORDER BY id").fetchall()
    with CorrectionStore.from_settings(old_home) as store:
        after = {c.id: c for c in store.list()}
        stats = store.stats()
    # nothing lost, nothing else changed; applied rows sorted by their version's gate decision
    assert [(i, after[i].label_text, after[i].applied_version) for i, *_ in before] == [(i, t, v) for i, _, t, v in before]
    expected = {"applied": None, "pending": "pending", "superseded": "superseded"}
    sorted_status = {row[0]: ("accepted" if row[3] == "2" else "rejected") if row[1] == "applied" else expected[row[1]] for row in before}
    assert {i: c.status for i, c in after.items()} == sorted_status
    assert stats == {"pending": 1, "claimed": 0, "accepted": 2, "rejected": 1, "suspicious": 0, "superseded": 1, "dropped": 0, "withdrawn": 0, "total": 5}
    (rejected,) = [c for c in after.values() if c.status == "rejected"]
    assert rejected.status_reason == "gate rejected v3: mAP50-95 0.1 < 0.5 (sorted when the store was upgraded)"
    assert _revision(f"sqlite:///{db}") == migrations.head()


def test_an_old_store_stays_applied_until_the_registry_can_tell(old_home, monkeypatch):
    monkeypatch.setenv("YOLO_RETRAIN_MODEL_NAME", "another-model")  # a registry without our model: cannot tell
    get_settings.cache_clear()
    with CorrectionStore.from_settings(get_settings()) as store:
        assert store.stats()["applied"] == 3 and store.pending_count() == 1
        assert store.training_corrections("run-1").accepted == []
    with CorrectionStore.from_settings(old_home) as store:  # the right registry: sorted at this open
        assert "applied" not in store.stats() and store.stats()["accepted"] == 2


def test_cli_rejected_list_requeue_and_stats(old_home):
    runner = CliRunner()
    result = runner.invoke(cli.app, ["list", "--status", "rejected"])
    assert result.exit_code == 0, result.output
    header, line = result.output.splitlines()
    assert header.split()[-3:] == ["BATCH", "VERSION", "WHY"]
    assert "b10000000000" in line and "batch-re" in line and "gate rejected v3" in line

    result = runner.invoke(cli.app, ["requeue", "--batch", "batch-rej", "--by", "ann"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "requeued 1 correction(s): b10000000000"
    result = runner.invoke(cli.app, ["stats"])
    assert result.output.split()[:8] == ["pending", "2", "claimed", "0", "accepted", "2", "rejected", "0"]

    result = runner.invoke(cli.app, ["drop", "b1000000"])
    assert result.exit_code == 0 and "dropped 1 correction(s)" in result.output
    result = runner.invoke(cli.app, ["accept", "c2000000"])  # superseded: not reviewable
    assert result.exit_code == 2 and "c2000000: is superseded, not rejected or suspicious" in result.stderr
