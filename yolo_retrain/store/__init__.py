"""The correction store: reviewers' corrected labels, their content-addressed images, and their lifecycle.

::

    pending ──claim──► claimed ──gate promotes the version──► accepted   (in every later retrain's data)
       ▲                  │    └─gate rejects the version───► rejected   (held for a person: requeue, accept, drop)
       │                  └─retrain failed or skipped: release──► pending
       └──────────── requeue (a person) ◄──── rejected ──drop──► dropped  (kept as a record, never trained on)
    pending, rejected ──its source (a Label Studio annotation) deleted──► withdrawn  (kept as a record; see withdrawal)

A newer correction of the same image makes an older ``pending`` or ``rejected`` one ``superseded``; a newly
accepted one supersedes the image's older accepted one, so ``accepted`` holds one correction per image. Every
retrain learns from all accepted corrections plus its own batch. Rolling the model back does not touch them.

The schema is versioned (``yolo_retrain/migrations``) and upgraded when a store opens. A store from the release
before the lifecycle has ``applied`` rows; they are sorted into accepted or rejected by their version's gate
decision in MLflow's registry (``legacy``, run by :meth:`CorrectionStore.from_settings`).

On SQLite a write waits up to the busy timeout (30 s; ``?timeout=SECONDS`` in the URL) for another
connection's write lock, then raises :class:`CorrectionStoreBusy` with nothing written.

One module per rule (see ``correction_store``); this package exports what the rest of the code imports.
"""

from yolo_retrain.store.classes import ClassContractChanged
from yolo_retrain.store.correction_store import CorrectionStore
from yolo_retrain.store.engine import CorrectionStoreBusy
from yolo_retrain.store.legacy import registry_decisions
from yolo_retrain.store.records import AcceptedCorrection, Correction, CorrectionDiff, SourceDiff, TrainingCorrections
from yolo_retrain.store.schema import LEGACY_APPLIED, STATUSES, Base, Status
from yolo_retrain.store.validation import Submission

_Base = Base  # the ORM model's metadata, as the migration tests import it

__all__ = [
    "LEGACY_APPLIED",
    "STATUSES",
    "AcceptedCorrection",
    "ClassContractChanged",
    "Correction",
    "CorrectionDiff",
    "CorrectionStore",
    "CorrectionStoreBusy",
    "SourceDiff",
    "Status",
    "Submission",
    "TrainingCorrections",
    "registry_decisions",
]
