"""Two writers at once on one correction store (#21, windows 3 and 4): a store writer in its own process, and the
PostgreSQL trigger that holds a writer inside its transaction, for tests/test_scale_out.py and tests/test_store.py.

Run as ``python tests/store_races.py``, a writer reads one JSON command per line on stdin and answers one JSON line
on stdout: ``{"op": "open", "url": URL, "blobs": DIR, "names": [...]}`` opens a store with those class names
(closing the one open before), ``{"op": "add", "image": PATH, "labels": TEXT, "author": WHO}`` adds a correction
to it. The answer is ``{"ok": ...}`` or ``{"error": <exception class>, "message": ...}``. It imports everything
before it says it is ready, so a command starts at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from yolo_retrain.store import CorrectionStore

# On a store's tables: an INSERT (or UPDATE) sleeps inside its transaction, for the project's classes always, for a
# correction whose author starts with "slow"; "slow-then-fail" then fails, after its image blob was written.
SLOW_WRITES = """
CREATE FUNCTION slow_write() RETURNS trigger AS $$
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
    """A store writer in its own process, driven one command at a time."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[1])  # this checkout's yolo_retrain first
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen(
            [sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.ready = False

    def send(self, **command: object) -> None:
        if not self.ready:  # it imports while the caller does something else
            assert json.loads(self.proc.stdout.readline()) == {"ready": True}
            self.ready = True
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        assert line, f"the writer process died (exit code {self.proc.poll()})"
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


def new_database(pg: Any, name: str, slow_tables: tuple[str, ...]) -> str:
    """A new database of ``pg`` (test_scale_out.Postgres) at the store's schema, nothing recorded, with the sleeping
    trigger on ``slow_tables``; its URL."""
    import psycopg
    from sqlalchemy import create_engine

    from yolo_retrain import migrations

    with psycopg.connect(pg.url("postgres", driver=None), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    engine = create_engine(pg.url(name))
    migrations.upgrade(engine)
    engine.dispose()
    with psycopg.connect(pg.url(name, driver=None), autocommit=True) as conn:
        conn.execute(SLOW_WRITES)
        for table in slow_tables:
            conn.execute(f"CREATE TRIGGER slow BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION slow_write()")
    return pg.url(name)


def race(pg: Any, database: str, first: Writer, second: Writer, one: dict, other: dict) -> tuple[dict, dict]:
    """``first`` runs ``one`` and sleeps inside it (in the trigger); meanwhile ``second`` runs ``other``. Both answers."""
    first.send(**one)
    deadline = time.monotonic() + 30
    sleeping = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event = 'PgSleep'"
    while not pg.query("postgres", sleeping, database)[0][0]:
        assert time.monotonic() < deadline, f"no writer of {database} reached the trigger"
        time.sleep(0.02)
    second.send(**other)
    return first.answer(), second.answer()


def main() -> None:
    store: CorrectionStore | None = None
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        try:
            if command["op"] == "open":
                if store is not None:
                    store.close()
                    store = None
                store = CorrectionStore(command["url"], Path(command["blobs"]), command["names"])
                answer = {"ok": store.class_names}
            else:
                assert store is not None, "open the store first"
                answer = {"ok": store.add(Path(command["image"]), command["labels"], author=command.get("author")).id}
        except Exception as exc:  # noqa: BLE001 — the test reads which error it was
            answer = {"error": type(exc).__name__, "message": str(exc)}
        print(json.dumps(answer), flush=True)
    if store is not None:
        store.close()


if __name__ == "__main__":
    main()
