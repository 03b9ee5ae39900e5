"""The correction store's versioned schema: Alembic revisions in yolo_retrain/migrations, run when a store opens."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from yolo_retrain import migrations
from yolo_retrain.store import CorrectionStore, _Base

FIXTURE = Path(__file__).parent / "fixtures" / "corrections_v0.sql"
NAMES = ["square", "circle"]


def _old_store(path: Path) -> Path:
    """A store as the release before versioned schemas left it (its schema and rows, from the SQL fixture)."""
    with sqlite3.connect(path) as db:
        db.executescript(FIXTURE.read_text())
    return path


def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return migrations.current_revision(conn)
    finally:
        engine.dispose()


def test_a_new_store_is_created_at_the_head_revision(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    with CorrectionStore(url, tmp_path / "blobs", NAMES):
        pass
    assert _revision(url) == migrations.head()


def test_the_orm_model_matches_the_migrated_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    CorrectionStore(url, tmp_path / "blobs", NAMES).close()
    engine = create_engine(url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = [d for d in compare_metadata(context, _Base.metadata) if d[0] != "remove_table" or d[1].name != migrations.VERSION_TABLE]
    engine.dispose()
    assert diff == []  # a model change without a revision (or the reverse) fails here


def test_a_store_from_before_versioning_is_stamped_and_upgraded_in_place(tmp_path):
    db = _old_store(tmp_path / "c.db")
    before = {row[0]: row for row in sqlite3.connect(db).execute("SELECT id, image_sha256, label_text, created_at FROM corrections")}
    with CorrectionStore(f"sqlite:///{db}", tmp_path / "blobs", NAMES) as store:
        rows = {c.id: c for c in store.list()}
    assert _revision(f"sqlite:///{db}") == migrations.head()
    assert set(rows) == set(before)  # nothing lost
    for id_, (_, sha, labels, _) in before.items():
        assert (rows[id_].image_sha256, rows[id_].label_text) == (sha, labels)


def test_concurrent_openers_of_a_new_store_migrate_it_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            CorrectionStore(url, tmp_path / "blobs", NAMES).close()
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _revision(url) == migrations.head()
