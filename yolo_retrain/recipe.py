"""The training recipe of a retrain: every Ultralytics train argument it uses, and where each one came from.

Layers, later wins: Ultralytics' defaults → the champion's own training arguments (its checkpoint's
``train_args``: how it was trained, never its paths, run identity or hardware) → the continuation defaults (when
starting from trained weights) → the team's recipe file (``YOLO_RETRAIN_RECIPE``) → the settings and the flow's
parameters. A recipe file is checked by Ultralytics' own argument checks before anything runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from yolo_retrain.config import Settings
from yolo_retrain.errors import InvalidInput

# What a champion's checkpoint passes on: how the model is trained (Ultralytics' train argument names).
INHERITED = frozenset(
    {
        "imgsz", "batch", "optimizer", "lr0", "lrf", "momentum", "weight_decay", "warmup_epochs", "warmup_momentum",
        "warmup_bias_lr", "cos_lr", "nbs", "box", "cls", "cls_pw", "dfl", "pose", "kobj", "dropout", "hsv_h", "hsv_s",
        "hsv_v", "degrees", "translate", "scale", "shear", "perspective", "flipud", "fliplr", "bgr", "mosaic", "mixup",
        "cutmix", "copy_paste", "copy_paste_mode", "auto_augment", "erasing", "close_mosaic", "rect", "freeze",
        "single_cls", "multi_scale", "amp", "overlap_mask", "mask_ratio",
    }
)  # fmt: skip
# The retrain's own decisions, always recorded (the settings' values, else Ultralytics').
OWN = ("epochs", "patience", "time", "device", "workers", "seed", "deterministic", "plots")
# Recipe keys a retrain sets itself, with why a recipe may not.
_PATH = "a path or run identity: the retrain sets it"
REFUSED = {
    **dict.fromkeys(("data", "model", "project", "name", "save_dir", "cfg", "source", "tracker", "pretrained"), _PATH),
    **dict.fromkeys(("resume", "exist_ok", "mode", "task", "split", "save", "val"), _PATH),
    "epochs": "the retrain's own setting: YOLO_RETRAIN_EPOCHS or the flow's epochs parameter",
    "fraction": "would leave images out: a retrain learns from every accepted correction",
    "classes": "would leave classes out: a retrain learns from every accepted correction",
}
# Continuing from a trained champion is not training from scratch. Ultralytics cuts the warmup to leave the last
# epoch unwarmed (none at all in a 1-epoch run), and the champion's full learning rate without a warmup undoes what
# it learnt: on the demo's data a 1-epoch retrain fell from mAP50-95 0.340 to 0.072, at a tenth of the rate it kept
# 0.336; with the whole warmup (5 epochs) the full rate did best (+0.054, a tenth +0.025). bench/continuation.py,
# docs/benchmarks.md#continuation-defaults.
CONTINUATION_LR_FACTOR = 0.1


def continuation_defaults(inherited: Mapping[str, Any], epochs: int) -> dict[str, Any]:
    """What a retrain of ``epochs`` from trained weights uses over the champion's arguments: a tenth of its learning
    rate when the retrain is too short for its whole warmup, else nothing (with ``optimizer=auto`` Ultralytics picks
    the rate itself and ignores lr0: nothing to lower then)."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    def get(key: str) -> Any:
        return inherited.get(key, DEFAULT_CFG_DICT[key])

    if str(get("optimizer")).lower() == "auto" or epochs > get("warmup_epochs"):
        return {}
    return {"lr0": round(get("lr0") * CONTINUATION_LR_FACTOR, 10)}


RECIPE_ARTIFACT = "recipe.yaml"  # in the retrain's run: the arguments and their sources


@dataclass(frozen=True)
class Recipe:
    """The effective train arguments (``args``) and, for each, the layer it came from (``sources``: ultralytics,
    champion, continuation, recipe or setting)."""

    args: dict[str, Any]
    sources: dict[str, str]

    def evaluation_args(self) -> dict[str, Any]:
        """How champion and candidate are validated: at the recipe's size, batch (AutoBatch's -1 or a memory fraction
        is a training-only choice: Ultralytics' default then) and device."""
        from ultralytics.cfg import DEFAULT_CFG_DICT

        batch = self.args["batch"]
        if not (isinstance(batch, int) and batch >= 1):
            batch = DEFAULT_CFG_DICT["batch"]
        keys = ("imgsz", "device", "workers", "single_cls")
        return {"batch": batch, **{k: self.args[k] for k in keys}}

    def changed(self) -> dict[str, tuple[Any, str]]:
        """The arguments that did not come from Ultralytics' defaults, with their source: what a person wants to see."""
        return {k: (v, self.sources[k]) for k, v in sorted(self.args.items()) if self.sources[k] != "ultralytics"}

    def as_params(self) -> dict[str, str]:
        """Every argument as an MLflow param, by Ultralytics' own name."""
        return {k: str(v) for k, v in sorted(self.args.items())}

    def as_document(self) -> dict[str, Any]:
        """``recipe.yaml``: the arguments, and where each came from."""
        return {"args": dict(sorted(self.args.items())), "sources": dict(sorted(self.sources.items()))}

    def markdown(self) -> str:
        rows = "\n".join(f"| `{k}` | {v} | {source} |" for k, (v, source) in self.changed().items())
        return f"| argument | value | from |\n|---|---|---|\n{rows}"


# Reading and checking ------------------------------------------------------------------------------------------------


def read_recipe_file(settings: Settings) -> dict[str, Any]:
    """The team's recipe (``settings.recipe``), every key checked; {} when none is set.

    Raises InvalidInput naming the file, the key and the reason (before any MLflow run or claim)."""
    path = settings.recipe
    if path is None:
        return {}
    where = f"recipe {path}"
    if not path.is_file():
        raise InvalidInput(f"{where}: no such file (YOLO_RETRAIN_RECIPE)")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{where}: not readable as YAML ({exc})") from exc
    if document is None:
        return {}
    if not isinstance(document, dict) or not all(isinstance(k, str) for k in document):
        raise InvalidInput(
            f"{where}: must be a mapping of Ultralytics train arguments (key: value), as in `yolo train cfg=`"
        )
    return check_arguments(document, where)


def check_arguments(arguments: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Ultralytics' own checks, one key at a time (so the error names it), plus the ones a retrain needs."""
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg, check_dict_alignment

    checked: dict[str, Any] = {}
    for key, value in arguments.items():
        if key in REFUSED:
            raise InvalidInput(f"{where}: key {key!r}: {REFUSED[key]}")
        one = {key: value}
        try:
            with _ultralytics_quiet():
                check_dict_alignment(DEFAULT_CFG_DICT, dict(one))
                check_cfg(one, hard=True)
                _check_more(key, one[key])
        except (SyntaxError, TypeError, ValueError, NotImplementedError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise InvalidInput(f"{where}: key {key!r}: {reason}") from exc
        checked[key] = one[key]
    return checked


def _check_more(key: str, value: Any) -> None:
    """What Ultralytics checks only once training has started (after a retrain's run would be open)."""
    if key == "imgsz":
        from ultralytics.utils.checks import check_imgsz

        if isinstance(value, bool) or not isinstance(value, (int, list)):
            raise TypeError(f"'imgsz={value}' must be an int (i.e. 'imgsz=640')")
        sizes = value if isinstance(value, list) else [value]
        if not all(isinstance(v, int) and v >= 32 for v in sizes):
            raise ValueError(f"'imgsz={value}' must be at least 32")
        check_imgsz(value, stride=32, max_dim=1)
    elif key == "batch" and not (value == -1 or 0 < value < 1 or (float(value).is_integer() and value >= 1)):
        raise ValueError(
            f"'batch={value}' must be a whole number >= 1, -1 (AutoBatch) or a GPU memory fraction in (0, 1)"
        )
    elif key == "optimizer" and str(value).lower() != "auto":
        from types import SimpleNamespace

        import torch
        from ultralytics.cfg import get_cfg
        from ultralytics.engine.trainer import BaseTrainer

        probe = SimpleNamespace(args=get_cfg(), data={"nc": 1})  # built for a one-weight model: unknown names raise
        BaseTrainer.build_optimizer(probe, torch.nn.Linear(1, 1), name=value)


@contextlib.contextmanager
def _ultralytics_quiet() -> Iterator[None]:
    """check_dict_alignment logs Ultralytics' whole CLI help before raising: the error says what matters."""
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.ERROR)
    try:
        yield
    finally:
        LOGGER.setLevel(level)


def champion_arguments(weights: str | Path) -> dict[str, Any]:
    """How ``weights`` were trained (:data:`INHERITED` keys of the checkpoint's ``train_args``); {} for a model YAML
    or a checkpoint without them."""
    if str(weights).endswith((".yaml", ".yml")):
        return {}
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg
    from ultralytics.nn.tasks import torch_safe_load

    checkpoint, _ = torch_safe_load(str(weights))
    recorded = checkpoint.get("train_args") or {}
    inherited = {k: v for k, v in recorded.items() if k in INHERITED and k in DEFAULT_CFG_DICT}
    try:
        with _ultralytics_quiet():
            check_cfg(inherited, hard=False)  # as Ultralytics reads them back on resume
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"weights {weights}: recorded training arguments refused ({exc})") from exc
    return inherited


def trained_imgsz(weights: str | Path) -> int:
    """The image size ``weights`` were trained at (what they predict at best), else Ultralytics' default."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    size = champion_arguments(weights).get("imgsz", DEFAULT_CFG_DICT["imgsz"])
    return max(size) if isinstance(size, list) else int(size)


# Resolving -----------------------------------------------------------------------------------------------------------


def resolve(settings: Settings, team_recipe: Mapping[str, Any], start_weights: str | Path) -> Recipe:
    """The effective recipe of a retrain that starts from ``start_weights`` (a .pt: a continuation; a model YAML:
    from scratch). ``settings`` carries the flow's parameters too (epochs, imgsz, batch)."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    args: dict[str, Any] = {}
    sources: dict[str, str] = {}

    def layer(source: str, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            args[key], sources[key] = value, source

    layer("ultralytics", {k: DEFAULT_CFG_DICT[k] for k in (*sorted(INHERITED), *OWN) if k in DEFAULT_CFG_DICT})
    layer("ultralytics", {"workers": min(DEFAULT_CFG_DICT["workers"], os.cpu_count() or 1)})  # capped by the CPUs
    inherited = champion_arguments(start_weights)
    layer("champion", inherited)
    if not str(start_weights).endswith((".yaml", ".yml")):
        layer("continuation", continuation_defaults(args, settings.epochs))
    layer("recipe", team_recipe)
    layer("setting", _settings_arguments(settings))
    args["device"] = _device(args["device"])
    return Recipe(args, sources)


def asked(settings: Settings, team_recipe: Mapping[str, Any]) -> str:
    """What the settings (the flow's parameters among them) and the team's recipe ask of a retrain, as one param: an
    attempt of the same flow run asked otherwise gets a run of its own (``tracking.start_retrain_run``)."""
    return json.dumps({**_settings_arguments(settings), "recipe": dict(team_recipe)}, sort_keys=True, default=str)


def _settings_arguments(settings: Settings) -> dict[str, Any]:
    values = {"epochs": settings.epochs, "seed": settings.seed, "deterministic": True, "plots": settings.plots}
    for key in ("imgsz", "batch", "device", "workers"):
        if getattr(settings, key) is not None:
            values[key] = getattr(settings, key)
    return values


def _device(requested: Any) -> str:
    """Ultralytics' canonical device string; unset is Ultralytics' own choice (the first GPU if there is one, else the
    CPU), made here so that the record and the evaluation key name the device that ran."""
    import torch
    from ultralytics.utils.torch_utils import parse_device

    device = parse_device("" if requested is None else requested)
    if device == "":
        device = "0" if torch.cuda.is_available() else "cpu"
    return device
