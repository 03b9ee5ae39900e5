"""One selection, start to end, as plain functions the CLI and the Prefect flow share: the pool, the champion's
scores, the choice, the record (never twice), Label Studio tasks and the CSV, the MLflow run."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from yolo_retrain import registry, tracking
from yolo_retrain.config import Settings
from yolo_retrain.errors import InvalidInput
from yolo_retrain.labelstudio.champion import NoChampion
from yolo_retrain.selection.choose import Choice, choose
from yolo_retrain.selection.contact_sheet import contact_sheet
from yolo_retrain.selection.export import pick_row, write_csv
from yolo_retrain.selection.pool import PoolImage, images_from
from yolo_retrain.selection.samples import SampleStore, SelectedImage
from yolo_retrain.selection.score_pool import ScoredPool, ScoringSetup, score_pool

log = logging.getLogger(__name__)

class EmptyPool(InvalidInput):
    """Nothing to select from: no image named, no sample posted (a scheduled selection ends quietly on it)."""


KEEP_FACTOR = 10  # candidates kept per class and overall: this many times the budget (at least 200)


@dataclass
class Champion:
    version: str
    weights: Path  # hash-checked against the registry


@dataclass
class Selection:
    id: str
    model_version: str
    budget: int
    sources: list[str]
    pool: ScoredPool
    choice: Choice
    class_names: list[str]
    folder: Path
    csv: Path | None = None
    sheet: Path | None = None
    tasks: dict[str, str] = field(default_factory=dict)  # sha256 -> review task URL
    not_sent: list[tuple[str, str]] = field(default_factory=list)  # (image, why): back in the pool
    run_id: str | None = None

    def summary(self) -> str:
        """What a person reads: counts, then the picks with their scores and why."""
        lines = [
            f"selection {self.id[:8]} by champion v{self.model_version}: scored {self.pool.scored} image(s), picked "
            f"{len(self.choice.picks)} of budget {self.budget}; left out {self.pool.excluded} already selected, corrected "
            f"or repeated, {len(self.choice.near_duplicates)} near-duplicate(s), {self.pool.refused} unreadable"
        ]
        for name, why in self.pool.refusals[:5]:
            lines.append(f"  unreadable: {name}: {why}")
        for pick in self.choice.picks:
            where = self.tasks.get(pick.candidate.sha256, "")
            lines.append(f"  #{pick.rank:<3} {pick.gain:5.2f}  {pick.candidate.name}  ({pick.why}) {where}".rstrip())
        for name, why in self.not_sent:
            lines.append(f"  not sent to Label Studio (back in the pool): {name}: {why}")
        if self.csv:
            lines.append(f"CSV: {self.csv}")
        if self.sheet:
            lines.append(f"contact sheet: {self.sheet}")
        if self.run_id:
            lines.append(f"MLflow run: {self.run_id}")
        return "\n".join(lines)

    def markdown(self) -> str:
        """The Prefect summary: the counts, then a table of the picks."""
        head = self.summary().splitlines()[0]
        rows = ["| # | image | gain | uncertainty | confusion | disagreement | why | task |", "|---|---|---|---|---|---|---|---|"]
        for p in self.choice.picks:
            s = p.candidate.signals
            d = "-" if s.disagreement is None else f"{s.disagreement:.2f}"
            rows.append(f"| {p.rank} | {p.candidate.name} | {p.gain:.2f} | {s.uncertainty:.2f} | {s.confusion:.2f} | {d} | {p.why} | {self.tasks.get(p.candidate.sha256, '')} |")
        tail = [f"Not sent (back in the pool): {name}: {why}" for name, why in self.not_sent]
        where = [f"CSV `{self.csv}`, contact sheet `{self.sheet}` (also in MLflow run `{self.run_id}`)"]
        return "\n\n".join([f"**{head}**", "\n".join(rows), *tail, *where])


def champion(settings: Settings) -> Champion:
    """The champion's version and hash-checked weights; NoChampion before ``yolo-retrain init``."""
    found = registry.current_champion(tracking.client_for(settings), settings)
    if found is None:
        raise NoChampion(f"model {settings.model_name!r} has no champion yet (run `yolo-retrain init`): nothing to score with")
    return Champion(found.version, found.weights)


def gather_pool(settings: Settings, sources: Sequence[str], include_samples: bool) -> list[PoolImage]:
    """The files ``sources`` name, then the posted samples still waiting (retention applied first)."""
    images = images_from(sources)
    if include_samples:
        with SampleStore.from_settings(settings) as store:
            store.retire(settings.samples_max_kept, settings.samples_max_age_days)
            images += [PoolImage(s.original_name, s.image_path, "intake", s.id, s.production_boxes) for s in store.waiting()]
    if not images:
        raise EmptyPool("the pool is empty: name folders, globs or list files of images, or post samples to the intake (POST /samples)")
    return images


def score(
    settings: Settings, images: Sequence[PoolImage], champ: Champion, budget: int, progress: Callable[[int, int], None] | None = None
) -> ScoredPool:
    """The champion's scores over ``images`` (see ``score_pool``); ``progress(done, total)`` after each batch."""
    from ultralytics import YOLO

    from yolo_retrain.recipe import trained_imgsz

    with SampleStore.from_settings(settings) as store:
        setup = ScoringSetup(
            store.class_names, settings.selection_threshold, settings.selection_min_confidence,
            settings.imgsz or trained_imgsz(champ.weights), settings.device,
        )
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(done, len(images))

        return score_pool(images, YOLO(str(champ.weights)), setup, store.not_selectable, max(200, KEEP_FACTOR * budget), advance)


def pick(settings: Settings, pool: ScoredPool, budget: int, class_names: Sequence[str]) -> Choice:
    return choose(pool.candidates, budget, class_names, settings.selection_near_duplicate_bits, settings.selection_coverage_weight)


def record(settings: Settings, selection: Selection) -> None:
    """Mark the picks selected (all or none; InvalidInput if another selection took one meanwhile)."""
    with SampleStore.from_settings(settings) as store:
        store.record_selection(selection.id, [
            SelectedImage(p.candidate.sha256, p.candidate.path, p.candidate.name, p.candidate.source, p.candidate.width,
                          p.candidate.height, p.gain, pick_row(p, selection.class_names), p.candidate.sample_id)
            for p in selection.choice.picks
        ])


def send(settings: Settings, selection: Selection, project: int | None) -> None:
    """Label Studio tasks for the picks (when a project is set); a pick that could not be sent goes back to the pool."""
    if project is None or not selection.choice.picks:
        return
    from yolo_retrain.labelstudio.client import LabelStudioClient
    from yolo_retrain.selection.to_label_studio import send_to_label_studio

    key = settings.label_studio_api_key.get_secret_value() if settings.label_studio_api_key else None
    client = LabelStudioClient(settings.label_studio_url, key)
    with SampleStore.from_settings(settings) as store:
        sent = None
        try:
            sent = send_to_label_studio(
                client, project, [p for p in selection.choice.picks], selection.class_names, selection.model_version,
                settings.label_studio_min_score, on_sent=store.set_review_task,
            )
        finally:
            client.close()
            done = sent.tasks if sent is not None else {}
            unsent = [p.candidate for p in selection.choice.picks if p.candidate.sha256 not in done]
            if unsent:  # failed, or never reached (Label Studio went away): selectable again
                store.release(selection.id, [c.sha256 for c in unsent])
                why = dict(sent.failed) if sent is not None else {}
                selection.not_sent = [(c.name, why.get(c.sha256, "Label Studio stopped answering")) for c in unsent]
            selection.tasks = dict(done)


def write_outputs(settings: Settings, selection: Selection) -> None:
    """The CSV and the contact sheet in ``<home>/selections/<id>/``."""
    selection.csv = write_csv(selection.folder / "selection.csv", selection.choice.picks, selection.class_names, selection.tasks)
    selection.sheet = contact_sheet(selection.folder / "contact_sheet.png", selection.choice.picks, selection.class_names, settings.selection_threshold)


def log_run(settings: Settings, selection: Selection) -> str:
    from yolo_retrain.selection.record import log_selection

    picks = selection.choice.picks
    metrics = {
        "scored": selection.pool.scored, "picked": len(picks), "excluded": selection.pool.excluded,
        "near_duplicates": len(selection.choice.near_duplicates), "unreadable": selection.pool.refused,
        "sent_to_label_studio": len(selection.tasks), "mean_gain": sum(p.gain for p in picks) / len(picks) if picks else 0.0,
    }
    params = {"budget": selection.budget, "sources": ",".join(selection.sources)[:500] or "samples", "model_version": selection.model_version}
    summary = {"selection_id": selection.id, **metrics, "picks": [pick_row(p, selection.class_names, selection.tasks.get(p.candidate.sha256)) for p in picks],
               "near_duplicates": selection.choice.near_duplicates, "unreadable": selection.pool.refusals}
    artifacts = [p for p in (selection.csv, selection.sheet) if p is not None]
    selection.run_id = log_selection(settings, selection.id, params, metrics, artifacts, summary)
    return selection.run_id


def new_selection(settings: Settings, champ: Champion, budget: int, sources: Sequence[str], pool: ScoredPool, choice: Choice, class_names: Sequence[str]) -> Selection:
    selection_id = uuid.uuid4().hex
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return Selection(selection_id, champ.version, budget, list(sources), pool, choice, list(class_names), settings.selections_dir / f"{stamp}-{selection_id[:8]}")


def select_for_review(
    settings: Settings,
    sources: Sequence[str] = (),
    budget: int | None = None,
    include_samples: bool = True,
    project: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Selection:
    """The whole selection in-process (the CLI's); the flow runs the same steps as tasks."""
    budget = budget or settings.selection_budget
    if budget < 1:
        raise InvalidInput(f"budget {budget}: pick at least one image")
    images = gather_pool(settings, sources, include_samples)  # a bad source is refused before anything loads
    champ = champion(settings)
    pool = score(settings, images, champ, budget, progress)
    with SampleStore.from_settings(settings) as store:
        class_names = store.class_names
    selection = new_selection(settings, champ, budget, sources, pool, pick(settings, pool, budget, class_names), class_names)
    record(settings, selection)
    send(settings, selection, project)
    write_outputs(settings, selection)
    log_run(settings, selection)
    return selection
