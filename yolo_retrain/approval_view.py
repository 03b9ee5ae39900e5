"""What a person sees before approving or refusing a candidate: the gate's comparison, read back from its run.

Overall and per class (champion, candidate, difference, the paired bootstrap's 95 % interval), the earlier fixes it
keeps and this batch's boxes it learned, the gate's reason and the deadline. Everything comes from the MLflow run
that made the version, so the CLI and the Prefect review flow show the same figures the gate judged.
"""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from yolo_retrain.approval import describe
from yolo_retrain.metrics import GATE_METRICS


def comparison_rows(metrics: dict[str, float]) -> list[tuple[str, float | None, float | None, str]]:
    """(metric, champion, candidate, 95 % interval of candidate − champion) for the headline metrics and each class."""
    classes = sorted(k.removeprefix("post_AP50-95_") for k in metrics if k.startswith("post_AP50-95_"))
    rows = []
    for name in [*GATE_METRICS, *(f"AP50-95 {c}" for c in classes)]:
        key = name.replace(" ", "_", 1)
        interval = ""
        suffix = "" if name == "mAP50-95" else f"_{key}" if name.startswith("AP50-95 ") else None
        if suffix is not None and f"gate_delta_low{suffix}" in metrics:
            interval = f"[{metrics[f'gate_delta_low{suffix}']:+.4f}, {metrics[f'gate_delta_high{suffix}']:+.4f}]"
        rows.append((name, metrics.get(f"pre_{key}"), metrics.get(f"post_{key}"), interval))
    return rows


def retention_lines(metrics: dict[str, float]) -> list[str]:
    """Fixed (earlier accepted corrections' boxes) and learned (this batch's): what each model reproduces."""
    lines = []
    for prefix, what in (("fixed", "earlier fixes"), ("learned", "this batch's corrections")):
        if f"{prefix}_boxes" in metrics and metrics[f"{prefix}_boxes"]:
            lines.append(
                f"{what}: {int(metrics[f'{prefix}_boxes'])} boxes; champion reproduces {metrics[f'{prefix}_champion']:.0%}, "
                f"candidate {metrics[f'{prefix}_candidate']:.0%} ({int(metrics.get(f'{prefix}_unlearned_boxes', 0))} un-learned)"
            )
    return lines


def slice_lines(metrics: dict[str, float]) -> list[str]:
    """Per-slice comparison from the run's ``slice_*`` metrics (slices.SliceComparison.as_mlflow), one line a slice."""
    lines = []
    for key in sorted(k.removeprefix("slice_images/") for k in metrics if k.startswith("slice_images/")):
        column, _, value = key.partition("/")
        old, new = metrics.get(f"pre_slice_mAP50-95/{key}"), metrics.get(f"post_slice_mAP50-95/{key}")
        low, high = metrics.get(f"slice_delta_low/{key}"), metrics.get(f"slice_delta_high/{key}")
        judged = f"95% interval [{low:+.4f}, {high:+.4f}]" if low is not None else "too few images to judge (not gated)"
        lines.append(f"slice {column}={value} ({metrics[f'slice_images/{key}']:.0f} holdout images): {_fmt(old)} -> {_fmt(new)}, {judged}")
    return lines


def candidate_summary(client: MlflowClient, version: ModelVersion, markdown: bool = False) -> str:
    """The comparison a person reads before deciding on ``version``."""
    metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
    tags = version.tags
    head = f"Candidate version {version.version}: {describe(version)}"
    facts = [
        f"compared with champion v{tags.get('parent_version', '?')} on the holdout",
        f"gate: {tags.get('gate_reason', '-')}",
        *retention_lines(metrics),
        *slice_lines(metrics),
    ]
    rows = comparison_rows(metrics)
    if markdown:
        lines = [f"# {head}", "", *(f"- {fact}" for fact in facts), ""]
        lines += ["| metric | champion | candidate | delta | 95% interval |", "|---|---:|---:|---:|---|"]
        lines += [f"| {n} | {_fmt(old)} | {_fmt(new)} | {_delta(old, new)} | {iv} |" for n, old, new, iv in rows]
        return "\n".join(lines) + "\n"
    lines = [head, *(f"  {fact}" for fact in facts), f"  {'metric':<22}{'champion':>10}{'candidate':>11}{'delta':>9}  95% interval"]
    lines += [f"  {n:<22}{_fmt(old):>10}{_fmt(new):>11}{_delta(old, new):>9}  {iv}" for n, old, new, iv in rows]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _delta(old: float | None, new: float | None) -> str:
    return "-" if old is None or new is None else f"{new - old:+.4f}"
