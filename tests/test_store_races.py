"""Two writers at once on one correction store (#21, windows 3 and 4): real processes on a real PostgreSQL
(a throwaway cluster, as in test_scale_out) and on SQLite.

On PostgreSQL a trigger makes the first writer's INSERT sleep inside its transaction (pg_sleep), so the second
writer starts while the first is between its checks and its commit: the window is held open for real, not mocked.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from test_scale_out import IN_CI, NO_POSTGRES, PG_BIN, Postgres
from test_store import image_bytes

from yolo_retrain import migrations
from yolo_retrain.config import PROJECT_ROOT
from yolo_retrain.store import CorrectionStore

NAMES = ["square", "circle"]
SQUARE, CIRCLE = "0 0.5 0.5 0.25 0.25\n", "1 0.5 0.5 0.25 0.25\n"
WRITER = Path(__file__).parent / "store_writer.py"

pytestmark = pytest.mark.timeout(180)
needs_postgres = pytest.mark.skipif(PG_BIN is None and not IN_CI, reason=NO_POSTGRES)

# Writers whose author starts with "slow" sleep inside their INSERT; "slow-then-fail" then fails, after its image
# blob was written: the transaction rolls back.
SLOW_INSERT = """
CREATE FUNCTION slow_insert() RETURNS trigger AS $$
BEGIN
  IF TG_TABLE_NAME = 'project_classes' THEN
    PERFORM pg_sleep(0.8);
  ELSIF NEW.author LIKE 'slow%' THEN
    PERFORM pg_sleep(0.8);
    IF NEW.author = 'slow-then-fail' THEN
      RAISE EXCEPTION 'injected failure after the image blob was written';
    END IF;
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
"""


class Writer:
    """A store writer in its own process (tests/store_writer.py), driven one command at a time."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen([sys.executable, str(WRITER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.ready = False

    def send(self, **command: object) -> None:
        if not self.ready:  # it imports while the caller does something else (PostgreSQL starts)
            assert json.loads(self.proc.stdout.readline()) == {"ready": True}
            self.ready = True
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> dict:
        line = self.proc.stdout.readline()
        assert line, f"the writer process died (exit code {self.proc.poll()})"
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


@pytest.fixture(scope="module")
def writers() -> Iterator[list[Writer]]:
    """Two writer processes for the module's tests (each test opens its own store in them)."""
    started = [Writer() for _ in range(2)]  # they import in parallel, and while the cluster starts
    try:
        yield started
    finally:
        for w in started:
            w.close()


@pytest.fixture(scope="module")
def pg():
    if PG_BIN is None:
        pytest.fail(f"CI=true and {NO_POSTGRES}")
    cluster = Postgres(PG_BIN)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def new_database(pg: Postgres, name: str, slow_tables: tuple[str, ...]) -> str:
    """A new database at the store's schema (nothing recorded), with the sleeping trigger on ``slow_tables``."""
    import psycopg

    with psycopg.connect(pg.url("postgres", driver=None), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    engine = create_engine(pg.url(name))
    migrations.upgrade(engine)
    engine.dispose()
    with psycopg.connect(pg.url(name, driver=None), autocommit=True) as conn:
        conn.execute(SLOW_INSERT)
        for table in slow_tables:
            conn.execute(f"CREATE TRIGGER slow BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION slow_insert()")
    return pg.url(name)


def wait_until_sleeping(pg: Postgres, database: str) -> None:
    """Until a backend of ``database`` sleeps in the trigger: the first writer is inside its transaction."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if pg.query("postgres", "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event = 'PgSleep'", database)[0][0]:
            return
        time.sleep(0.02)
    raise AssertionError(f"no writer of {database} reached the trigger")


def race(pg: Postgres, database: str, first: Writer, second: Writer, one: dict, other: dict) -> tuple[dict, dict]:
    """``first`` runs ``one`` and sleeps inside it; meanwhile ``second`` runs ``other``. Both answers."""
    first.send(**one)
    wait_until_sleeping(pg, database)
    second.send(**other)
    return first.answer(), second.answer()


def write_image(path: Path, seed: int) -> Path:
    path.write_bytes(image_bytes(seed))
    return path


@needs_postgres
def test_two_writers_of_one_image_leave_one_pending_correction_and_its_blob(writers: list[Writer], pg: Postgres, tmp_path: Path):
    """Window 3: the duplicate check and supersede of two concurrent writers, and a failed writer's blob cleanup."""
    url, blobs = new_database(pg, "two_writers", ("corrections",)), tmp_path / "blobs"
    CorrectionStore(url, blobs, NAMES).close()
    for w in writers:
        w.send(op="open", url=url, blobs=str(blobs), names=NAMES)
        assert "ok" in w.answer()
    x, y, z = (write_image(tmp_path / f"{seed}.png", seed) for seed in (1, 2, 3))
    # Different labels of one image: the later one supersedes the earlier, whichever committed first.
    a, b = race(pg, "two_writers", *writers, dict(op="add", image=str(x), labels=SQUARE, author="slow"),
                dict(op="add", image=str(x), labels=CIRCLE, author="fast"))  # fmt: skip
    assert "ok" in a and "ok" in b, (a, b)
    # The same labels twice: one is stored, the other refused as a duplicate.
    c, d = race(pg, "two_writers", *writers, dict(op="add", image=str(y), labels=SQUARE, author="slow"),
                dict(op="add", image=str(y), labels=SQUARE, author="fast"))  # fmt: skip
    assert "ok" in c and d.get("error") == "DuplicateCorrection", (c, d)
    # A writer fails after writing a new image's blob while another stores the same image: the blob stays.
    e, f = race(pg, "two_writers", *writers, dict(op="add", image=str(z), labels=SQUARE, author="slow-then-fail"),
                dict(op="add", image=str(z), labels=CIRCLE, author="fast"))  # fmt: skip
    assert "injected failure" in e.get("message", "") and "ok" in f, (e, f)
    with CorrectionStore(url, blobs, NAMES) as store:
        rows = store.list()
    pending = {}
    for row in rows:
        if row.status == "pending":
            pending.setdefault(row.original_name, []).append(row.id)
    assert pending == {"1.png": [b["ok"]], "2.png": [c["ok"]], "3.png": [f["ok"]]}
    assert {r.id: r.status for r in rows if r.original_name == "1.png"}[a["ok"]] == "superseded"
    for row in rows:  # every row's image is there, with the bytes it names
        assert hashlib.sha256(Path(row.image_path).read_bytes()).hexdigest() == row.image_sha256


@needs_postgres
def test_two_first_opens_with_other_class_names_refuse_the_loser(writers: list[Writer], pg: Postgres, tmp_path: Path):
    """Window 4: of two first opens of an empty store, and of two opens appending different classes, one is refused."""
    url = new_database(pg, "first_opens", ("project_classes",))
    opening = {"op": "open", "url": url, "blobs": str(tmp_path / "blobs")}
    a, b = race(pg, "first_opens", *writers, dict(opening, names=NAMES), dict(opening, names=NAMES[::-1]))
    assert a == {"ok": NAMES} and b.get("error") == "ClassContractChanged", (a, b)
    a, b = race(pg, "first_opens", *writers, dict(opening, names=[*NAMES, "star"]), dict(opening, names=[*NAMES, "ring"]))
    assert a == {"ok": [*NAMES, "star"]} and b.get("error") == "ClassContractChanged", (a, b)
    with CorrectionStore(url, tmp_path / "blobs", [*NAMES, "star"]) as store:
        assert store.class_names == [*NAMES, "star"]


def test_two_writers_on_sqlite_one_first_open_and_one_pending_correction_per_image(writers: list[Writer], tmp_path: Path):
    """Windows 3 and 4 on SQLite (writes there hold the database's write lock from BEGIN IMMEDIATE): two first opens
    with other class names at once, then two adds of one image at once."""
    url, blobs = f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "blobs"
    opening = {"op": "open", "url": url, "blobs": str(blobs)}
    for w, names in zip(writers, (NAMES, NAMES[::-1])):
        w.send(**opening, names=names)
    answers = [w.answer() for w in writers]
    assert sorted(a.get("error", "ok") for a in answers) == ["ClassContractChanged", "ok"], answers
    loser = writers[[a.get("error") for a in answers].index("ClassContractChanged")]
    winner_names = next(a["ok"] for a in answers if "ok" in a)
    loser.send(**opening, names=winner_names)
    assert loser.answer() == {"ok": winner_names}
    x = write_image(tmp_path / "1.png", 1)
    for w, labels in zip(writers, (SQUARE, CIRCLE)):
        w.send(op="add", image=str(x), labels=labels)
    assert all("ok" in w.answer() for w in writers)
    for w in writers:
        w.send(op="add", image=str(x), labels=SQUARE + CIRCLE)
    assert sorted(w.answer().get("error", "ok") for w in writers) == ["DuplicateCorrection", "ok"]
    with CorrectionStore(url, blobs, winner_names) as store:
        assert [c.status for c in store.list()].count("pending") == 1
