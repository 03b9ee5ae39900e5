"""The champion over the pool: every image read, hashed, predicted (in batches) and scored; only the candidates a
choice could need are kept, so memory stays flat however large the pool is.

Kept: the ``keep`` most informative images overall and, per class, the ``keep`` most informative that show it
(so a rare class still has candidates when coverage asks for it). Images already selected or corrected are left
out (counted); an unreadable image is refused (listed with the reason) and the rest go on.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from yolo_retrain.errors import InvalidInput
from yolo_retrain.labels import decode_image, read_image_file
from yolo_retrain.labelstudio.convert import ScoredBox
from yolo_retrain.selection.choose import Candidate
from yolo_retrain.selection.diversity import dhash
from yolo_retrain.selection.pool import PoolImage
from yolo_retrain.selection.scoring import signals

MAX_BOXES_KEPT = 50  # per image: what the contact sheet and the tasks show, strongest first
MAX_REFUSALS_LISTED = 100


@dataclass
class ScoredPool:
    scored: int = 0
    excluded: int = 0  # already selected, corrected, or the same image twice in the pool
    refused: int = 0
    refusals: list[tuple[str, str]] = field(default_factory=list)  # (image, why), the first MAX_REFUSALS_LISTED
    candidates: list[Candidate] = field(default_factory=list)


@dataclass(frozen=True)
class ScoringSetup:
    class_names: Sequence[str]
    threshold: float  # the decision threshold (uncertainty is measured around it)
    min_confidence: float  # champion boxes below it are ignored
    imgsz: int
    device: str | None = None
    batch: int = 16


def score_pool(
    images: Iterable[PoolImage],
    model: Any,
    setup: ScoringSetup,
    not_selectable: Callable[[list[str]], set[str]],
    keep: int,
    progress: Callable[[int], None] | None = None,
) -> ScoredPool:
    """Score ``images`` with ``model`` (an Ultralytics YOLO); ``not_selectable(shas)`` names those to leave out."""
    pool = ScoredPool()
    top: list[tuple[float, int, Candidate]] = []
    per_class: dict[int, list[tuple[float, int, Candidate]]] = {}
    seen: set[str] = set()
    order = itertools.count()
    iterator = iter(images)
    while batch := list(itertools.islice(iterator, setup.batch)):
        loaded = []
        for image in batch:
            try:
                data = read_image_file(image.path) if image.source == "folder" else image.path.read_bytes()
                loaded.append((image, hashlib.sha256(data).hexdigest(), decode_image(data, image.name)))
            except (InvalidInput, OSError) as exc:
                pool.refused += 1
                if len(pool.refusals) < MAX_REFUSALS_LISTED:
                    pool.refusals.append((image.name, str(exc)))
        excluded = not_selectable([sha for _, sha, _ in loaded]) | seen
        fresh = [(image, sha, picture) for image, sha, picture in loaded if sha not in excluded]
        pool.excluded += len(loaded) - len(fresh)
        seen.update(sha for _, sha, _ in loaded)
        if fresh:
            results = model.predict(
                [picture for _, _, picture in fresh], imgsz=setup.imgsz, conf=setup.min_confidence, device=setup.device, verbose=False
            )
            for (image, sha, picture), result in zip(fresh, results):
                candidate = _candidate(image, sha, picture, result, setup)
                pool.scored += 1
                entry = (candidate.informativeness, next(order), candidate)
                _push(top, entry, keep)
                for k in candidate.classes:
                    _push(per_class.setdefault(k, []), entry, keep)
        if progress is not None:
            progress(len(batch))
    kept = {id(c): c for heap in (top, *per_class.values()) for _, _, c in heap}
    pool.candidates = sorted(kept.values(), key=lambda c: -c.informativeness)
    return pool


def _push(heap: list, entry: tuple[float, int, Candidate], keep: int) -> None:
    if len(heap) < keep:
        heapq.heappush(heap, entry)
    elif entry[0] > heap[0][0]:
        heapq.heapreplace(heap, entry)


def _candidate(image: PoolImage, sha: str, picture: Any, result: Any, setup: ScoringSetup) -> Candidate:
    boxes = []
    for cls, conf, xywhn in zip(result.boxes.cls.tolist(), result.boxes.conf.tolist(), result.boxes.xywhn.tolist()):
        name = result.names[int(cls)]
        if name in setup.class_names:  # classes by name: the model's ids may be in another order
            boxes.append(ScoredBox((setup.class_names.index(name), *map(float, xywhn)), float(conf)))
    boxes.sort(key=lambda b: -b.score)
    boxes = boxes[:MAX_BOXES_KEPT]
    seen = {b.box[0] for b in boxes if b.score >= setup.threshold} or ({boxes[0].box[0]} if boxes else set())
    seen |= {b.box[0] for b in image.production or []}
    return Candidate(
        name=image.name, path=image.path, source=image.source, sha256=sha, width=picture.width, height=picture.height,
        dhash=dhash(picture), boxes=boxes, signals=signals(boxes, image.production, setup.threshold),
        classes=tuple(sorted(seen)), sample_id=image.sample_id,
    )
