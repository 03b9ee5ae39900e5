"""What one retrain did, for a person: a markdown report (Prefect artifact) and a plain-text one (CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yolo_retrain.bootstrap import Comparison
from yolo_retrain.metrics import GATE_METRICS, EvalMetrics


@dataclass(frozen=True, kw_only=True)  # ten fields: built by name, never by position
class RetrainReport:
    outcome: str  # skipped | promoted | rejected | awaiting-approval
    trigger: str
    corrections: int
    message: str = ""
    run_id: str | None = None
    run_url: str | None = None
    version: str | None = None
    dataset_digest: str | None = None
    pre: EvalMetrics | None = None
    post: EvalMetrics | None = None
    reviewer_diffs: str = ""  # markdown: what the reviewers changed against the model, per class (#13)
    earlier_corrections: int = 0  # accepted by earlier retrains (or a person), in this dataset too
    held_rejected: int = 0  # rejected or suspicious corrections waiting for a person, after this retrain
    batch_id: str | None = None  # this retrain's corrections batch (the flow run id)
    comparison: Comparison | None = None  # candidate − champion with 95 % intervals (paired bootstrap)
    accepted_now: int = 0  # this batch's corrections accepted on their own merit
    suspicious: tuple[str, ...] = ()  # this batch's held corrections: "<id>: <reason>"
    retention: str = ""  # fixed / learned: what each model reproduces of earlier fixes and of this batch
    recipe: str = ""  # markdown: the train arguments not at Ultralytics' default, and where each came from (#20)
    exports: tuple[str, ...] = ()  # "<format>: passed|failed: <figures or why>", per export format (#24)

    def corrections_line(self) -> str:
        """Where the dataset's corrections came from, and how many are held as rejected (a skipped retrain built none)."""
        if self.post is None:
            return f"corrections: {self.corrections}"
        line = f"corrections: {self.corrections} from this batch, {self.earlier_corrections} from earlier retrains"
        return line + f", {self.held_rejected} held for review"

    def review_hint(self) -> str | None:
        """What a person does with the batch's held corrections."""
        if not self.suspicious:
            return None
        batch = self.batch_id or "<batch>"
        return (
            f"{self.accepted_now} of this batch's corrections accepted on their own merit, {len(self.suspicious)} held as "
            f"suspicious: `yolo-retrain corrections list --status suspicious` shows why, then `yolo-retrain corrections "
            f"requeue --batch {batch}` (or `accept` / `drop`, by id)"
        )

    def approval_hint(self) -> str | None:
        """How a person decides on a candidate held for approval."""
        if self.outcome != "awaiting-approval":
            return None
        return (
            f"a person decides: `yolo-retrain approve {self.version}` or `yolo-retrain refuse {self.version} --reason ...` "
            f"(or in Prefect: deployment review-candidate, version={self.version}); no decision before "
            f"YOLO_RETRAIN_APPROVAL_TIMEOUT_HOURS counts as refused"
        )

    def screening_lines(self) -> list[str]:
        """Each held correction and its reason (the first 20), and the retention figures."""
        lines = [f"held {item}" for item in self.suspicious[:20]]
        if len(self.suspicious) > 20:
            lines.append(f"... and {len(self.suspicious) - 20} more (`corrections list --status suspicious`)")
        return lines + ([self.retention] if self.retention else [])

    def interval_line(self) -> str | None:
        if self.comparison is None:
            return None
        iv = self.comparison.map50_95
        return (
            f"holdout mAP50-95 candidate − champion {iv.text()} ({self.comparison.images} images, "
            f"{self.comparison.resamples} paired bootstrap draws): {iv.verdict}"
        )

    def slice_lines(self) -> list[str]:
        """Each slice of the holdout (camera=cam2...): its images, both models' mAP50-95 and the interval, or that
        it is too small to judge (reported, not gated)."""
        pieces = self.comparison.slices if self.comparison is not None else ()
        # the judged ones that dropped most first: what a person reads when the gate refused for a slice
        ordered = sorted(pieces, key=lambda p: (p.interval is None, p.interval.low if p.interval else 0.0))
        lines = [f"slice {piece.text()}" for piece in ordered[:30]]
        return lines + ([f"... and {len(ordered) - 30} more slices (holdout/slices.json in the run)"] if len(ordered) > 30 else [])

    def metric_rows(self) -> list[tuple[str, float | None, float, float | None]]:
        """(metric, champion, candidate, delta) for the headline metrics and every class's AP50-95."""
        if self.post is None:
            return []
        names = list(GATE_METRICS) + [f"AP50-95 {c}" for c in self.post.per_class_ap]
        rows = []
        for name in names:
            new = self.post.per_class_ap[name[8:]] if name.startswith("AP50-95 ") else self.post.value(name)
            old = None
            if self.pre is not None:
                old = self.pre.per_class_ap.get(name[8:]) if name.startswith("AP50-95 ") else self.pre.value(name)
            rows.append((name, old, new, None if old is None else new - old))
        return rows

    def markdown(self) -> str:
        lines = [f"# Retrain: {self.outcome}", "", f"- trigger: `{self.trigger}`", f"- {self.corrections_line()}"]
        if self.message:
            lines.append(f"- {self.message}")
        if self.review_hint():
            lines.append(f"- {self.review_hint()}")
        if self.approval_hint():
            lines.append(f"- **{self.approval_hint()}**")
        if self.version:
            lines.append(f"- model version: **{self.version}**")
        if self.run_url:
            lines.append(f"- MLflow run: [{self.run_id}]({self.run_url})")
        if self.dataset_digest:
            lines.append(f"- dataset digest: `{self.dataset_digest[:16]}`")
        if self.post is not None:
            lines += ["", "| metric | champion (pre) | candidate (post) | delta | 95% interval |", "|---|---:|---:|---:|---|"]
            for name, old, new, delta in self.metric_rows():
                lines.append(f"| {name} | {_fmt(old)} | {new:.4f} | {_fmt(delta, signed=True)} | {self._interval(name)} |")
        if self.interval_line():
            lines += ["", f"- {self.interval_line()}"]
        if self.slice_lines():
            lines += ["", "## Slices (mAP50-95, champion -> candidate)", ""] + [f"- {line}" for line in self.slice_lines()]
        if self.screening_lines():
            lines += ["", "## Screening", ""] + [f"- {line}" for line in self.screening_lines()]
        if self.exports:
            lines += ["", "## Exports (checked against the .pt on the holdout)", ""] + [f"- {line}" for line in self.exports]
        if self.recipe:
            lines += ["", "Training recipe (arguments not at Ultralytics' default):", "", self.recipe.rstrip("\n")]
        if self.reviewer_diffs:
            lines += ["", self.reviewer_diffs.rstrip("\n")]
        return "\n".join(lines) + "\n"

    def text(self) -> str:
        lines = [f"Retrain {self.outcome} (trigger={self.trigger}, corrections={self.corrections})"]
        if self.post is not None:
            lines.append(f"  {self.corrections_line()}")
        if self.message:
            lines.append(f"  {self.message}")
        if self.review_hint():
            lines.append(f"  {self.review_hint()}")
        if self.approval_hint():
            lines.append(f"  {self.approval_hint()}")
        if self.post is not None:
            lines.append(f"  {'metric':<22}{'champion':>10}{'candidate':>11}{'delta':>9}")
            for name, old, new, delta in self.metric_rows():
                lines.append(f"  {name:<22}{_fmt(old):>10}{new:>11.4f}{_fmt(delta, signed=True):>9}  {self._interval(name)}")
        if self.interval_line():
            lines.append(f"  {self.interval_line()}")
        for line in self.slice_lines():
            lines.append(f"  {line}")
        for line in self.screening_lines():
            lines.append(f"  {line}")
        if self.version:
            lines.append(f"  registered version {self.version}")
        for line in self.exports:
            lines.append(f"  export {line}")
        if self.run_url:
            lines.append(f"  MLflow run: {self.run_url}")
        return "\n".join(lines)


    def _interval(self, name: str) -> str:
        """The row's 95 % interval of the difference, where the bootstrap gives one (mAP50-95, per-class AP50-95)."""
        if self.comparison is None:
            return ""
        iv = self.comparison.map50_95 if name == "mAP50-95" else self.comparison.per_class.get(name.removeprefix("AP50-95 "))
        if iv is None or not name.startswith(("mAP50-95", "AP50-95 ")):
            return ""
        return f"[{iv.low:+.4f}, {iv.high:+.4f}] {iv.verdict}"


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def comparison_plot(
    champion: EvalMetrics | None, candidate: EvalMetrics, path: Path, title: str, comparison: Comparison | None = None
) -> Path:
    """A bar chart of champion vs candidate on the holdout: headline metrics and per-class AP50-95; with a paired
    bootstrap, the candidate's mAP50-95 and per-class bars carry the 95 % interval (champion + interval of the
    difference) and the title says better / worse / within noise; then the judged slices' mAP50-95 (worst first,
    at most 12), with their intervals."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    names = list(GATE_METRICS) + [f"AP50-95\n{c}" for c in candidate.per_class_ap]
    new = [candidate.value(n) for n in GATE_METRICS] + list(candidate.per_class_ap.values())
    old = None
    if champion is not None:
        old = [champion.value(n) for n in GATE_METRICS] + [champion.per_class_ap.get(c, 0.0) for c in candidate.per_class_ap]
    # the judged slices (mAP50-95 on camera=cam2...), worst first, at most 12: all of them are in holdout/slices.json
    judged = [p for p in comparison.slices if p.interval is not None] if comparison is not None and old else []
    pieces = sorted(judged, key=lambda p: p.interval.low)[:12]
    names += [f"{p.column}=\n{p.value}" for p in pieces]
    new += [p.candidate for p in pieces]
    old = old + [p.champion for p in pieces] if old is not None else None
    fig, ax = plt.subplots(figsize=(1.3 * len(names) + 2, 4))
    x = range(len(names))
    if old is not None:
        ax.bar([i - 0.2 for i in x], old, width=0.4, label="champion (pre)", color="#9aa5b1")
    bars = ax.bar([i + (0.2 if old is not None else 0) for i in x], new, width=0.4, label="candidate (post)", color="#2f80ed")
    if comparison is not None and old is not None:
        intervals = [comparison.map50_95 if n == "mAP50-95" else None for n in GATE_METRICS]
        intervals += [comparison.per_class.get(c) for c in candidate.per_class_ap] + [p.interval for p in pieces]
        for bar, base, value, iv in zip(bars, old, new, intervals):
            if iv is not None:  # where the candidate may be, given the holdout's noise
                centre = bar.get_x() + bar.get_width() / 2
                ax.errorbar(centre, value, yerr=[[max(0.0, value - base - iv.low)], [max(0.0, base + iv.high - value)]], color="black", capsize=4)
        title = f"{title} (mAP50-95 {comparison.map50_95.text()}: {comparison.map50_95.verdict})"
    ax.set_xticks(list(x), names)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
