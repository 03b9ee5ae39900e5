"""One writer per image at a time, for the length of its transaction.

Adding a correction reads the image's open corrections (duplicate check, supersede), writes its blob, and, if the
transaction fails, deletes a blob it created. Under PostgreSQL's READ COMMITTED two writers of one image would both
pass the checks (two pending corrections of one image) and one's cleanup could delete a blob the other just
committed a row for. So a writer first takes a transaction-scoped advisory lock per image (a bucket of the
sha256: a bounded number of locks per transaction, the keys in order so two writers never deadlock); the next
writer of the image waits, then reads what the first committed. Why a lock and not a unique index: one pending
correction per image is not a plain uniqueness (a claimed one and a newer pending one coexist, a person's requeue
may bring an older one back, and existing stores may hold such rows), while the lock also covers the blob.

SQLite needs none: a write transaction there holds the database's write lock from its start (BEGIN IMMEDIATE).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.orm import Session

LOCK_NAMESPACE = 7_310_021  # the first key of pg_advisory_xact_lock(int, int): the store's per-image locks
BUCKETS = 1024  # second key: sha256 modulo this (two images in one bucket only wait for each other)


def lock_images(session: Session, image_sha256s: Iterable[str]) -> None:
    """Hold the images' locks until the session's transaction ends (PostgreSQL; a no-op on SQLite)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for bucket in sorted({int(sha[:8], 16) % BUCKETS for sha in image_sha256s}):
        session.execute(text("SELECT pg_advisory_xact_lock(:namespace, :bucket)"), {"namespace": LOCK_NAMESPACE, "bucket": bucket})
