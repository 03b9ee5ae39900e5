"""The retraining flow: corrections in, a better model (never a worse one) out, every step recorded in MLflow."""

from __future__ import annotations

import asyncio
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import TerminationSignal
from prefect.runtime import flow_run
from pydantic import Field

from tasks.build_dataset import build_retraining_dataset
from tasks.check_disk import check_disk_space
from tasks.claim_corrections import claim_corrections, release_corrections
from tasks.compare import compare_on_holdout
from tasks.evaluate import evaluate_champion, evaluate_on_holdout, holdout_key
from tasks.export_model import export_model
from tasks.finish import finish_retrain
from tasks.housekeeping import retire_old_outputs
from tasks.log_dataset import log_dataset
from tasks.log_reviewer_diffs import log_reviewer_diffs
from tasks.log_training_artifacts import log_training_artifacts
from tasks.promote import promotion_gate
from tasks.recover import recover_orphaned_retrains
from tasks.register_model import register_model
from tasks.resolve_champion import resolve_champion
from tasks.resolve_recipe import resolve_recipe
from tasks.save_model import save_model
from tasks.screen_corrections import screen_corrections
from tasks.setup_mlflow import setup_mlflow
from tasks.train_candidate import train_candidate
from yolo_retrain import events
from yolo_retrain.config import Settings, Trigger, configure_environment, get_settings
from yolo_retrain.recipe import asked, read_recipe_file
from yolo_retrain.recovery import end_abandoned_retrain, retrain_lock
from yolo_retrain.summary import RetrainReport
from yolo_retrain.tracking import RetrainRun


@flow(name="retrain", log_prints=True)
def retrain(
    trigger: Trigger = "manual",
    min_corrections: Annotated[int | None, Field(ge=0)] = None,
    force: bool = False,
    epochs: Annotated[int | None, Field(ge=1, le=10_000)] = None,
    imgsz: Annotated[int | None, Field(ge=32, le=8192)] = None,
    batch: Annotated[int | None, Field(ge=1, le=4096)] = None,
) -> RetrainReport:
    """Retrain the detector on the pending corrections and promote it only if it is at least as good.

    Args:
        trigger: What started this retrain: manual, schedule, corrections-threshold (or baseline, from init).
        min_corrections: Skip (no MLflow run) with fewer pending corrections; default from settings.
        force: Retrain even below min_corrections (e.g. a first baseline with no corrections).
        epochs: Training epochs; default from settings.
        imgsz: Training and evaluation image size; default from settings, else the recipe's, else the champion's.
        batch: Batch size; default from settings, else the recipe's, else the champion's.
    """
    overrides = {k: v for k, v in {"epochs": epochs, "imgsz": imgsz, "batch": batch}.items() if v is not None}
    settings = configure_environment(get_settings().model_copy(update=overrides))  # the flow is an entry point
    team_recipe = read_recipe_file(settings)  # a recipe error refuses the retrain here, before anything runs
    with retrain_lock(settings):  # one retrain per home at a time, whoever started it
        return _retrain(settings, flow_run.get_id() or "local", trigger, min_corrections, force, team_recipe)


def _retrain(
    settings: Settings, batch_id: str, trigger: Trigger, min_corrections: int | None, force: bool, team_recipe: dict
) -> RetrainReport:
    """The steps in order; runs holding the retrain lock."""
    # 0. Whatever a killed retrain left behind (RUNNING run, claimed corrections, partial files) is cleaned up.
    recover_orphaned_retrains(settings, batch_id)

    # 1. Claim the pending corrections; too few and not forced: stop here, no MLflow run.
    corrections = claim_corrections(settings, batch_id)
    needed = settings.min_corrections if min_corrections is None else min_corrections
    if len(corrections) < needed and not force:
        release_corrections(settings, batch_id)
        message = f"{len(corrections)} < {needed} pending corrections"
        skipped = RetrainReport(outcome="skipped", trigger=trigger, corrections=len(corrections), message=message)
        return _publish(skipped)

    run = version = None
    try:
        # 2. The exact dataset: base + accepted corrections + this batch (bad base data stops here, before any MLflow run).
        dataset = build_retraining_dataset(settings, batch_id)
        check_disk_space(settings)  # a disk too small for this retrain: refused now, with the figures

        # 3-4. MLflow: tracking URI, the experiment (never created here), this retrain's run; the dataset in it.
        tags = {"trigger": trigger, "corrections_count": str(len(corrections))}
        params = {"trigger": trigger, "corrections": len(corrections), "dataset_digest": dataset.digest}
        params |= _training_params(settings, team_recipe)  # a retry with other inputs gets a run of its own
        run = setup_mlflow(settings, batch_id, tags, params)
        log_dataset(settings, run, dataset)
        diffs = log_reviewer_diffs(settings, run, corrections)  # what reviewers changed against the model, per class

        # 5. The current champion, and the recipe: how it was trained, then the team's recipe, settings, parameters.
        #    The champion on the holdout at that recipe is the bar to clear (its recorded figures if unchanged).
        champion = resolve_champion(settings)
        start = str(champion.weights) if champion else settings.base_model
        recipe = resolve_recipe(settings, run, team_recipe, start)
        pre = evaluate_champion(settings, run, dataset, champion, recipe) if champion else None

        # 6-7. Train from the champion with the recipe, then validate the candidate on the same holdout.
        trained = train_candidate(settings, run, dataset, start, recipe)
        post = evaluate_on_holdout(settings, run, dataset, str(trained.best_weights), "post", recipe)

        # 7b. Candidate − champion with the holdout's noise (paired bootstrap); each correction judged as data.
        comparison = compare_on_holdout(settings, run, dataset, champion, recipe)
        check = screen_corrections(settings, run, dataset, champion, str(trained.best_weights), recipe, comparison)

        # 8-10. Artifacts, the logged model (metrics on it) and its registry version, models/retrained_vN.pt.
        log_training_artifacts(settings, run, trained)
        lineage = {
            "dataset_digest": dataset.digest,
            "corrections_count": len(corrections),
            "parent_version": champion.version if champion else "none",
            "evaluation_key": holdout_key(recipe, dataset),
        }
        version = register_model(settings, run, str(trained.best_weights), lineage, post, pre, recipe.args["imgsz"])
        weights = save_model(settings, run, version, str(trained.best_weights))
        exports = export_model(settings, run, version, weights, dataset)  # 10b. ONNX..., each checked against the .pt

        # 11. Promotion gate: champion only if not worse beyond noise, its batch not suspicious, earlier fixes kept.
        decision = promotion_gate(settings, run, version, weights, post, pre, comparison, check)

        # 12. Each correction accepted on its own merit or held as suspicious (with why), with the version; run FINISHED.
        outcome = finish_retrain(settings, run, str(version.version), decision, check)
    except Exception as exc:  # a step failed
        _end_abandoned(settings, batch_id, run, exc, "FAILED", registered=version is not None)
        raise
    except INTERRUPTED as exc:  # stopped from outside: Ctrl-C, a Prefect cancellation (SIGTERM), task cancellation
        _end_abandoned(settings, batch_id, run, exc, "KILLED", registered=version is not None)
        raise

    # 13. Retire old local outputs (retention policy: YOLO_RETRAIN_KEEP_*); a failure here is only logged.
    retire_old_outputs(settings)

    report = RetrainReport(
        outcome=decision.label,  # promoted, rejected, or awaiting-approval (a person decides: approval.py)
        trigger=trigger,
        corrections=len(corrections),
        message=decision.reason,
        run_id=run.run_id,
        run_url=f"{settings.mlflow_ui_url}/#/experiments/{run.experiment_id}/runs/{run.run_id}",
        version=str(version.version),
        dataset_digest=dataset.digest,
        pre=pre,
        post=post,
        earlier_corrections=dataset.counts["corrections_from_earlier_retrains"],
        held_rejected=dataset.counts["corrections_held_rejected"] + len(outcome.held),
        batch_id=batch_id,
        reviewer_diffs=diffs.markdown(),
        comparison=comparison,
        accepted_now=outcome.accepted,
        suspicious=tuple(f"{i[:12]}: {why}" for i, why in outcome.held.items()),
        retention=check.retention_line(),
        recipe=recipe.markdown(),
        exports=tuple(exports.lines()),
    )
    return _publish(report)


# Prefect's own control signals (Abort, Pause) pass through untouched: the next retrain's recovery step ends
# whatever they leave RUNNING or claimed, as it does for a killed process.
INTERRUPTED = (KeyboardInterrupt, SystemExit, asyncio.CancelledError, TerminationSignal)


def _end_abandoned(
    settings: Settings, batch_id: str, run: RetrainRun | None, exc: BaseException, status: str, registered: bool
) -> None:
    """Claim released, run ended ``status`` with ``exc`` as its failure_reason, unless the gate's decision had
    already taken effect: then it stands and the batch follows it. A plain call, not a retried task: it must run
    even while the flow is being cancelled, and its own failure is logged and noted on ``exc``, which the caller
    re-raises, so the user always sees what stopped the retrain."""
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    reason = what if status == "FAILED" else f"interrupted: {what}"
    cleanup = end_abandoned_retrain(settings, batch_id, run.run_id if run else None, status, reason, registered)
    if cleanup.settled:
        get_run_logger().warning(f"{type(exc).__name__} after the promotion gate; {cleanup.settled}")
        exc.add_note(f"stopped after the promotion gate; {cleanup.settled}")
    for problem in cleanup.problems:
        get_run_logger().error(f"Cleanup after {type(exc).__name__} incomplete: {problem}")
        exc.add_note(f"cleanup incomplete (the next retrain's recovery finishes it): {problem}")
    events.retrain_outcome("failed", f"yolo-retrain: retrain {batch_id} ended {status}: {reason}", status=status, batch_id=batch_id)


def _training_params(settings: Settings, team_recipe: dict) -> dict:
    """The run's own params; the train arguments (epochs, imgsz, batch, ...) are logged with the recipe (step 5)."""
    own = {k: getattr(settings, k) for k in ("base_model", "gate_metric")}
    return own | {"training_asked": asked(settings, team_recipe)}


def _publish(report: RetrainReport) -> RetrainReport:
    """Summary in the Prefect UI (markdown artifact) and in the flow's log."""
    create_markdown_artifact(report.markdown(), key="retrain-summary", description=f"Retrain {report.outcome}")
    print(report.text())
    events.announce_report(report)  # Prefect events: any automation can tell people (yolo-retrain notify)
    return report


if __name__ == "__main__":
    retrain()
