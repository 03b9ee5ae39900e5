"""Overhead of a whole retrain over a bare Ultralytics script, measured side by side (A B A B ...).

(a) `bench/bare_train.py`: `YOLO(champion).train()` then `.val()`, in a fresh process.
(b) `yolo-retrain run --force --epochs N`: the full flow in a fresh process, against a `prefect server` on
    loopback and the default MLflow store (SQLite), in a temporary home with an experiment and a champion,
    so the flow also needs the champion's holdout figures (part of its overhead): recorded on the champion's
    version when its holdout is unchanged, as between these pairs (the corrections re-label training images);
    `--fresh-holdout` makes every pair evaluate the champion, as when a correction lands in the holdout.

Same data (base + corrections for the flow; the same images with the corrected labels for the bare script),
same start weights (the champion; rolled back between pairs so every pair starts from the same model), and the
same recipe: the flow's effective one (yolo_retrain.recipe.resolve: the champion's recorded arguments, the
continuation defaults, the settings) is handed to the bare script whole, and the Ultralytics args.yaml of both
trainings is checked to be equal but for paths, names and how much they print. The "realistic" size sets no training setting at all
(but for the champion's own training): the flow inherits the champion's 320 px and batch, and uses Ultralytics'
choice of device and its default workers, as a team's retrain would. Both sides are timed as wall clock of the whole process, start-up imports included, with
the GPU's utilisation sampled meanwhile where nvidia-smi exists. Each flow run is broken down from the
Prefect API: start-up (process launch to the flow run Running), each task run, orchestration between
tasks, and exit.

    .venv/bin/python bench/overhead.py --sizes realistic --pairs 2 --out bench/results/overhead-realistic.json
    .venv/bin/python bench/overhead.py --sizes small large --pairs 3 --out bench/results/overhead.json
    .venv/bin/python bench/overhead.py --quick        # smoke run: a few images, 1 epoch, 1 pair
    .venv/bin/python bench/overhead.py --sizes gpu --pairs 2 --champion-epochs 1 --budget-s 400  # as gpu_check.sh
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

import yaml
from _common import ROOT, GpuSampler, emit, header, median
from _fast_synthetic import make_dataset_pair

from yolo_retrain.config import configure_environment  # noqa: E402

configure_environment()  # environment first: Ultralytics and Prefect read it at import
from yolo_retrain import processes
from yolo_retrain.synthetic import make_dataset

# Image counts and epochs picked so that (a) takes about 30 s and about 3 min on a 2-core CPU, and, for
# "gpu" (bench/gpu_check.sh), about a minute of training on one H100 (an estimate until measured there).
CPU = {"imgsz": 64, "batch": 16, "device": "cpu", "workers": 0, "plots": True}
SIZES = {
    "quick": {"train": 16, "val": 8, "epochs": 1, **CPU},
    "small": {"train": 160, "val": 48, "epochs": 20, **CPU},
    "large": {"train": 480, "val": 96, "epochs": 70, **CPU},
    # A team's retrain on this machine: a few hundred images at 320 px, nothing set but the epochs.
    "realistic": {"train": 300, "val": 60, "epochs": 3, "imgsz": 320, "batch": 16, "device": None, "workers": None,
                  "plots": True, "inherit": True},
    "gpu": {
        "train": 2500,
        "val": 300,
        "epochs": 10,
        "imgsz": 640,
        "batch": 32,
        "device": "0",
        "workers": 8,
        "plots": True,
    },
}
SEED = 0
SYNTHETIC_SIDE = 64  # image side of yolo_retrain.synthetic's images, which the CPU figures were measured on
TRAIN_ARGS = ("epochs", "imgsz", "batch", "device", "workers", "plots")  # what a size may set
IDENTITY = ("data", "model", "project", "name", "save_dir", "exist_ok", "verbose")  # paths, names, output: may differ
HARDWARE = ("imgsz", "batch", "device", "workers")  # training settings: the "inherit" sizes leave them unset
GOAL_FIXED_S, GOAL_FRACTION = 5.0, 0.03
TRAINING, VALIDATION = "training (train-candidate - bare train)", "post-evaluation (evaluate-post - bare val)"


class Bench:
    """A temporary home with a Prefect server, an experiment, a champion (version 1) and the bare copy of the data."""

    def __init__(self, home: Path, size: dict, champion_epochs: int, api_url: str | None = None) -> None:
        self.home, self.size = home, size  # size: a SIZES entry with the command line's overrides
        self.logs = home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.own_server = api_url is None
        self.prefect_port = processes.free_port()
        self.api_url = api_url or f"http://127.0.0.1:{self.prefect_port}/api"
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(home / "prefect"),
            "PREFECT_API_URL": self.api_url,
            "YOLO_RETRAIN_HOME": str(home),
            "YOLO_CONFIG_DIR": str(home / "ultralytics"),
            **{f"YOLO_RETRAIN_{k.upper()}": str(size[k]) for k in HARDWARE if size[k] is not None and not size.get("inherit")},
            "YOLO_RETRAIN_PLOTS": str(size["plots"]).lower(),
            "YOLO_RETRAIN_SEED": str(SEED),
            "YOLO_RETRAIN_RETRAIN_THRESHOLD": "1000000",  # no threshold events: only the retrain is measured
        }
        for key in (
            *(f"YOLO_RETRAIN_{k.upper()}" for k in HARDWARE if size.get("inherit") or size[k] is None),
            "YOLO_RETRAIN_RECIPE",
            "YOLO_RETRAIN_TRACKING_URI",
            "YOLO_RETRAIN_BASE_DATA",
            "YOLO_RETRAIN_CORRECTIONS_DB_URL",
            "YOLO_RETRAIN_ARTIFACT_LOCATION",
            "YOLO_RETRAIN_EXPERIMENT_ID",
        ):
            self.env.pop(key, None)
        # The flow's data: base labels half wrong, the true labels as the corrections to submit.
        # The bare script's data: the same images with the corrected labels. Images as large as imgsz.
        if size["imgsz"] == SYNTHETIC_SIDE:
            self.data = make_dataset(home / "demo", train=size["train"], val=size["val"], wrong_fraction=0.5, seed=SEED)
            self.bare_data = make_dataset(  # same seed: the same images
                home / "bare-data", train=size["train"], val=size["val"], wrong_fraction=0.0, seed=SEED
            )
        else:  # synthetic.make_dataset takes minutes for thousands of 640 px images
            self.data, self.bare_data = make_dataset_pair(
                home / "demo",
                home / "bare-data",
                size["train"],
                size["val"],
                size["imgsz"],
                wrong_fraction=0.5,
                seed=SEED,
            )
        self.group = processes.ProcessGroup(self.env, log_dir=self.logs)
        self.champion_epochs = champion_epochs

    def __enter__(self) -> Self:
        from prefect.client.orchestration import SyncPrefectClient

        self.group.__enter__()
        if self.own_server:
            self.group.start("prefect-server", processes.prefect_server(self.prefect_port))
        processes.wait_healthy(f"{self.api_url}/health", timeout=180)
        self.client = SyncPrefectClient(self.api_url)
        self.client.__enter__()
        if self.champion_epochs > 0:
            # Experiment + a baseline champion (version 1) trained briefly on the base data: both sides start from it.
            # The champion's own size (what an "inherit" size's retrains then take from it).
            champion_size = {f"YOLO_RETRAIN_{k.upper()}": str(self.size[k]) for k in ("imgsz", "batch") if self.size[k]}
            self.group.env = {**self.env, **champion_size}
            self.cli("init", "--epochs", str(self.champion_epochs), timeout=1800)
            self.group.env = self.env
            self.start_weights = str(self.home / "bare-start" / "champion.pt")
            Path(self.start_weights).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.home / "models" / "champion.pt", self.start_weights)
        else:  # no champion: both sides train from the configured base model, and the flow skips the pre-evaluation
            self.cli("init", "--no-train-baseline")
            self.start_weights = "yolov8n.yaml"
        self.recipe = self._flow_recipe()
        return self

    def _flow_recipe(self) -> Path:
        """The recipe the flow will train with (as its resolve-recipe step makes it), for the bare script."""
        from yolo_retrain.config import Settings
        from yolo_retrain.recipe import resolve

        chosen = {k: self.size[k] for k in HARDWARE if self.size[k] is not None and not self.size.get("inherit")}
        settings = Settings(home=self.home, epochs=self.size["epochs"], seed=SEED, plots=self.size["plots"], **chosen)
        path = self.home / "bare-recipe.yaml"
        path.write_text(yaml.safe_dump(resolve(settings, {}, self.start_weights).args))
        return path

    def __exit__(self, *exc: object) -> None:
        self.client.__exit__(*exc)
        self.group.__exit__(*exc)

    def cli(self, *args: str, timeout: float = 600) -> None:
        self.group.run([str(processes.BIN / "yolo-retrain"), *args], timeout=timeout)

    # One side of a pair each --------------------------------------------------------------------------------
    def run_bare(self, i: int) -> dict:
        _drop_label_caches(self.home / "bare-data")
        cmd = [
            sys.executable, str(ROOT / "bench" / "bare_train.py"),
            "--data", str(self.bare_data.data_yaml), "--model", self.start_weights, "--recipe", str(self.recipe),
            "--project", str(self.home / "bare-runs"), "--name", f"bare-{i}",
        ]  # fmt: skip
        launched = time.time()
        wall, log, gpu = self._timed(cmd, f"bare-{i}")
        line = next(line for line in log.splitlines() if line.startswith("BARE_RESULT "))
        phases = json.loads(line.removeprefix("BARE_RESULT "))
        phases["startup_and_exit_s"] = wall - phases["import_s"] - phases["train_s"] - phases["val_s"]
        trained_with = _trained_with(self.home / "bare-runs", launched)
        return {"wall_s": wall, **phases, "gpu": gpu, "trained_with": trained_with}

    def run_flow(self, i: int) -> dict:
        self._prepare_flow()
        before = {r.id for r in self._flow_runs()}
        launched = datetime.now(UTC)
        cmd = [str(processes.BIN / "yolo-retrain"), "run", "--force", "--epochs", str(self.size["epochs"])]
        wall, _, gpu = self._timed(cmd, f"flow-{i}")
        run = next(r for r in self._flow_runs() if r.id not in before)
        breakdown = self._breakdown(run, launched)
        breakdown["exit_s"] = wall - breakdown["startup_s"] - breakdown["flow_s"]  # flow run ended -> process gone
        trained_with = _trained_with(self.home / "runs", launched.timestamp())
        return {"wall_s": wall, **breakdown, "gpu": gpu, "trained_with": trained_with}

    def _prepare_flow(self) -> None:
        """Untimed: the corrections pending again, the champion back to version 1, label caches gone."""
        from yolo_retrain import registry, tracking
        from yolo_retrain.config import Settings
        from yolo_retrain.store import CorrectionStore

        settings = Settings(home=self.home)
        with CorrectionStore.from_settings(settings) as store:
            if store.pending_count() == 0:
                store.import_dir(self.data.corrections_dir, author="bench")
        client = tracking.client_for(settings)
        champion = registry.version_by_alias(client, settings.model_name, "champion")
        if self.champion_epochs > 0 and champion.version != "1":
            registry.rollback(client, settings, "1")
        fresh = self.champion_epochs > 0 and self.size.get("fresh_holdout")
        if fresh and "evaluation_key" in client.get_model_version(settings.model_name, "1").tags:
            # As when a correction lands in the holdout: the champion's recorded figures no longer apply.
            client.delete_model_version_tag(settings.model_name, "1", "evaluation_key")
        _drop_label_caches(settings.datasets_dir)

    def _timed(self, cmd: list[str], name: str) -> tuple[float, str, dict | None]:
        """Wall time, output and GPU utilisation (None without nvidia-smi) of one side's process."""
        log_path = self.logs / f"{name}.log"
        with open(log_path, "w") as log, GpuSampler(str(self.size["device"])) as gpu:
            start = time.perf_counter()
            code = subprocess.run(
                cmd, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=3600, check=False
            ).returncode
            wall = time.perf_counter() - start
        text = log_path.read_text(errors="replace")
        if code != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({code}); log {log_path}:\n{text[-4000:]}")
        return wall, text, gpu.summary()

    def _flow_runs(self) -> list:
        from prefect.client.schemas.filters import FlowFilter, FlowFilterName
        from prefect.client.schemas.sorting import FlowRunSort

        retrain = FlowFilter(name=FlowFilterName(any_=["retrain"]))
        return self.client.read_flow_runs(flow_filter=retrain, sort=FlowRunSort.START_TIME_DESC, limit=50)

    def _breakdown(self, run, launched: datetime) -> dict:
        """Where the flow's time went, from the Prefect API: start-up, each task run, gaps, exit."""
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        run = self.client.read_flow_run(run.id)
        task_runs = self.client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
        tasks: dict[str, float] = {}
        done = sorted((t for t in task_runs if t.start_time and t.end_time), key=lambda t: t.start_time)
        evaluations = [t for t in done if t.name.rsplit("-", 1)[0] == "evaluate"]
        for tr in done:
            name = tr.name.rsplit("-", 1)[0]  # Prefect names task runs <task name>-<3 random characters>
            if name == "evaluate":  # the candidate's is the last one; the champion's, if any, comes before training
                name = "evaluate-post" if tr is evaluations[-1] else "evaluate-pre"
            tasks[name] = tasks.get(name, 0.0) + (tr.end_time - tr.start_time).total_seconds()
        flow_s = (run.end_time - run.start_time).total_seconds()
        return {
            "state": run.state.type.value,
            "startup_s": (run.start_time - launched).total_seconds(),
            "flow_s": flow_s,
            "tasks_s": tasks,
            "between_tasks_s": flow_s - sum(tasks.values()),
        }


def _trained_with(runs: Path, since: float) -> dict:
    """The args.yaml of the training Ultralytics started under ``runs`` after ``since``, but for paths and names."""
    written = [p for p in runs.glob("*/args.yaml") if p.stat().st_mtime >= since]
    if not written:
        raise RuntimeError(f"no Ultralytics training under {runs} since the side started")
    args = yaml.safe_load(max(written, key=lambda p: p.stat().st_mtime).read_text())
    return {key: value for key, value in args.items() if key not in IDENTITY}


def _drop_label_caches(root: Path) -> None:
    """Ultralytics' labels/*.cache: a real retrain's dataset folder is new, so both sides scan labels every run."""
    if root.exists():
        for cache in root.rglob("*.cache"):
            cache.unlink()


def extra_breakdown(bare: dict, flow: dict) -> dict[str, float]:
    """flow wall - bare wall, split into where the difference comes from (sums to the difference)."""
    tasks = dict(flow["tasks_s"])
    parts = {
        "start-up and exit (imports, flow run creation)": flow["startup_s"]
        + flow["exit_s"]
        - bare["import_s"]
        - bare["startup_and_exit_s"],
        # its recorded figures when the holdout is unchanged, as here between pairs; an evaluation otherwise
        "pre-evaluation of the champion": tasks.pop("evaluate-champion", 0.0) + tasks.pop("evaluate-pre", 0.0),
        TRAINING: tasks.pop("train-candidate", 0.0) - bare["train_s"],
        VALIDATION: tasks.pop("evaluate-post", 0.0) - bare["val_s"],
    }
    parts.update({f"task {name}": seconds for name, seconds in tasks.items()})
    parts["orchestration between tasks"] = flow["between_tasks_s"]
    return parts


def check_same_training(size: dict, bare: dict, flow: dict) -> None:
    """Both sides trained with the requested settings (device: as Ultralytics canonicalised it, the same on both), and
    their whole args.yaml agree but for paths and names: the same recipe."""
    requested = {key: size[key] for key in TRAIN_ARGS if key != "device" and size[key] is not None}
    for side in (bare, flow):
        used = {key: side["trained_with"][key] for key in requested}
        if used != requested:
            raise RuntimeError(f"a side trained with {side['trained_with']}, not the requested {requested}")
    if bare["trained_with"] != flow["trained_with"]:
        differ = {k: (bare["trained_with"].get(k), flow["trained_with"].get(k)) for k in bare["trained_with"].keys() | flow["trained_with"].keys()
                  if bare["trained_with"].get(k) != flow["trained_with"].get(k)}  # fmt: skip
        raise RuntimeError(f"the sides trained differently (bare, flow): {differ}")


def gpu_summary(results: list[dict]) -> dict | None:
    """Per side: the median over pairs of the mean utilisation, the highest utilisation and memory seen."""
    if any(p[side]["gpu"] is None for p in results for side in ("bare", "flow")):
        return None
    return {
        side: {
            "util_mean_pct": median(p[side]["gpu"]["util_mean_pct"] for p in results),
            "util_max_pct": max(p[side]["gpu"]["util_max_pct"] for p in results),
            "memory_max_mib": max(p[side]["gpu"]["memory_max_mib"] for p in results),
        }
        for side in ("bare", "flow")
    }


def _gpu_text(gpu: dict | None) -> str:
    if gpu is None:
        return ""
    return "; GPU util " + ", ".join(
        f"{side} mean {g['util_mean_pct']:.0f} % max {g['util_max_pct']:.0f} % ({g['memory_max_mib']:.0f} MiB)"
        for side, g in gpu.items()
    )


def measure_size(
    name: str,
    size: dict,
    pairs: int,
    champion_epochs: int,
    keep: Path | None,
    api_url: str | None = None,
    deadline: float | None = None,
) -> dict:
    """``pairs`` A B pairs of ``size`` (a SIZES entry with overrides); no new pair once it would end past ``deadline``."""
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-overhead-{name}-"))
    try:
        with Bench(tmp, size, champion_epochs, api_url) as bench:
            results = []
            for i in range(pairs):
                started = time.monotonic()
                bare = bench.run_bare(i)
                flow = bench.run_flow(i)
                check_same_training(size, bare, flow)
                pair = {
                    "bare": bare,
                    "flow": flow,
                    "ratio": flow["wall_s"] / bare["wall_s"],
                    "extra_s": flow["wall_s"] - bare["wall_s"],
                    "extra_breakdown_s": extra_breakdown(bare, flow),
                }
                results.append(pair)
                print(
                    f"[{name}] pair {i + 1}/{pairs}: bare {bare['wall_s']:.1f} s, flow {flow['wall_s']:.1f} s, "
                    f"extra {pair['extra_s']:+.1f} s, ratio {pair['ratio']:.3f}" + _gpu_text(gpu_summary([pair])),
                    file=sys.stderr,
                    flush=True,
                )
                now = time.monotonic()
                if deadline is not None and i + 1 < pairs and now + (now - started) > deadline:
                    print(
                        f"[{name}] stopping after {i + 1} pair(s): another would end past --budget-s", file=sys.stderr
                    )
                    break
    finally:
        if keep:
            shutil.copytree(tmp / "logs", keep / f"logs-{name}", dirs_exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    bare_median = median(p["bare"]["wall_s"] for p in results)
    extra_median = median(p["extra_s"] for p in results)
    allowed = GOAL_FIXED_S + GOAL_FRACTION * bare_median
    keys = results[0]["extra_breakdown_s"].keys()
    summary = {
        "size": {**size, "seed": SEED},
        "pairs_requested": pairs,
        "pairs": results,
        "median_bare_s": bare_median,
        "median_flow_s": median(p["flow"]["wall_s"] for p in results),
        "median_ratio": median(p["ratio"] for p in results),
        "median_extra_s": extra_median,
        # Everything but the training and the validation both sides run: less exposed to the machine's noise.
        "median_fixed_extra_s": median(
            p["extra_s"] - p["extra_breakdown_s"][TRAINING] - p["extra_breakdown_s"][VALIDATION] for p in results
        ),
        "median_extra_breakdown_s": {k: median(p["extra_breakdown_s"].get(k, 0.0) for p in results) for k in keys},
        "median_flow_tasks_s": {
            k: median(p["flow"]["tasks_s"].get(k, 0.0) for p in results) for k in results[0]["flow"]["tasks_s"]
        },
        "gpu_util": gpu_summary(results),
        "goal": f"flow <= bare + {GOAL_FIXED_S:g} s + {GOAL_FRACTION:.0%}",
        "allowed_extra_s": allowed,
        "goal_met": extra_median <= allowed,
    }
    print(
        f"[{name}] median of {len(results)} pair(s): bare {bare_median:.1f} s, flow {summary['median_flow_s']:.1f} s, "
        f"ratio {summary['median_ratio']:.3f}, extra {extra_median:+.1f} s, allowed {allowed:.1f} s "
        f"({'met' if summary['goal_met'] else 'missed'})" + _gpu_text(summary["gpu_util"]),
        file=sys.stderr,
        flush=True,
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=["small", "large"])
    parser.add_argument("--pairs", type=int, default=3, help="A B pairs per size (the median is reported).")
    parser.add_argument(
        "--champion-epochs",
        type=int,
        default=3,
        help="Epochs of the baseline champion (setup, untimed); 0: no champion.",
    )
    parser.add_argument("--quick", action="store_true", help="Smoke run: the quick size, 1 pair, no champion.")
    overrides = parser.add_argument_group("overrides of the sizes' settings (both sides get the same)")
    overrides.add_argument("--train-images", dest="train", type=int, metavar="N", help="Generated training images.")
    overrides.add_argument("--val-images", dest="val", type=int, metavar="N", help="Generated holdout images.")
    overrides.add_argument("--epochs", type=int)
    overrides.add_argument("--imgsz", type=int, help="Training size; the generated images are this large too.")
    overrides.add_argument("--batch", type=int)
    overrides.add_argument("--device", help="Ultralytics device: cpu, 0, 0,1 ...")
    overrides.add_argument("--workers", type=int, help="Dataloader workers.")
    overrides.add_argument(
        "--plots",
        action=argparse.BooleanOptionalAction,
        help="Ultralytics' training plots (default: on, as for users).",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        help="Start no new pair that would end (judged by the last pair) more than this many seconds after start.",
    )
    parser.add_argument(
        "--fresh-holdout",
        action="store_true",
        help="Make every flow evaluate the champion, as when a correction lands in the holdout.",
    )
    parser.add_argument("--api-url", help="Use this running Prefect server (PREFECT_API_URL) instead of starting one.")
    parser.add_argument("--keep-logs", type=Path, help="Copy the processes' logs here.")
    parser.add_argument("--out", type=Path, help="Write the figures as JSON here.")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.pairs, args.champion_epochs = ["quick"], 1, 0
    deadline = time.monotonic() + args.budget_s if args.budget_s else None
    chosen = {key: getattr(args, key) for key in ("train", "val", *TRAIN_ARGS) if getattr(args, key) is not None}
    if args.fresh_holdout:
        chosen["fresh_holdout"] = True
    result = header("overhead")
    result["sizes"] = {
        name: measure_size(
            name, {**SIZES[name], **chosen}, args.pairs, args.champion_epochs, args.keep_logs, args.api_url, deadline
        )
        for name in args.sizes
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
