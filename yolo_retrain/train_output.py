"""What a training leaves behind: a light record that tasks, tracking and tests share without importing Ultralytics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TrainOutput:
    save_dir: Path
    best_weights: Path
    log_file: Path | None = None  # Ultralytics' own console output (train.log), logged with the run

    @property
    def results_csv(self) -> Path:
        return self.save_dir / "results.csv"

    @property
    def args_yaml(self) -> Path:
        return self.save_dir / "args.yaml"

    @property
    def plots(self) -> list[Path]:
        return sorted(p for p in self.save_dir.glob("*") if p.suffix in {".png", ".jpg"})
