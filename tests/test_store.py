"""The correction store on a real SQLite database and real images, and its CLI."""

from __future__ import annotations

import io
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from yolo_retrain.cli import corrections as cli
from yolo_retrain.config import Settings, get_settings
from yolo_retrain.errors import DuplicateCorrection, InvalidInput
from yolo_retrain.gate import GateDecision
from yolo_retrain.store import Correction, CorrectionStore

BOX = "0 0.5 0.5 0.25 0.25\n"
PROMOTED, REJECTED = GateDecision(True, "better"), GateDecision(False, "worse")


def image_bytes(seed: int, fmt: str = "PNG", size: tuple[int, int] = (40, 30)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture
def data_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "base" / "data.yaml"
    path.parent.mkdir()
    path.write_text("path: .\ntrain: images\nval: images\nnames: [square, circle]\n")
    return path


@pytest.fixture
def store(tmp_path: Path) -> CorrectionStore:
    s = CorrectionStore(f"sqlite:///{tmp_path / 'db' / 'corrections.db'}", tmp_path / "blobs", ["square", "circle"])
    yield s
    s.close()


def blob_files(store: CorrectionStore) -> list[Path]:
    return sorted(p for p in store.blobs_dir.rglob("*") if p.is_file())


def add_at(store: CorrectionStore, seed: int, created_at: datetime) -> str:
    """Add a distinct one-box correction created at ``created_at``; return its id."""
    return store.add(image_bytes(seed), BOX, image_name=f"{seed}.png", created_at=created_at).id


def yolo_dir(root: Path, items: dict[str, tuple[bytes, str]]) -> Path:
    """A YOLO folder with ``images/<name>`` and ``labels/<stem>.txt`` for each item."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for name, (data, text) in items.items():
        (root / "images" / name).write_bytes(data)
        (root / "labels" / f"{Path(name).stem}.txt").write_text(text)
    return root


# add --------------------------------------------------------------------------------------------------


def test_add_stores_blob_and_row(store: CorrectionStore, tmp_path: Path) -> None:
    image = tmp_path / "cat.jpg"
    image.write_bytes(image_bytes(1, "JPEG"))
    label = tmp_path / "cat.txt"
    label.write_text("1 0.5 0.5 0.2 0.2\n0 .1 .1 .1 .1\n")
    c = store.add(image, label, author="ann", source_model_version="3")
    assert isinstance(c, Correction)
    assert (c.original_name, c.num_boxes, c.width, c.height, c.status) == ("cat.jpg", 2, 40, 30, "pending")
    assert (c.author, c.source_model_version, c.batch_id, c.applied_version) == ("ann", "3", None, None)
    assert c.created_at.tzinfo is not None
    assert c.label_text == "0 0.100000 0.100000 0.100000 0.100000\n1 0.500000 0.500000 0.200000 0.200000\n"
    blob = Path(c.image_path)
    assert blob == store.blobs_dir / "images" / c.image_sha256[:2] / f"{c.image_sha256}.jpg"
    assert blob.read_bytes() == image.read_bytes()
    assert store.get(c.id) == c
    assert store.get("missing") is None


def test_same_image_is_stored_once(store: CorrectionStore) -> None:
    data = image_bytes(1)
    a = store.add(data, BOX, image_name="a.png")
    b = store.add(data, "1 0.5 0.5 0.25 0.25", image_name="b.png")
    assert a.image_path == b.image_path
    assert len(blob_files(store)) == 1


def test_empty_label_file_is_a_correction(store: CorrectionStore) -> None:
    c = store.add(image_bytes(1), "", image_name="empty.png")
    assert (c.num_boxes, c.label_text, c.status) == (0, "", "pending")


@pytest.mark.parametrize(
    ("image", "labels", "name", "message"),
    [
        (b"not an image", BOX, "a.png", "a.png: not an image"),
        (image_bytes(1)[:300], BOX, "a.png", "a.png: corrupt or truncated image"),
        (image_bytes(1), "0 0.5 0.5 0.25\n", "a.png", "labels of a.png:1: expected 5 fields"),
        (image_bytes(1), BOX + "2 0.5 0.5 0.25 0.25\n", "a.png", "labels of a.png:2: class 2 out of range"),
        (image_bytes(1), "0 0.5 0.5 1.5 0.2\n", "a.png", "w must be a normalised coordinate"),
        (image_bytes(1), BOX, "../../etc/a.png", "path traversal"),
        (image_bytes(1), BOX, "/abs/a.png", "absolute paths"),
    ],
)
def test_refused_input_changes_nothing(
    store: CorrectionStore, image: bytes, labels: str, name: str, message: str
) -> None:
    store.add(image_bytes(99), BOX, image_name="existing.png")
    rows, blobs = store.list(), blob_files(store)
    with pytest.raises(InvalidInput, match=message):
        store.add(image, labels, image_name=name)
    assert store.list() == rows
    assert blob_files(store) == blobs


def test_label_file_errors_name_the_file(store: CorrectionStore, tmp_path: Path) -> None:
    label = tmp_path / "x.txt"
    label.write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 nan\n")
    with pytest.raises(InvalidInput, match=f"{label}:2: h must be"):
        store.add(image_bytes(1), label, image_name="x.png")
    label.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InvalidInput, match=f"{label}: not UTF-8"):
        store.add(image_bytes(1), label, image_name="x.png")
    with pytest.raises(InvalidInput, match="cannot read"):
        store.add(tmp_path / "missing.png", BOX)
    assert store.list() == [] and blob_files(store) == []


def test_duplicate_is_refused_while_pending_or_claimed(store: CorrectionStore) -> None:
    data = image_bytes(1)
    first = store.add(data, BOX, image_name="a.png")
    with pytest.raises(DuplicateCorrection, match=first.id):
        store.add(data, "\n0 0.50 0.5 0.25 0.250000\n", image_name="again.png")  # same labels, other spelling
    store.claim("run-1")
    with pytest.raises(DuplicateCorrection):
        store.add(data, BOX, image_name="a.png")
    store.record_gate_decision("run-1", "2", PROMOTED)
    assert store.add(data, BOX, image_name="a.png").status == "pending"  # already accepted: a new round is fine
    assert store.stats()["total"] == 2


def test_newer_correction_supersedes_older_pending(store: CorrectionStore) -> None:
    data = image_bytes(1)
    old = store.add(data, BOX, image_name="a.png")
    other = store.add(image_bytes(2), BOX, image_name="b.png")
    new = store.add(data, "1 0.5 0.5 0.3 0.3", image_name="a.png")
    assert store.get(old.id).status == "superseded"  # type: ignore[union-attr]
    assert store.get(other.id).status == "pending"  # type: ignore[union-attr]
    assert new.status == "pending"
    assert store.pending_count() == 2


def test_backdated_correction_does_not_supersede_newer(store: CorrectionStore) -> None:
    data = image_bytes(1)
    current = store.add(data, BOX, image_name="a.png")
    late = store.add(data, "1 0.5 0.5 0.3 0.3", image_name="a.png", created_at=current.created_at - timedelta(days=1))
    assert late.status == "superseded"
    assert store.get(current.id).status == "pending"  # type: ignore[union-attr]


def test_claimed_correction_is_not_superseded(store: CorrectionStore) -> None:
    data = image_bytes(1)
    old = store.add(data, BOX, image_name="a.png")
    store.claim("run-1")
    store.add(data, "1 0.5 0.5 0.3 0.3", image_name="a.png")
    assert store.get(old.id).status == "claimed"  # type: ignore[union-attr]


def test_naive_created_at_is_refused(store: CorrectionStore) -> None:
    with pytest.raises(InvalidInput, match="no timezone"):
        store.add(image_bytes(1), BOX, image_name="a.png", created_at=datetime(2024, 1, 1))


# reading --------------------------------------------------------------------------------------------


def test_list_stats_and_filters(store: CorrectionStore) -> None:
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    ids = [add_at(store, i, t0 + timedelta(hours=i)) for i in range(4)]
    assert [c.id for c in store.list()] == ids[::-1]
    assert [c.id for c in store.list(limit=2)] == ids[:1:-1]
    assert store.list()[0].created_at == t0 + timedelta(hours=3)
    store.claim("run-1", limit=1)
    assert [c.id for c in store.list(status="claimed")] == ids[:1]
    assert store.stats() == {
        "pending": 3,
        "claimed": 1,
        "accepted": 0,
        "rejected": 0,
        "superseded": 0,
        "dropped": 0,
        "withdrawn": 0,
        "total": 4,
    }
    with pytest.raises(InvalidInput, match="unknown status 'done'"):
        store.list(status="done")


# lifecycle ----------------------------------------------------------------------------------------------


def test_claim_release_apply_lifecycle(store: CorrectionStore) -> None:
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    ids = [add_at(store, i, t0 + timedelta(hours=i)) for i in range(3)]

    batch = store.claim("run-1", limit=2)
    assert [c.id for c in batch] == ids[:2]  # oldest first
    assert {c.status for c in batch} == {"claimed"} and {c.batch_id for c in batch} == {"run-1"}
    assert store.claim("run-1", limit=2) == batch  # idempotent
    assert store.claim("run-2", limit=5)[0].id == ids[2]
    assert store.claim("run-3") == [] and store.pending_count() == 0

    assert store.release("run-1") == 2
    assert store.release("run-1") == 0
    assert store.claimed("run-1") == [] and store.pending_count() == 2
    assert all(c.batch_id is None for c in store.list(status="pending"))

    retry = store.claim("run-4")
    assert [c.id for c in retry] == ids[:2]
    assert store.record_gate_decision("run-4", "7", PROMOTED) == 2
    assert store.record_gate_decision("run-4", "7", PROMOTED) == 0  # idempotent
    accepted = store.list(status="accepted")
    assert {(c.applied_version, c.batch_id) for c in accepted} == {("7", "run-4")}
    assert all(c.applied_at and c.applied_at.tzinfo for c in accepted)
    assert {c.status_reason for c in accepted} == {"gate promoted v7: better"}
    assert store.stats() == {
        "pending": 0,
        "claimed": 1,
        "accepted": 2,
        "rejected": 0,
        "superseded": 0,
        "dropped": 0,
        "withdrawn": 0,
        "total": 3,
    }


def test_claim_again_adds_newly_pending(store: CorrectionStore) -> None:
    first = store.add(image_bytes(1), BOX, image_name="a.png")
    assert [c.id for c in store.claim("run-1")] == [first.id]
    second = store.add(image_bytes(2), BOX, image_name="b.png")
    assert {c.id for c in store.claim("run-1")} == {first.id, second.id}


def test_release_supersedes_when_newer_correction_arrived(store: CorrectionStore) -> None:
    data = image_bytes(1)
    old = store.add(data, BOX, image_name="a.png")
    store.claim("run-1")
    new = store.add(data, "1 0.5 0.5 0.3 0.3", image_name="a.png")
    assert store.release("run-1") == 1
    assert store.get(old.id).status == "superseded"  # type: ignore[union-attr]
    assert [c.id for c in store.list(status="pending")] == [new.id]


def test_concurrent_claims_never_share_a_row(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    seed_store = CorrectionStore(url, tmp_path / "blobs", ["square", "circle"])
    for i in range(40):
        seed_store.add(image_bytes(i, size=(8, 8)), BOX, image_name=f"{i}.png")
    seed_store.close()

    results: dict[str, list[str]] = {}
    barrier = threading.Barrier(2)

    def worker(batch_id: str) -> None:
        s = CorrectionStore(url, tmp_path / "blobs", ["square", "circle"])  # own engine, like another process
        barrier.wait()
        claimed: list[str] = []
        for _ in range(10):
            claimed = [c.id for c in s.claim(batch_id, limit=len(claimed) + 3)]
        results[batch_id] = claimed
        s.close()

    threads = [threading.Thread(target=worker, args=(b,)) for b in ("run-a", "run-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = Counter(i for ids in results.values() for i in ids)
    assert sum(counts.values()) == 40 and set(counts.values()) == {1}


# import_dir --------------------------------------------------------------------------------------------


def test_import_dir(store: CorrectionStore, tmp_path: Path) -> None:
    folder = yolo_dir(tmp_path / "in", {"a.jpg": (image_bytes(1, "JPEG"), BOX), "b.png": (image_bytes(2), "")})
    (folder / "images" / ".DS_Store").write_bytes(b"junk")
    added = store.import_dir(folder, author="bob")
    assert [c.original_name for c in added] == ["a.jpg", "b.png"]
    assert {c.author for c in added} == {"bob"} and store.pending_count() == 2


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("bad_label", "labels/c.txt:1: expected 5 fields"),
        ("bad_image", "images/c.png: not an image"),
        ("missing_label", "images/c.png: missing label file"),
        ("orphan_label", "labels/zz.txt: label file without a matching image"),
        ("duplicate", "a.png: the same image with the same labels"),
    ],
)
def test_import_dir_is_all_or_nothing(store: CorrectionStore, tmp_path: Path, broken: str, message: str) -> None:
    store.add(image_bytes(50), BOX, image_name="a.png")
    rows, blobs = store.list(), blob_files(store)
    folder = yolo_dir(
        tmp_path / "in",
        {"a.png": (image_bytes(50), BOX), "b.png": (image_bytes(2), BOX), "c.png": (image_bytes(3), BOX)},
    )
    if broken == "bad_label":
        (folder / "labels" / "c.txt").write_text("0 0.5\n")
    elif broken == "bad_image":
        (folder / "images" / "c.png").write_bytes(b"oops")
    elif broken == "missing_label":
        (folder / "labels" / "c.txt").unlink()
    elif broken == "orphan_label":
        (folder / "labels" / "zz.txt").write_text(BOX)
    if broken != "duplicate":
        (folder / "images" / "a.png").write_bytes(image_bytes(1))  # not a duplicate of the stored one
    with pytest.raises(InvalidInput, match=message):
        store.import_dir(folder)
    assert store.list() == rows
    assert blob_files(store) == blobs


def test_import_dir_same_image_twice_keeps_the_last(store: CorrectionStore, tmp_path: Path) -> None:
    data = image_bytes(1)
    folder = yolo_dir(tmp_path / "in", {"a.png": (data, BOX), "b.png": (data, "1 0.5 0.5 0.3 0.3")})
    first, second = store.import_dir(folder)
    assert (first.status, second.status) == ("superseded", "pending")
    assert store.get(first.id) == first


def test_import_dir_requires_yolo_layout(store: CorrectionStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="missing folder"):
        store.import_dir(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(InvalidInput, match="no images to import"):
        store.import_dir(tmp_path)


# from_settings and the CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, data_yaml: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("YOLO_RETRAIN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("YOLO_RETRAIN_BASE_DATA", str(data_yaml))
    monkeypatch.delenv("YOLO_RETRAIN_CORRECTIONS_DB_URL", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def test_from_settings(cli_env: Settings) -> None:
    with CorrectionStore.from_settings(cli_env) as s:
        assert s.class_names == ["square", "circle"]
        c = s.add(image_bytes(1), BOX, image_name="a.png")
        assert Path(c.image_path).is_relative_to(cli_env.corrections_dir)
    assert (cli_env.home / "corrections.db").is_file()


def test_cli_add_list_stats(cli_env: Settings, tmp_path: Path) -> None:
    runner = CliRunner()
    (tmp_path / "a.png").write_bytes(image_bytes(1))
    (tmp_path / "a.txt").write_text(BOX)
    result = runner.invoke(cli.app, ["add", str(tmp_path / "a.png"), str(tmp_path / "a.txt"), "--author", "ann"])
    assert result.exit_code == 0, result.output
    assert "a.png, 1 boxes" in result.output

    folder = yolo_dir(tmp_path / "in", {"b.png": (image_bytes(2), BOX), "c.png": (image_bytes(3), "")})
    result = runner.invoke(cli.app, ["import", str(folder), "--format", "plain", "--source-model-version", "4"])
    assert result.exit_code == 0, result.output
    assert "imported 2 corrections" in result.output

    result = runner.invoke(cli.app, ["list", "--limit", "5"])
    assert result.exit_code == 0, result.output
    header, *lines = result.output.splitlines()
    assert header.split()[:3] == ["ID", "CREATED", "(UTC)"] and len(lines) == 3
    assert any("a.png" in line and "ann" in line for line in lines)

    result = runner.invoke(cli.app, ["list", "--status", "rejected"])
    assert result.output.strip() == "no corrections"

    result = runner.invoke(cli.app, ["stats"])
    assert result.exit_code == 0
    assert result.output.split() == [
        "pending",
        "3",
        "claimed",
        "0",
        "accepted",
        "0",
        "rejected",
        "0",
        "superseded",
        "0",
        "dropped",
        "0",
        "withdrawn",
        "0",
        "total",
        "3",
    ]
    # none of them came from a deleted Label Studio annotation
    assert runner.invoke(cli.app, ["list", "--source-deleted"]).output.strip() == "no corrections"


def test_cli_errors_exit_2(cli_env: Settings, tmp_path: Path) -> None:
    runner = CliRunner()
    (tmp_path / "a.png").write_bytes(image_bytes(1))
    (tmp_path / "a.txt").write_text("0 0.5 0.5 0.2\n")
    result = runner.invoke(cli.app, ["add", str(tmp_path / "a.png"), str(tmp_path / "a.txt")])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'a.txt'}:1: expected 5 fields (class cx cy w h), got 4"

    (tmp_path / "a.txt").write_text(BOX)
    assert runner.invoke(cli.app, ["add", str(tmp_path / "a.png"), str(tmp_path / "a.txt")]).exit_code == 0
    result = runner.invoke(cli.app, ["add", str(tmp_path / "a.png"), str(tmp_path / "a.txt")])
    assert result.exit_code == 2 and "already stored" in result.stderr

    assert runner.invoke(cli.app, ["list", "--status", "bogus"]).exit_code == 2


def test_the_class_names_the_stored_ids_mean_are_recorded_and_may_only_grow_at_the_end(tmp_path: Path) -> None:
    from yolo_retrain.store import ClassContractChanged

    url, blobs = f"sqlite:///{tmp_path / 'corrections.db'}", tmp_path / "blobs"
    with CorrectionStore(url, blobs, ["square", "circle"]) as store:
        kept = store.add(image_bytes(1), BOX, image_name="1.png")
    for changed in (["circle", "square"], ["square", "disc"], ["circle"], ["triangle", "square", "circle"]):
        with pytest.raises(ClassContractChanged) as refused:
            CorrectionStore(url, blobs, changed)
        message = str(refused.value)
        assert f"classes {changed} are not ['square', 'circle']" in message
        assert "corrections.db" in message and "added at the end" in message
    # nothing was changed by the refusals: the record and the correction are as they were
    with CorrectionStore(url, blobs, ["square", "circle"]) as store:
        assert store.get(kept.id) == kept
    with CorrectionStore(url, blobs, ["square", "circle", "triangle"]) as store:  # a class added at the end
        assert store.get(kept.id) == kept  # its id 0 still means square
    with pytest.raises(ClassContractChanged, match=r"are not \['square', 'circle', 'triangle'\]"):
        CorrectionStore(url, blobs, ["square", "circle"])  # the recorded contract grew with it


def test_two_writer_processes_on_sqlite_one_first_open_and_one_pending_correction_per_image(tmp_path: Path) -> None:
    """#21 windows 3 and 4 on SQLite (PostgreSQL: test_scale_out.py): two first opens with other class names at once,
    then two adds of one image at once. A write there holds the database's lock from BEGIN IMMEDIATE."""
    from store_races import Writer

    url, blobs, names = f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "blobs", ["square", "circle"]
    writers = [Writer() for _ in range(2)]
    try:
        for w, order in zip(writers, (names, names[::-1])):
            w.send(op="open", url=url, blobs=str(blobs), names=order)
        answers = [w.answer() for w in writers]
        assert sorted(a.get("error", "ok") for a in answers) == ["ClassContractChanged", "ok"], answers
        winner = next(a["ok"] for a in answers if "ok" in a)
        loser = writers[[a.get("error") for a in answers].index("ClassContractChanged")]
        loser.send(op="open", url=url, blobs=str(blobs), names=winner)
        assert loser.answer() == {"ok": winner}
        image = tmp_path / "1.png"
        image.write_bytes(image_bytes(1))
        for w, labels in zip(writers, (BOX, "1 0.5 0.5 0.25 0.25\n")):
            w.send(op="add", image=str(image), labels=labels)
        assert all("ok" in w.answer() for w in writers)
        for w in writers:
            w.send(op="add", image=str(image), labels=BOX + "1 0.2 0.2 0.1 0.1\n")
        assert sorted(w.answer().get("error", "ok") for w in writers) == ["DuplicateCorrection", "ok"]
    finally:
        for w in writers:
            w.close()
    with CorrectionStore(url, blobs, winner) as store:
        assert [c.status for c in store.list()].count("pending") == 1
