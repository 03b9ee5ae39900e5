"""What one retrain did, for a person: a markdown report (Prefect artifact) and a plain-text one (CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field

from yolo_retrain.training import GATE_METRICS, EvalMetrics


@dataclass(frozen=True)
class RetrainReport:
    outcome: str  # skipped | promoted | rejected
    trigger: str
    corrections: int
    message: str = ""
    run_id: str | None = None
    run_url: str | None = None
    version: str | None = None
    dataset_digest: str | None = None
    pre: EvalMetrics | None = None
    post: EvalMetrics | None = None
    extra: dict = field(default_factory=dict)

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
        lines = [f"# Retrain: {self.outcome}", "", f"- trigger: `{self.trigger}`", f"- corrections: {self.corrections}"]
        if self.message:
            lines.append(f"- {self.message}")
        if self.version:
            lines.append(f"- model version: **{self.version}**")
        if self.run_url:
            lines.append(f"- MLflow run: [{self.run_id}]({self.run_url})")
        if self.dataset_digest:
            lines.append(f"- dataset digest: `{self.dataset_digest[:16]}`")
        if self.post is not None:
            lines += ["", "| metric | champion (pre) | candidate (post) | delta |", "|---|---:|---:|---:|"]
            for name, old, new, delta in self.metric_rows():
                lines.append(f"| {name} | {_fmt(old)} | {new:.4f} | {_fmt(delta, signed=True)} |")
        return "\n".join(lines) + "\n"

    def text(self) -> str:
        lines = [f"Retrain {self.outcome} (trigger={self.trigger}, corrections={self.corrections})"]
        if self.message:
            lines.append(f"  {self.message}")
        if self.post is not None:
            lines.append(f"  {'metric':<22}{'champion':>10}{'candidate':>11}{'delta':>9}")
            for name, old, new, delta in self.metric_rows():
                lines.append(f"  {name:<22}{_fmt(old):>10}{new:>11.4f}{_fmt(delta, signed=True):>9}")
        if self.version:
            lines.append(f"  registered version {self.version}")
        if self.run_url:
            lines.append(f"  MLflow run: {self.run_url}")
        return "\n".join(lines)


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"
